// The collector closes every descriptor it inherited beyond stdio before the
// Go runtime starts: a descriptor its starter left open (a lock, a socket)
// would otherwise stay held for as long as the collector runs, which is
// longer than any plugin.

#define _GNU_SOURCE
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

// glibc passes argc, argv and envp to constructors.
__attribute__((constructor)) static void logcollect_close_inherited(int argc, char **argv, char **envp) {
	(void)envp;
	if (argc < 2 || strcmp(argv[1], "_logd") != 0)
		return;
	if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0)
		return;
	// Kernels before 5.9.
	for (int fd = 3; fd < 65536; fd++)
		close(fd);
}
