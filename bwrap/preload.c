// The preloaded launcher: shim.c and request.c built as a shared object
// (-DSHIM_PRELOAD; the Makefile's bwrap/preload.so, which a build with the
// preload tag embeds) that a spare launcher starts bwrap with, as root:
//
//   LD_PRELOAD=/proc/self/fd/4 /usr/bin/bwrap _shim -request [SOURCE PATH]...
//
// with the request socket at 3 and the object's sealed memory file at 4.
// The object takes bwrap's main (it defines __libc_start_main, which bwrap's
// start calls): glibc's start-up and bwrap's libraries are then paid while
// the spare waits, not after a task's request (on these VMs exec, glibc's
// start-up and the libraries cost 1.1 to 1.4 ms of every start). The spare
// then does what an exec'd one does, to the letter (request.c, shim.c), and
// where that one execs bwrap this one calls bwrap's main instead, in the
// same state an exec would leave: the task's UIDs, dumpable, every
// descriptor marked close-on-exec closed, an empty environment (shim_main).
// A request whose bwrap is not the file this process runs is exec'd as
// before.
//
// In the plugin's own cgo build this file is empty: there the shim is the
// binary's constructor (shim.c).

#ifdef SHIM_PRELOAD

#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "shim.h"

typedef int (*main_fn)(int, char **, char **);
typedef int (*start_main_fn)(main_fn, int, char **, void (*)(void), void (*)(void), void (*)(void), void *);

// spare_main runs where bwrap's main would: as a spare launcher, or not at all.
static int spare_main(int argc, char **argv, char **envp) {
	// Anything else that loads this object (a root process given it by
	// mistake) stops here, having done nothing.
	if (argc < 3 || (argc - 3) % 2 != 0 || strcmp(argv[1], "_shim") != 0 || strcmp(argv[2], "-request") != 0 ||
	    getuid() != 0 || geteuid() != 0) {
		dprintf(STDERR_FILENO, "bwrap-r: %s: this launcher object runs only as bwrap-r's spare launcher\n", argv[0]);
		_exit(125);
	}
	// The object's memory file: mapped, so no longer needed, and nothing
	// below the request socket may stay open (request.c).
	close(SHIM_PRELOAD_FD);
	// LD_PRELOAD goes: nothing of the spare's environment reaches bwrap,
	// nor shows in its /proc/PID/environ, the strings the exec placed (which
	// clearenv leaves): zeroed, and the area made empty where root may
	// (PR_SET_MM needs CAP_SYS_RESOURCE, which root lacks on some nodes).
	if (envp[0] != NULL) {
		char *start = envp[0], *end = start;
		for (char **e = envp; *e != NULL; e++)
			end = *e + strlen(*e) + 1;
		memset(start, 0, (size_t)(end - start));
		(void)prctl(PR_SET_MM, PR_SET_MM_ENV_END, (unsigned long)start, 0, 0);
	}
	clearenv();
	shim_request(argv[0], (argc - 3) / 2, argv + 3);
}

// The one symbol the object exports (built with hidden visibility).
__attribute__((visibility("default"))) int __libc_start_main(main_fn main, int argc, char **argv, void (*init)(void), void (*fini)(void), void (*rtld_fini)(void),
                      void *stack_end) {
	start_main_fn next = (start_main_fn)dlsym(RTLD_NEXT, "__libc_start_main");
	if (next == NULL) {
		dprintf(STDERR_FILENO, "bwrap-r: the launcher object: no __libc_start_main to call\n");
		_exit(125);
	}
	shim_bwrap_main = main;
	return next(spare_main, argc, argv, init, fini, rtld_fini, stack_end);
}

#endif
