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
// where that one execs bwrap this one calls bwrap's main instead
// (spare_handover), in the state an exec would leave. A request whose exec
// would start anything else is exec'd as before.
//
// In the plugin's own cgo build this file is empty: there the shim is the
// binary's constructor (shim.c).

#ifdef SHIM_PRELOAD

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "shim.h"

// The hash of the C sources this object was built from (the Makefile's
// -DSHIM_SOURCES_SHA256): the plugin refuses an object that is not of its
// own sources (preloadObject, preload_embed.go).
#ifndef SHIM_SOURCES_SHA256
#error "SHIM_SOURCES_SHA256 is the sha256 of the launcher's sources (Makefile)"
#endif
__attribute__((used)) static const char sources[] = "bwrap-r-launcher-sources:" SHIM_SOURCES_SHA256;

typedef int (*main_fn)(int, char **, char **);
typedef int (*start_main_fn)(main_fn, int, char **, void (*)(void), void (*)(void), void (*)(void), void *);

static main_fn bwrap_main;

// The files this process runs, as the spare found them at its start, by
// device and inode: bwrap (self) and every library loaded. An exec now
// would load whatever is at those paths now.
#define SPARE_MAX_FILES 32
static struct {
	char *path;
	dev_t dev;
	ino_t ino;
} loaded[SPARE_MAX_FILES];
static int nloaded, loaded_complete = 1;
static struct stat self;

static int record_library(struct dl_phdr_info *info, size_t size, void *data) {
	(void)size;
	(void)data;
	const char *name = info->dlpi_name;
	// The executable (""), the vDSO (no path) and this object (its memory
	// file, sealed) are not looked up by an exec's path.
	if (name == NULL || name[0] != '/' || strncmp(name, "/proc/self/fd/", 14) == 0)
		return 0;
	struct stat st;
	if (nloaded == SPARE_MAX_FILES || stat(name, &st) != 0 || (loaded[nloaded].path = strdup(name)) == NULL) {
		loaded_complete = 0;
		return 0;
	}
	loaded[nloaded].dev = st.st_dev;
	loaded[nloaded].ino = st.st_ino;
	nloaded++;
	return 0;
}

// libraries_current reports whether each library is still the file at its
// path (looked up now, in the launch's root, as the task, as the exec's
// loader would).
static int libraries_current(void) {
	if (!loaded_complete)
		return 0;
	for (int k = 0; k < nloaded; k++) {
		struct stat st;
		if (stat(loaded[k].path, &st) != 0 || st.st_dev != loaded[k].dev || st.st_ino != loaded[k].ino)
			return 0;
	}
	return 1;
}

// exec_would_run_this reports whether an exec of path would start what this
// process already runs, with nothing more: path is the file this process
// runs and its libraries are those loaded, the task may execute it (the
// shim is the task's now), and neither the file (no set-user-ID or
// set-group-ID bit, no file capabilities) nor the process (none kept
// through the UID change, as SECBIT_NO_SETUID_FIXUP would) has a privilege
// the exec would have given or taken.
static int exec_would_run_this(const char *path) {
	struct stat want;
	if (stat(path, &want) != 0 || want.st_dev != self.st_dev ||
	    want.st_ino != self.st_ino || !S_ISREG(want.st_mode) || (want.st_mode & (S_ISUID | S_ISGID)) != 0 ||
	    access(path, X_OK) != 0)
		return 0;
	if (getxattr(path, "security.capability", NULL, 0) >= 0 || (errno != ENODATA && errno != ENOTSUP))
		return 0;
	struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct caps[2];
	if (syscall(SYS_capget, &header, caps) != 0)
		return 0;
	// Ambient capabilities are a subset of the permitted.
	for (int k = 0; k < 2; k++)
		if (caps[k].permitted != 0 || caps[k].effective != 0)
			return 0;
	return libraries_current();
}

// close_on_exec closes what an exec would: every descriptor marked
// close-on-exec. Above bwrap's the shim marked them all (close_range).
static void close_on_exec(void) {
	if (syscall(SYS_close_range, SHIM_LAST_FD + 1, ~0U, 0) != 0)
		shim_fail("shim: close_range: %s", strerror(errno));
	for (int fd = 0; fd <= SHIM_LAST_FD; fd++) {
		int flags = fcntl(fd, F_GETFD);
		if (flags >= 0 && (flags & FD_CLOEXEC))
			close(fd);
	}
}

// show_argv has /proc/PID/cmdline show bwrap's argv (in the request's
// buffer, anonymous memory as the kernel wants it), and environ nothing, as
// after an exec of them, rather than the spare's: what ps, pgrep and the
// task's /proc/1/cmdline read. PR_SET_MM_MAP takes no capability; the rest
// of the map is the process's own, from /proc/self/stat. Best effort: a
// failure leaves the spare's.
static void show_argv(int argc, char **argv) {
	char buf[2048];
	int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	// The fields after the command name (which may hold anything but its
	// last ')') and the state (3, a letter) are numbers; f[k] is field k.
	char *p = strrchr(buf, ')');
	if (p == NULL || p[1] != ' ' || p[2] == '\0' || p[3] != ' ')
		return;
	p += 3;
	unsigned long long f[53] = {0};
	int k = 4;
	for (; k < 53; k++) {
		char *next;
		f[k] = strtoull(p, &next, 10);
		if (next == p || (*next != ' ' && *next != '\n'))
			return;
		p = next + 1;
	}
	char *end = argv[argc - 1] + strlen(argv[argc - 1]) + 1;
	struct prctl_mm_map map = {
	    .start_code = f[26], .end_code = f[27], .start_stack = f[28],
	    .start_data = f[45], .end_data = f[46], .start_brk = f[47],
	    .brk = (unsigned long)syscall(SYS_brk, 0),
	    .arg_start = (unsigned long)argv[0], .arg_end = (unsigned long)end,
	    .env_start = (unsigned long)end, .env_end = (unsigned long)end,
	    .exe_fd = (__u32)-1,
	};
	(void)prctl(PR_SET_MM, PR_SET_MM_MAP, &map, sizeof map, 0);
}

// spare_handover runs bwrap's main for bwrap's argv, in place of the exec:
// in the state an exec leaves (the shim dropped to the task's IDs and made
// the process dumpable, as an exec of a file the task may read would):
// every descriptor marked close-on-exec closed (the report descriptor among
// them: the launcher sees its end), an empty environment, the command line
// bwrap's. The shim's own part of the request (its flags: host paths) is
// cleared first. Where an exec would run anything else, it returns.
static void spare_handover(int argc, char **argv) {
	if (bwrap_main == NULL || argc < 1 || !exec_would_run_this(argv[0]))
		return;
	if (shim_request_buf != NULL && shim_request_buf < argv[0])
		memset(shim_request_buf, 0, (size_t)(argv[0] - shim_request_buf));
	// What the shim freed goes back to the kernel (its copies of the
	// host's files: no exec takes them here).
	malloc_trim(0);
	show_argv(argc, argv);
	close_on_exec();
	static char *empty_env[] = {NULL};
	environ = empty_env;
	exit(bwrap_main(argc, argv, empty_env));
}

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
	if (stat("/proc/self/exe", &self) != 0)
		loaded_complete = 0;
	dl_iterate_phdr(record_library, NULL);
	// LD_PRELOAD goes: nothing of the spare's environment reaches bwrap,
	// and its strings (which clearenv leaves) are zeroed; show_argv makes
	// the environment /proc shows empty.
	if (envp[0] != NULL) {
		char *start = envp[0], *end = start;
		for (char **e = envp; *e != NULL; e++)
			end = *e + strlen(*e) + 1;
		memset(start, 0, (size_t)(end - start));
	}
	clearenv();
	shim_handover = spare_handover;
	shim_request(argv[0], (argc - 3) / 2, argv + 3);
}

// The one symbol the object exports (built with hidden visibility).
__attribute__((visibility("default"))) int __libc_start_main(main_fn main, int argc, char **argv, void (*init)(void),
                                                             void (*fini)(void), void (*rtld_fini)(void), void *stack_end) {
	start_main_fn next = (start_main_fn)dlsym(RTLD_NEXT, "__libc_start_main");
	if (next == NULL) {
		dprintf(STDERR_FILENO, "bwrap-r: the launcher object: no __libc_start_main to call\n");
		_exit(125);
	}
	bwrap_main = main;
	return next(spare_main, argc, argv, init, fini, rtld_fini, stack_end);
}

#endif
