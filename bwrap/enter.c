// The enter launcher: the one way a command gets into a running sandbox
// (nomad alloc exec, script checks, template change scripts). Like shim.c it
// runs as a constructor, before the Go runtime, and acts only when argv[1] is
// "_enter":
//
//   _enter -pid P -start T -uid N -gid N [-cgroup DIR]... [-cwd DIR] [-tty]
//          -- COMMAND ARG...
//
// Started as root with an empty environment, the command's stdio, the task's
// environment on descriptor 3 and the seccomp filter on descriptor 4 (with
// -tty, a unix socket on descriptor 5). Nothing the task controls reaches a
// root step: the environment is applied only by the final execve, after the
// process is the task's UID, has no capabilities, no_new_privs and the
// filter. In this order it:
//
//   1. makes itself non-dumpable (the task cannot ptrace it or write its
//      memory), closes every other inherited descriptor and gives up any
//      controlling terminal it was started with (the agent's, when an
//      operator runs it in a terminal: /dev/tty in the sandbox would reach it);
//   2. opens the target by pidfd and checks it is the task's process: the
//      start time and UID the driver recorded, in namespaces not the host's;
//   3. joins the task's cgroups, drops its supplementary groups, and joins
//      the task's pid namespace for its child;
//   4. forks; the parent stays on the host and only waits, then exits as the
//      command did. The child joins the task's user, mount, ipc, uts, net and
//      cgroup namespaces through the pidfd and its root, sets no_new_privs,
//      drops the bounding set, becomes the task's UID and GID, clears every
//      capability, changes to the working directory as that UID, loads the
//      filter and execs the command with the task's environment.
//
// With -tty the command gets a terminal of the sandbox's own: before the
// drop the child unshares a mount namespace (a copy of the task's) and mounts
// a fresh devpts instance on its /dev/pts; as the task's UID it opens a pty
// through that mount (no path of the task's), takes the slave by
// TIOCGPTPEER, sends the master to the driver over descriptor 5 (SCM_RIGHTS),
// and makes the slave its controlling terminal, in a session of its own, and
// its stdio. The driver relays the exec stream to the master; `tty` inside
// names /dev/pts/N, and nothing of a host terminal is in the sandbox.
//
// A failure of the launcher exits 126 with "bwrap-r: ..." on stderr; a command
// that is not found exits 127, as a shell's would.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/fsuid.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shim.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
// The mount API's calls have one number on every architecture.
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

#define ENTER_MAX_CGROUPS 16
// Limits on what the driver hands over: a task's environment is bounded by
// what execve takes anyway.
#define ENTER_MAX_ENV (8 << 20)
#define ENTER_MAX_FILTER (BPF_MAXINSNS * sizeof(struct sock_filter))
// The ptys an exec session's devpts instance holds: its terminal and what
// runs in it (tmux, script). The node's pool (kernel.pty.max) is shared by
// every task, and a task of the same UID can reach the instance while the
// session runs.
#define ENTER_PTS_MAX "16"

// enter_read_all reads descriptor fd to its end, at most max bytes.
static char *enter_read_all(int fd, size_t max, size_t *len, const char *what) {
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap + 1);
	if (buf == NULL)
		shim_fail("enter: out of memory");
	for (;;) {
		if (n == cap) {
			if (cap >= max)
				shim_fail("enter: %s: more than %zu bytes", what, max);
			cap *= 2;
			if ((buf = realloc(buf, cap + 1)) == NULL)
				shim_fail("enter: out of memory");
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			shim_fail("enter: reading %s: %s", what, strerror(errno));
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > max)
		shim_fail("enter: %s: more than %zu bytes", what, max);
	buf[n] = '\0';
	*len = n;
	return buf;
}

// enter_env splits the NUL-separated environment into an envp array.
static char **enter_env(void) {
	size_t len;
	char *buf = enter_read_all(ENTER_ENV_FD, ENTER_MAX_ENV, &len, "environment");
	size_t count = 0;
	for (size_t i = 0; i < len; i++)
		if (buf[i] == '\0')
			count++;
	char **envp = calloc(count + 1, sizeof *envp);
	if (envp == NULL)
		shim_fail("enter: out of memory");
	size_t k = 0;
	for (size_t i = 0; i < len; i += strlen(buf + i) + 1) {
		char *entry = buf + i;
		char *eq = strchr(entry, '=');
		if (eq == NULL || eq == entry)
			shim_fail("enter: malformed environment entry");
		envp[k++] = entry;
	}
	envp[k] = NULL;
	return envp;
}

// enter_check_target checks, through the target's /proc directory, that it
// is the task's process: the start time the driver recorded (field 22 of
// stat), the task's UID, and namespaces that are not the host's.
static void enter_check_target(int procfd, unsigned long long start, long uid) {
	char buf[4096];
	int fd = openat(procfd, "stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		shim_fail("enter: the task's process is gone");
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		shim_fail("enter: reading the task's stat: %s", strerror(errno));
	buf[n] = '\0';
	// comm may hold spaces and parentheses: fields start after the last ')'.
	char *p = strrchr(buf, ')');
	if (p == NULL)
		shim_fail("enter: malformed stat of the task's process");
	p++;
	// p is before field 3; field 22 follows 20 more separators.
	char *save = NULL, *f = strtok_r(p, " ", &save);
	for (int i = 3; f != NULL && i < 22; i++)
		f = strtok_r(NULL, " ", &save);
	if (f == NULL || strtoull(f, NULL, 10) != start)
		shim_fail("enter: the task's process is gone (pid reused)");

	fd = openat(procfd, "status", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		shim_fail("enter: the task's process is gone");
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		shim_fail("enter: reading the task's status: %s", strerror(errno));
	buf[n] = '\0';
	char *line = strstr(buf, "\nUid:");
	long ruid = -1, euid = -1;
	if (line == NULL || sscanf(line, "\nUid: %ld %ld", &ruid, &euid) != 2)
		shim_fail("enter: no Uid line in the task's status");
	if (ruid != uid || euid != uid)
		shim_fail("enter: the target runs as uid %ld, not the task's %ld", ruid, uid);

	// A sandbox has namespaces of its own: joining the host's would run the
	// command on the host.
	static const char *const own[] = {"ns/user", "ns/mnt", "ns/pid"};
	for (size_t i = 0; i < sizeof own / sizeof *own; i++) {
		struct stat theirs, ours;
		char self[64];
		snprintf(self, sizeof self, "/proc/self/%s", own[i]);
		if (fstatat(procfd, own[i], &theirs, 0) != 0 || stat(self, &ours) != 0)
			shim_fail("enter: reading %s: %s", own[i], strerror(errno));
		if (theirs.st_dev == ours.st_dev && theirs.st_ino == ours.st_ino)
			shim_fail("enter: the target shares the host's %s: not a sandbox", own[i]);
	}
}

// enter_leave_terminal gives up the controlling terminal the launcher may
// have been started with, so that neither it nor the command has one: the
// sandbox's /dev/tty opens the caller's controlling terminal, whichever
// namespace it is in.
static void enter_leave_terminal(void) {
	int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return; // none (ENXIO), or one that is hung up
	// For a session's leader TIOCNOTTY would hang up the terminal's
	// foreground jobs, which are not the launcher's to end.
	if (getsid(0) == getpid())
		shim_fail("enter: started as the leader of a terminal's session: start it in a session of its own");
	if (ioctl(fd, TIOCNOTTY) != 0)
		shim_fail("enter: giving up the controlling terminal: %s", strerror(errno));
	close(fd);
}

// enter_open_dir opens the directory path below dirfd without following any
// link.
static int enter_open_dir(int dirfd, const char *path) {
	struct open_how how = {
		.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
		.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

// enter_pts_dir opens the mount point of the terminal's devpts instance:
// /dev/pts, made by bwrap at the sandbox's start. A sandbox started by an
// older bwrap-r has none: the mount point (and /dev/ptmx) is made then, as
// the task's UID (a tmpfs of the task's user namespace takes only owners
// mapped there), with this namespace's /dev writable for the moment.
static int enter_pts_dir(long uid, long gid) {
	int dev = enter_open_dir(AT_FDCWD, "/dev");
	if (dev < 0)
		shim_fail("enter: the sandbox's /dev: %s", strerror(errno));
	int pts = enter_open_dir(dev, "pts");
	if (pts < 0 && errno == ENOENT) {
		struct mount_attr rw = {.attr_clr = MOUNT_ATTR_RDONLY}, ro = {.attr_set = MOUNT_ATTR_RDONLY};
		if (syscall(SYS_mount_setattr, dev, "", AT_EMPTY_PATH, &rw, sizeof rw) != 0)
			shim_fail("enter: making a mount point on /dev: %s", strerror(errno));
		setfsgid((gid_t)gid);
		setfsuid((uid_t)uid);
		if (setfsuid((uid_t)-1) != (int)uid)
			shim_fail("enter: setfsuid %ld: failed", uid);
		int made = mkdirat(dev, "pts", 0755), err = errno;
		if (made == 0 && symlinkat("pts/ptmx", dev, "ptmx") != 0 && errno != EEXIST)
			made = -1, err = errno;
		setfsuid(0);
		setfsgid(0);
		if (syscall(SYS_mount_setattr, dev, "", AT_EMPTY_PATH, &ro, sizeof ro) != 0)
			shim_fail("enter: /dev read-only again: %s", strerror(errno));
		if (made != 0 && err != EEXIST)
			shim_fail("enter: making /dev/pts: %s", strerror(err));
		pts = enter_open_dir(dev, "pts");
	}
	if (pts < 0)
		shim_fail("enter: the sandbox's /dev/pts: %s", strerror(errno));
	close(dev);
	return pts;
}

// enter_devpts, as root of the task's user namespace, gives the child a
// mount namespace of its own, a copy of the task's, with a fresh devpts
// instance on /dev/pts. The command's terminal is then a device of the
// sandbox (tty names it, and it exists there), while the task's own
// processes see an empty /dev/pts. Returns the instance's root.
static int enter_devpts(long uid, long gid) {
	if (unshare(CLONE_NEWNS) != 0)
		shim_fail("enter: a mount namespace for the terminal: %s", strerror(errno));
	// Nothing mounted here propagates back into the task's namespace.
	struct mount_attr slave = {.propagation = MS_SLAVE};
	if (syscall(SYS_mount_setattr, AT_FDCWD, "/", AT_RECURSIVE, &slave, sizeof slave) != 0)
		shim_fail("enter: making the terminal's mounts slaves: %s", strerror(errno));
	static const char *const opts[][2] = {{"ptmxmode", "0666"}, {"mode", "0620"}, {"max", ENTER_PTS_MAX}};
	int mnt = shim_fsmount("devpts", opts, sizeof opts / sizeof *opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, "enter: devpts");
	int pts = enter_pts_dir(uid, gid);
	if (syscall(SYS_move_mount, mnt, "", pts, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0)
		shim_fail("enter: mounting devpts on /dev/pts: %s", strerror(errno));
	close(pts);
	return mnt;
}

// enter_send_master sends the terminal's master to the driver, the one
// process that keeps it.
static void enter_send_master(int master) {
	char byte = 'T';
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int))];
	} control;
	memset(&control, 0, sizeof control);
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &master, sizeof master);
	ssize_t n;
	do
		n = sendmsg(ENTER_CONSOLE_FD, &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		shim_fail("enter: sending the terminal: %s", n < 0 ? strerror(errno) : "short write");
	close(ENTER_CONSOLE_FD);
}

// enter_terminal, as the task's UID, opens a pty of the session's devpts
// instance (so its slave belongs to the task), sends the master to the
// driver, and makes the slave the command's controlling terminal, in a
// session of its own (job control works inside), and its stdio.
static void enter_terminal(int ptsfd) {
	int master = openat(ptsfd, "ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0)
		shim_fail("enter: opening a terminal: %s", strerror(errno));
	close(ptsfd);
	int unlock = 0;
	unsigned int index;
	struct stat st;
	if (ioctl(master, TIOCSPTLCK, &unlock) != 0 || ioctl(master, TIOCGPTN, &index) != 0)
		shim_fail("enter: the terminal's master: %s", strerror(errno));
	if (fstat(master, &st) != 0 || !S_ISCHR(st.st_mode))
		shim_fail("enter: the terminal's master is not a character device");
	// The slave by the master, not by a path in the sandbox.
	int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
	if (slave < 0)
		shim_fail("enter: the terminal's slave: %s", strerror(errno));
	// From here a failure shows on the operator's terminal.
	if (dup2(slave, STDERR_FILENO) < 0)
		shim_fail("enter: the terminal as stderr: %s", strerror(errno));
	enter_send_master(master);
	close(master);
	if (setsid() < 0)
		shim_fail("enter: setsid: %s", strerror(errno));
	if (ioctl(slave, TIOCSCTTY, 0) != 0)
		shim_fail("enter: the terminal: %s", strerror(errno));
	if (dup2(slave, STDIN_FILENO) < 0 || dup2(slave, STDOUT_FILENO) < 0)
		shim_fail("enter: the terminal as stdio: %s", strerror(errno));
	if (slave > STDERR_FILENO)
		close(slave);
}

// enter_load_filter reads the compiled filter and installs it; no_new_privs
// is already set.
static void enter_load_filter(struct sock_filter *filter, size_t len) {
	struct sock_fprog prog = {.len = (unsigned short)(len / sizeof *filter), .filter = filter};
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0)
		shim_fail("enter: loading the seccomp filter: %s", strerror(errno));
}

// enter_exec runs the command: a name with a slash as it is, else the first
// match on the task's PATH (execvpe would read the launcher's own, empty,
// environment). It only returns by exiting.
static void enter_exec(char **argv, char **envp) {
	if (strchr(argv[0], '/') != NULL) {
		execve(argv[0], argv, envp);
		dprintf(STDERR_FILENO, "bwrap-r: exec %s: %s\n", argv[0], strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}
	const char *path = "/usr/local/bin:/usr/bin:/bin";
	for (char **e = envp; *e != NULL; e++)
		if (strncmp(*e, "PATH=", 5) == 0)
			path = *e + 5;
	int denied = 0;
	char candidate[4096];
	for (const char *dir = path;; dir++) {
		const char *end = strchrnul(dir, ':');
		size_t dlen = (size_t)(end - dir);
		// An empty PATH entry is the working directory, as for a shell.
		int n = dlen == 0 ? snprintf(candidate, sizeof candidate, "%s", argv[0])
		                  : snprintf(candidate, sizeof candidate, "%.*s/%s", (int)dlen, dir, argv[0]);
		if (n > 0 && (size_t)n < sizeof candidate) {
			execve(candidate, argv, envp);
			if (errno == EACCES)
				denied = 1;
			else if (errno != ENOENT && errno != ENOTDIR)
				break;
		}
		if (*end == '\0')
			break;
		dir = end;
	}
	dprintf(STDERR_FILENO, "bwrap-r: %s: %s\n", argv[0], denied ? "permission denied" : "command not found");
	_exit(denied ? 126 : 127);
}

// enter_child runs in the task's pid namespace: it becomes the task and
// execs the command.
static void enter_child(int pidfd, int rootfd, long uid, long gid, const char *cwd, int tty,
                        struct sock_filter *filter, size_t filter_len, char **argv, char **envp) {
	if (setns(pidfd, CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET | CLONE_NEWCGROUP) != 0)
		shim_fail("enter: joining the task's namespaces: %s", strerror(errno));
	// Joining the mount namespace put the root at the namespace's; the task
	// lives below bwrap's pivoted root.
	if (fchdir(rootfd) != 0 || chroot(".") != 0)
		shim_fail("enter: the task's root: %s", strerror(errno));
	close(rootfd);
	close(pidfd);
	int ptsfd = tty ? enter_devpts(uid, gid) : -1;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		shim_fail("enter: no_new_privs: %s", strerror(errno));
	for (int cap = 0; cap <= 63; cap++) {
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
			if (errno == EINVAL)
				break; // past the kernel's last capability
			shim_fail("enter: dropping capability %d from the bounding set: %s", cap, strerror(errno));
		}
	}
	if (setgid((gid_t)gid) != 0)
		shim_fail("enter: setgid %ld: %s", gid, strerror(errno));
	if (setuid((uid_t)uid) != 0)
		shim_fail("enter: setuid %ld: %s", uid, strerror(errno));
	// In the task's user namespace the launcher's host root is not that
	// namespace's root, so setuid kept its capabilities: clear them all.
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct none[2];
	memset(none, 0, sizeof none);
	if (syscall(SYS_capset, &hdr, none) != 0)
		shim_fail("enter: clearing capabilities: %s", strerror(errno));
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
		shim_fail("enter: clearing ambient capabilities: %s", strerror(errno));
	// setuid reset dumpable to the system default: keep it off until exec.
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		shim_fail("enter: PR_SET_DUMPABLE: %s", strerror(errno));
	// The command ends with the session that started it.
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
		shim_fail("enter: PR_SET_PDEATHSIG: %s", strerror(errno));
	// As the task's UID, inside: the path is the sandbox's to resolve.
	if (chdir(cwd) != 0 && chdir("/") != 0)
		shim_fail("enter: chdir %s: %s", cwd, strerror(errno));
	if (tty)
		enter_terminal(ptsfd);
	// As for the task (shim.c): not the agent's umask.
	umask(022);
	enter_load_filter(filter, filter_len);
	enter_exec(argv, envp);
}

// enter_wait waits for the child and exits as it did: its code, or its signal
// raised on the launcher (what nsenter does too).
static void enter_wait(pid_t child) {
	int status;
	while (waitpid(child, &status, 0) < 0) {
		if (errno != EINTR)
			shim_fail("enter: waiting for the command: %s", strerror(errno));
	}
	if (WIFEXITED(status))
		_exit(WEXITSTATUS(status));
	int sig = WTERMSIG(status);
	struct rlimit nocore = {0, 0};
	setrlimit(RLIMIT_CORE, &nocore);
	signal(sig, SIG_DFL);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	kill(getpid(), sig);
	_exit(128 + sig);
}

static void enter_main(int argc, char **argv) {
	long uid = -1, gid = -1, pid = -1;
	unsigned long long start = 0;
	int have_start = 0, tty = 0;
	const char *cwd = "/";
	const char *cgroups[ENTER_MAX_CGROUPS];
	int ncgroups = 0;
	int i = 2;

	shim_report_fd = -1;
	shim_fail_status = 126;
	// First: nothing may inspect or write this process while it is root.
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		shim_fail("enter: PR_SET_DUMPABLE: %s", strerror(errno));
	shim_stdio();
	enter_leave_terminal();
	for (; i < argc; i++) {
		const char *flag = argv[i];
		if (strcmp(flag, "--") == 0) {
			i++;
			break;
		}
		if (strcmp(flag, "-tty") == 0) {
			tty = 1;
			continue;
		}
		if (i + 1 >= argc)
			shim_fail("enter: %s needs a value", flag);
		const char *val = argv[++i];
		if (strcmp(flag, "-uid") == 0)
			uid = shim_id(flag, val);
		else if (strcmp(flag, "-gid") == 0)
			gid = shim_id(flag, val);
		else if (strcmp(flag, "-pid") == 0)
			pid = shim_id(flag, val);
		else if (strcmp(flag, "-start") == 0) {
			char *end = NULL;
			errno = 0;
			start = strtoull(val, &end, 10);
			if (errno != 0 || end == val || *end != '\0')
				shim_fail("enter: -start %s: not a start time", val);
			have_start = 1;
		} else if (strcmp(flag, "-cwd") == 0) {
			if (val[0] != '/')
				shim_fail("enter: -cwd %s: not an absolute path", val);
			cwd = val;
		} else if (strcmp(flag, "-cgroup") == 0) {
			if (ncgroups == ENTER_MAX_CGROUPS)
				shim_fail("enter: more than %d cgroups", ENTER_MAX_CGROUPS);
			cgroups[ncgroups++] = val;
		} else
			shim_fail("enter: unknown flag %s", flag);
	}
	if (i >= argc || argv[i][0] == '\0')
		shim_fail("enter: want -- COMMAND ARGS");
	if (uid <= 0 || gid <= 0)
		shim_fail("enter: refusing uid %ld gid %ld: a command never enters a sandbox as root", uid, gid);
	if (pid <= 1 || !have_start)
		shim_fail("enter: want -pid and -start of the task's process");

	char **envp = enter_env();
	size_t filter_len;
	struct sock_filter *filter = (struct sock_filter *)enter_read_all(ENTER_SECCOMP_FD, ENTER_MAX_FILTER, &filter_len, "seccomp filter");
	if (filter_len == 0 || filter_len % sizeof *filter != 0)
		shim_fail("enter: the seccomp filter is %zu bytes, not whole instructions", filter_len);
	// Only stdio (and with -tty the console socket) stays open from here on.
	if (tty) {
		struct stat st;
		if (fstat(ENTER_CONSOLE_FD, &st) != 0 || !S_ISSOCK(st.st_mode))
			shim_fail("enter: -tty needs the console socket on descriptor %d", ENTER_CONSOLE_FD);
		if (fcntl(ENTER_CONSOLE_FD, F_SETFD, FD_CLOEXEC) != 0 ||
		    syscall(SYS_close_range, 3, ENTER_CONSOLE_FD - 1, 0) != 0 ||
		    syscall(SYS_close_range, ENTER_CONSOLE_FD + 1, ~0U, 0) != 0)
			shim_fail("enter: close_range: %s", strerror(errno));
	} else if (syscall(SYS_close_range, 3, ~0U, 0) != 0)
		shim_fail("enter: close_range: %s", strerror(errno));

	int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
	if (pidfd < 0)
		shim_fail("enter: the task's process is gone (%s)", strerror(errno));
	char procpath[64];
	snprintf(procpath, sizeof procpath, "/proc/%ld", pid);
	int procfd = open(procpath, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (procfd < 0)
		shim_fail("enter: the task's process is gone (%s)", strerror(errno));
	enter_check_target(procfd, start, uid);
	int rootfd = openat(procfd, "root", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		shim_fail("enter: the task's root: %s", strerror(errno));
	close(procfd);
	// Still alive now, so the pid was the pidfd's process throughout: what was
	// read and opened through /proc/PID was the task's.
	if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) != 0)
		shim_fail("enter: the task's process is gone");

	shim_join_cgroups(cgroups, ncgroups);
	if (setgroups(0, NULL) != 0)
		shim_fail("enter: setgroups: %s", strerror(errno));
	if (setns(pidfd, CLONE_NEWPID) != 0)
		shim_fail("enter: joining the task's pid namespace: %s", strerror(errno));

	pid_t child = fork();
	if (child < 0)
		shim_fail("enter: fork: %s", strerror(errno));
	if (child == 0)
		enter_child(pidfd, rootfd, uid, gid, cwd, tty, filter, filter_len, &argv[i], envp);
	close(pidfd);
	close(rootfd);
	// Only the child sends on it: the driver sees the socket's end once the
	// child has sent or died.
	if (tty)
		close(ENTER_CONSOLE_FD);
	enter_wait(child);
}

// glibc passes argc, argv and envp to constructors.
__attribute__((constructor)) static void bwrap_r_enter(int argc, char **argv, char **envp) {
	(void)envp;
	if (argc > 1 && strcmp(argv[1], "_enter") == 0)
		enter_main(argc, argv);
}
