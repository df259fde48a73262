// The ways-in battery's loader library (e2e/waysin_test.go). A job points
// LD_PRELOAD or LD_AUDIT at it; whatever process the dynamic loader starts
// it in records who it runs as and whether a seccomp filter holds it:
//
//   - one line appended to $WAYSIN_REC_HOST (the task's local/ as the host
//     sees it: only a process on the host opens it) or /local/waysin.rec
//     (inside the sandbox);
//   - a marker file created in $WAYSIN_MARKER_DIR, a root-only directory of
//     the test's on the host: only root on the host can create it.
//
// In a process that runs unfiltered (Seccomp: 0) inside the sandbox, a child
// also tries what the filter refuses: unshare(CLONE_NEWUSER|CLONE_NEWNS), a
// tmpfs mount in the new namespaces, and keyctl on the user keyring.
//
// System calls through syscall(2) and no stdio streams: as an audit library
// it runs in a link map of its own, before the program's libc is set up.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int recorded;

// field copies the value of "Name:\t..." from /proc/self/status into out.
static void field(const char *status, const char *name, char *out, size_t n) {
	const char *p = strstr(status, name);
	snprintf(out, n, "?");
	if (!p)
		return;
	p += strlen(name);
	while (*p == ' ' || *p == '\t')
		p++;
	size_t i = 0;
	while (p[i] && p[i] != '\n' && i + 1 < n) {
		out[i] = p[i];
		i++;
	}
	out[i] = 0;
}

// tryUnfiltered forks a child that attempts what the filter refuses and
// reports each attempt as ok or errno.
static void tryUnfiltered(char *out, size_t n) {
	int pfd[2];
	if (syscall(SYS_pipe2, pfd, O_CLOEXEC) != 0) {
		snprintf(out, n, " tries=pipe-failed");
		return;
	}
	long pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
	if (pid == 0) {
		char buf[160];
		long k = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -4 /* KEY_SPEC_USER_KEYRING */, 0);
		int ke = k < 0 ? errno : 0;
		long u = syscall(SYS_unshare, CLONE_NEWUSER | CLONE_NEWNS);
		int ue = u < 0 ? errno : 0;
		long m = -1;
		int me = -1;
		if (u == 0) {
			m = syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, "size=64k");
			me = m < 0 ? errno : 0;
		}
		int l = snprintf(buf, sizeof buf, " keyctl=%s%d unshare=%s%d mount=%s%d",
			ke ? "errno" : "ok", ke ? ke : (int)k, ue ? "errno" : "ok", ue,
			u != 0 ? "skipped" : (me ? "errno" : "ok"), me);
		syscall(SYS_write, pfd[1], buf, l);
		syscall(SYS_exit_group, 0);
	}
	syscall(SYS_close, pfd[1]);
	long got = 0;
	if (pid > 0) {
		got = syscall(SYS_read, pfd[0], out, n - 1);
		syscall(SYS_wait4, pid, 0, 0, 0);
	}
	syscall(SYS_close, pfd[0]);
	if (got <= 0)
		snprintf(out, n, " tries=fork-failed");
	else
		out[got] = 0;
}

static void record(const char *how) {
	if (recorded)
		return;
	recorded = 1;
	int saved = errno;
	char status[8192] = {0};
	int fd = syscall(SYS_openat, AT_FDCWD, "/proc/self/status", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		syscall(SYS_read, fd, status, sizeof status - 1);
		syscall(SYS_close, fd);
	}
	char seccomp[16], nnp[16], capeff[32], uid[64];
	field(status, "\nSeccomp:", seccomp, sizeof seccomp);
	field(status, "\nNoNewPrivs:", nnp, sizeof nnp);
	field(status, "\nCapEff:", capeff, sizeof capeff);
	field(status, "\nUid:", uid, sizeof uid);
	char exe[256] = {0};
	if (syscall(SYS_readlinkat, AT_FDCWD, "/proc/self/exe", exe, sizeof exe - 1) < 0)
		snprintf(exe, sizeof exe, "?");
	for (char *p = uid; *p; p++)
		if (*p == '\t')
			*p = ',';

	const char *tag = getenv("WAYSIN_TAG");
	const char *dir = getenv("WAYSIN_MARKER_DIR");
	char marker[64] = "unset";
	if (dir && *dir) {
		char path[512];
		// The pid stays across exec (the enter shim execs nsenter): the
		// executable's name tells them apart.
		const char *base = strrchr(exe, '/');
		snprintf(path, sizeof path, "%s/%s-%s-%ld-%s", dir, tag ? tag : "x", how, (long)syscall(SYS_getpid), base ? base + 1 : exe);
		int m = syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (m >= 0) {
			syscall(SYS_write, m, exe, strlen(exe));
			syscall(SYS_close, m);
			snprintf(marker, sizeof marker, "created");
		} else {
			snprintf(marker, sizeof marker, "errno%d", errno);
		}
	}
	char tries[200] = "";
	if (strcmp(seccomp, "0") == 0 && syscall(SYS_getuid) != 0)
		tryUnfiltered(tries, sizeof tries);

	char line[1024];
	int l = snprintf(line, sizeof line, "how=%s pid=%ld uid=%s exe=%s seccomp=%s nnp=%s capeff=%s marker=%s%s\n",
		how, (long)syscall(SYS_getpid), uid, exe, seccomp, nnp, capeff, marker, tries);
	const char *host = getenv("WAYSIN_REC_HOST");
	const char *paths[] = {host, "/local/waysin.rec"};
	for (int i = 0; i < 2; i++) {
		if (!paths[i] || !*paths[i])
			continue;
		int r = syscall(SYS_openat, AT_FDCWD, paths[i], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
		if (r >= 0) {
			syscall(SYS_write, r, line, l);
			syscall(SYS_close, r);
			break;
		}
	}
	errno = saved;
}

__attribute__((constructor)) static void onLoad(void) { record("init"); }

// la_version is the audit interface's entry: the loader calls it when
// LD_AUDIT names this library.
unsigned int la_version(unsigned int version) {
	record("audit");
	return version;
}
