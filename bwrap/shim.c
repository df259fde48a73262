// The launcher shim, in C so that it runs before the Go runtime starts: the
// binary that hosts it links Nomad's packages, whose initialisation would
// otherwise cost every task start tens of milliseconds.
//
// It runs as a constructor of any binary that links package bwrap, and acts
// only when argv[1] is "_shim":
//
//   _shim -uid N -gid N [-cgroup DIR]... [-netns FILE] -- /abs/path/to/bwrap ARG...
//
// Started as root with the task's stdio and bwrap's descriptors (3 to 6), in
// this order it joins the task's cgroups and network namespace, drops to the
// task's UID and GID, and execs bwrap with an empty environment.
//
// Why drop before bwrap rather than let bwrap map IDs: a bwrap started by UID
// N with --unshare-user --uid N --gid N writes the identity map "N N 1", so the
// task's processes are host UID N and host firewall rules can match them.
//
// On failure it writes {"shim-error": "..."} to descriptor 3 (bwrap's info
// descriptor, which the launcher reads), the message to stderr, and exits 125.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

// Keep in step with launch.go: infoFD and lastFD.
#define SHIM_INFO_FD 3
#define SHIM_LAST_FD 6
#define SHIM_MAX_CGROUPS 16

static void shim_fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

static void shim_fail(const char *fmt, ...) {
	char msg[1024], json[2200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);

	// A JSON string: escape quotes, backslashes and control characters.
	size_t n = 0;
	n += snprintf(json + n, sizeof json - n, "{\"shim-error\": \"");
	for (const unsigned char *p = (const unsigned char *)msg; *p && n + 8 < sizeof json; p++) {
		if (*p == '"' || *p == '\\')
			n += snprintf(json + n, sizeof json - n, "\\%c", *p);
		else if (*p < 0x20)
			n += snprintf(json + n, sizeof json - n, "\\u%04x", *p);
		else
			json[n++] = (char)*p;
	}
	n += snprintf(json + n, sizeof json - n, "\"}");
	(void)!write(SHIM_INFO_FD, json, n);
	dprintf(STDERR_FILENO, "bwrap-r: %s\n", msg);
	_exit(125);
}

// shim_id parses a task UID or GID: decimal, 1 to 2^31-1 (never root).
static long shim_id(const char *flag, const char *s) {
	char *end = NULL;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v > INT_MAX)
		shim_fail("shim: %s %s: not an id", flag, s);
	return v;
}

static void shim_main(int argc, char **argv) {
	long uid = -1, gid = -1;
	const char *netns = NULL;
	const char *cgroups[SHIM_MAX_CGROUPS];
	int ncgroups = 0;
	int i = 2;

	for (; i < argc; i++) {
		const char *flag = argv[i];
		if (strcmp(flag, "--") == 0) {
			i++;
			break;
		}
		if (i + 1 >= argc)
			shim_fail("shim: %s needs a value", flag);
		const char *val = argv[++i];
		if (strcmp(flag, "-uid") == 0)
			uid = shim_id(flag, val);
		else if (strcmp(flag, "-gid") == 0)
			gid = shim_id(flag, val);
		else if (strcmp(flag, "-netns") == 0)
			netns = val;
		else if (strcmp(flag, "-cgroup") == 0) {
			if (ncgroups == SHIM_MAX_CGROUPS)
				shim_fail("shim: more than %d cgroups", SHIM_MAX_CGROUPS);
			cgroups[ncgroups++] = val;
		} else
			shim_fail("shim: unknown flag %s", flag);
	}
	if (i >= argc || argv[i][0] != '/')
		shim_fail("shim: want -- /absolute/path/to/bwrap ARGS");
	if (uid <= 0 || gid <= 0)
		shim_fail("shim: refusing uid %ld gid %ld: a task never runs as root", uid, gid);

	// The cgroups first, while still root: every process bwrap makes is then
	// counted and limited from its first instruction.
	for (int c = 0; c < ncgroups; c++) {
		char path[PATH_MAX], pid[32];
		if (snprintf(path, sizeof path, "%s/cgroup.procs", cgroups[c]) >= (int)sizeof path)
			shim_fail("shim: cgroup path too long");
		int fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			shim_fail("shim: joining cgroup: open %s: %s", path, strerror(errno));
		int len = snprintf(pid, sizeof pid, "%d", (int)getpid());
		if (write(fd, pid, len) != len)
			shim_fail("shim: joining cgroup: write %s: %s", path, strerror(errno));
		close(fd);
	}
	if (netns != NULL) {
		int fd = open(netns, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			shim_fail("shim: network namespace %s: %s", netns, strerror(errno));
		if (setns(fd, CLONE_NEWNET) != 0)
			shim_fail("shim: joining network namespace %s: %s", netns, strerror(errno));
		close(fd);
	}
	if (setgroups(0, NULL) != 0)
		shim_fail("shim: setgroups: %s", strerror(errno));
	if (setgid((gid_t)gid) != 0)
		shim_fail("shim: setgid: %s", strerror(errno));
	if (setuid((uid_t)uid) != 0)
		shim_fail("shim: setuid: %s", strerror(errno));
	// setuid cleared dumpable; bwrap (unprivileged now) must write its own
	// /proc/self/uid_map, which needs it. Kernels reset dumpable at exec of a
	// readable binary, so here this is belt and braces; on set-ups where exec
	// keeps it cleared, bwrap fails with "setting up uid map: Permission
	// denied" without it.
	if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0)
		shim_fail("shim: PR_SET_DUMPABLE: %s", strerror(errno));
	// No parent-death signal: the task must outlive the plugin.
	if (prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0) != 0)
		shim_fail("shim: PR_SET_PDEATHSIG: %s", strerror(errno));
	// bwrap hands every open descriptor to the task: anything inherited
	// beyond stdio and bwrap's own must close.
	if (syscall(SYS_close_range, SHIM_LAST_FD + 1, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
		shim_fail("shim: close_range: %s", strerror(errno));

	char *empty_env[] = {NULL};
	execve(argv[i], &argv[i], empty_env);
	shim_fail("shim: exec %s: %s", argv[i], strerror(errno));
}

// glibc passes argc, argv and envp to constructors.
__attribute__((constructor)) static void bwrap_r_shim(int argc, char **argv, char **envp) {
	(void)envp;
	if (argc > 1 && strcmp(argv[1], "_shim") == 0)
		shim_main(argc, argv);
}
