// The launcher shim, in C so that it runs before the Go runtime starts: the
// binary that hosts it links Nomad's packages, whose initialisation would
// otherwise cost every task start tens of milliseconds.
//
// It runs as a constructor of any binary that links package bwrap, and acts
// only when argv[1] is "_shim":
//
//   _shim -uid N -gid N [-cgroup DIR]... [-netns FILE]
//         [-stage DIR [-fds N] [-root-bind PATH]... [-root-link TARGET PATH]...
//          [-tree NAME | -devtree NAME | -roottree NAME] [-tree-... ]...]
//         -- /abs/path/to/bwrap ARG...
//
// or, started ahead of its launch, as _shim -request: the same, with that
// argv and the descriptors below sent on a socket (request.c).
//
// Started as root with the task's stdio, its failure report's descriptor (3),
// bwrap's descriptors (4 to 6),
// the bind sources the launcher opened (7 to N), the template namespace and
// the trees' data files (-tree-data FD PATH), in this order it joins the
// task's cgroups and network namespace; with -stage, it builds the root
// bwrap runs in (see shim_root), binds each source descriptor at DIR/<fd>
// on a private tmpfs there (bwrap binds from it, so it never walks a
// source's host path as the task), builds the trees and moves into that
// root; then it drops to the task's UID and GID, and execs bwrap with an
// empty environment.
//
// Why drop before bwrap rather than let bwrap map IDs: a bwrap started by UID
// N with --unshare-user --uid N --gid N writes the identity map "N N 1", so the
// task's processes are host UID N and host firewall rules can match them.
//
// On failure it writes {"shim-error": "..."} to descriptor 3 (which closes
// when it execs bwrap, so the launcher reads it to its end), the message to
// stderr, and exits 125.

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
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/openat2.h>

#include "shim.h"

#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOVE_MOUNT_T_EMPTY_PATH
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#define SHIM_MAX_CGROUPS 16

static void shim_as_task(long uid, long gid);
static void shim_as_root(void);
#define SHIM_MAX_TREE_OPS 512

// The descriptor a failure is reported on as JSON; the enter launcher has
// none (its descriptor 3 is the task's environment).
int shim_report_fd = SHIM_INFO_FD;
// Where a failure's message goes (a spare moves its stderr while it waits).
int shim_stderr_fd = STDERR_FILENO;
// The exit status of a launcher failure.
int shim_fail_status = 125;

void shim_fail(const char *fmt, ...) {
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
	if (shim_report_fd >= 0)
		(void)!write(shim_report_fd, json, n);
	if (shim_stderr_fd >= 0)
		dprintf(shim_stderr_fd, "bwrap-r: %s\n", msg);
	_exit(shim_fail_status);
}

// shim_id parses a task UID or GID: decimal, 1 to 2^31-1 (never root).
long shim_id(const char *flag, const char *s) {
	char *end = NULL;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v > INT_MAX)
		shim_fail("shim: %s %s: not an id", flag, s);
	return v;
}

// shim_under reports whether path is dir or lies below it.
static int shim_under(const char *path, const char *dir) {
	size_t n = strlen(dir);
	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

// shim_private_mounts gives the shim (and so bwrap) a mount namespace of its
// own, a slave of the one it copies: nothing mounted here reaches the host.
// With a template (a descriptor of a mount namespace, or -1) it copies that
// one instead of the host's: see shim_root.
static void shim_private_mounts(int template_fd) {
	if (template_fd >= 0 && setns(template_fd, CLONE_NEWNS) != 0)
		shim_fail("shim: joining the template mount namespace: %s", strerror(errno));
	if (unshare(CLONE_NEWNS) != 0)
		shim_fail("shim: new mount namespace: %s", strerror(errno));
	if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) != 0)
		shim_fail("shim: making / a slave: %s", strerror(errno));
}

// A tree is a directory the shim assembles on its staging tmpfs, as root,
// for bwrap to bind into the sandbox as one mount (bwrap-r's /etc and /dev):
// bwrap parses the whole mount table for every bind it makes, so the files
// of /etc bound one by one cost a start milliseconds. The tree is private to
// this launch's mount namespace and built from the host as it is now, so it
// is never stale and nothing a task does reaches any other.
enum tree_op_kind { TREE_BEGIN, TREE_DIR, TREE_FILE, TREE_NODE, TREE_LINK, TREE_BIND, TREE_PATH, TREE_DEVPATH, TREE_FD, TREE_TMPFS };

// The sandbox's root (-roottree, assemble.go): a tree on a tmpfs of its own,
// read-only once built, that bwrap binds as its root with --dev-bind. Its
// mounts carry the flags bwrap's own binds would set (mount_setattr, before
// they are attached): a read-only bind is read-only, nosuid and nodev, a
// bind of devices nosuid only, a writable bind nosuid and nodev. Only a root
// tree has these entries:
//   -tree-path[-try] SOURCE PATH     bwrap's --ro-bind[-try] SOURCE, the
//                                    source looked up as the task's UID
//   -tree-devpath[-try] SOURCE PATH  bwrap's --dev-bind[-try] SOURCE, likewise
//   -tree-fd[-rw] FD PATH            a bind source the launcher opened (read-
//                                    only, or writable), not staged
//   -tree-tmpfs SIZE MODE PATH       a tmpfs (SIZE bytes, 0: the default;
//                                    octal MODE), the task's, nosuid and nodev

struct tree_op {
	enum tree_op_kind kind;
	// TREE_BEGIN: the tree's name below the stage, and whether it may hold
	// device nodes (bwrap binds it with --dev-bind); otherwise the entry's
	// path in the tree and its source (a host path; a link's target).
	const char *path, *source;
	int devices;
	// TREE_BIND and TREE_NODE: the source's mount, cloned in the host's
	// mount namespace before the launcher leaves it (-1: missing or copied).
	int mnt;
	// TREE_BIND of a small file every user may read: its content, written to
	// the tree instead of a bind (copy != NULL).
	char *copy;
	size_t copy_len;
	mode_t copy_mode;
	// -tree-data: the descriptor (a memory file of the launcher's caller)
	// whose content the entry is, instead of a host path; else -1.
	int data_fd;
	// TREE_BEGIN: the sandbox's root tree.
	int root;
	// TREE_PATH, TREE_DEVPATH: a missing source is left out (-try).
	int optional;
	// TREE_FD: writable.
	int writable;
	// TREE_TMPFS: its size in bytes (0: the kernel's default) and mode.
	long long size;
	mode_t mode;
	// TREE_BIND of a root tree: the spare's copy (shim_prebuild) is there
	// and current (prebuilt), or is there and is not (stale: removed before
	// the entry is made as without one).
	int prebuilt, stale;
};

// The task's IDs, for the owner of a root tree's tmpfs.
static long tree_uid = -1, tree_gid = -1;

// Files up to this size that every user may read are copied into a tree
// rather than bound: a bind is a mount that bwrap parses with the mount
// table at every later bind and remount, and tears down at the end; a
// copy is a few microseconds. Either way the sandbox keeps what its start
// saw (a file replaced on the host is not seen by a bind of it either).
#define TREE_COPY_MAX (256 * 1024)

// tree_resolve: nothing a tree is built through may be a link or another
// mount (a bind of a host directory): every entry lands on the tree's tmpfs.
static const struct open_how tree_how = {
	.flags = O_PATH | O_CLOEXEC | O_NOFOLLOW,
	.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
};

static int tree_openat(int dirfd, const char *name, int dir) {
	struct open_how how = tree_how;
	if (dir)
		how.flags |= O_DIRECTORY;
	return (int)syscall(SYS_openat2, dirfd, name, &how, sizeof how);
}

// tree_clean_path reports whether path is a clean relative one.
static int tree_clean_path(const char *path) {
	if (path[0] == '\0' || path[0] == '/')
		return 0;
	for (const char *p = path; *p;) {
		const char *e = strchrnul(p, '/');
		size_t n = (size_t)(e - p);
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return 0;
		p = *e ? e + 1 : e;
	}
	return 1;
}

// tree_check_path refuses a path that is not a clean relative one.
static void tree_check_path(const char *path) {
	if (path[0] == '\0' || path[0] == '/')
		shim_fail("shim: tree entry %s: not a relative path", path);
	if (!tree_clean_path(path))
		shim_fail("shim: tree entry %s: not a clean relative path", path);
}

// tree_parent_close closes what tree_parent returned.
static void tree_parent_close(int parent, int root) {
	if (parent != root)
		close(parent);
}

// tree_parent_or opens the directory that holds path's last component,
// making the directories on the way (0755), and points *name at that
// component. For a component directly in root it returns root itself, not a
// copy (a dup and a close for every entry of a tree). soft: a failure
// returns -1 instead of ending the launcher (a spare's copy ahead, which is
// never the launch's failure; its paths are checked before).
static int tree_parent_or(int soft, int root, const char *path, char *buf, size_t len, const char **name) {
	if (!soft)
		tree_check_path(path);
	if (snprintf(buf, len, "%s", path) >= (int)len) {
		if (soft)
			return -1;
		shim_fail("shim: tree entry %s: path too long", path);
	}
	int fd = root;
	char *comp = buf;
	for (char *slash; (slash = strchr(comp, '/')) != NULL; comp = slash + 1) {
		*slash = '\0';
		int next = -1;
		if (mkdirat(fd, comp, 0755) == 0 || errno == EEXIST)
			next = tree_openat(fd, comp, 1);
		else if (!soft)
			shim_fail("shim: tree entry %s: making %s: %s", path, buf, strerror(errno));
		if (next < 0 && !soft)
			shim_fail("shim: tree entry %s: opening %s: %s", path, buf, strerror(errno));
		tree_parent_close(fd, root);
		if (next < 0)
			return -1;
		fd = next;
		*slash = '/';
	}
	*name = comp;
	return fd;
}

static int tree_parent(int root, const char *path, char *buf, size_t len, const char **name) {
	return tree_parent_or(0, root, path, buf, len, name);
}

// tree_write writes op's copy as name in parent (0, or -1 with errno set).
// O_TRUNC without O_EXCL: the file may be a later mount's mount point made
// in the first pass. Resolved as every entry is: never through a mount or a
// link.
static int tree_write(int parent, const char *name, const struct tree_op *op) {
	struct open_how how = tree_how;
	how.flags = O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC;
	how.mode = op->copy_mode;
	int f = (int)syscall(SYS_openat2, parent, name, &how, sizeof how);
	if (f < 0)
		return -1;
	int ok = fchmod(f, op->copy_mode) == 0 && write(f, op->copy, op->copy_len) == (ssize_t)op->copy_len;
	close(f);
	return ok ? 0 : -1;
}

// tree_mkdir makes a directory, or accepts one that is there.
static void tree_mkdir(int parent, const char *name, const char *path) {
	if (mkdirat(parent, name, 0755) == 0)
		return;
	struct stat st;
	if (errno != EEXIST || fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode))
		shim_fail("shim: tree entry %s: not a directory", path);
}

// tree_mkfile makes an empty file (a mount point), or accepts one that is there.
static void tree_mkfile(int parent, const char *name, const char *path) {
	int f = openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
	if (f >= 0) {
		close(f);
		return;
	}
	struct stat st;
	if (errno != EEXIST || fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode))
		shim_fail("shim: tree entry %s: not a file", path);
}

// attach_at moves the detached mount mnt to name in parent, on a directory
// or an empty file as mnt is one (made, or accepted if there), and closes
// mnt; path names the entry in errors.
static void attach_at(int parent, const char *name, const char *path, int mnt) {
	struct stat st;
	if (fstat(mnt, &st) != 0)
		shim_fail("shim: entry %s: %s", path, strerror(errno));
	if (S_ISDIR(st.st_mode))
		tree_mkdir(parent, name, path);
	else
		tree_mkfile(parent, name, path);
	int target = tree_openat(parent, name, 0);
	if (target < 0)
		shim_fail("shim: entry %s: %s", path, strerror(errno));
	if (syscall(SYS_move_mount, mnt, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0)
		shim_fail("shim: entry %s: binding it: %s", path, strerror(errno));
	close(target);
	close(mnt);
}

// shim_fsmount makes a detached mount of a new file system of type, with
// the n string options opts and the mount flags attrs; what names it in
// errors.
int shim_fsmount(const char *type, const char *const (*opts)[2], size_t n, unsigned attrs, const char *what) {
	int fs = (int)syscall(SYS_fsopen, type, FSOPEN_CLOEXEC);
	if (fs < 0)
		shim_fail("%s: %s", what, strerror(errno));
	for (size_t k = 0; k < n; k++)
		if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, opts[k][0], opts[k][1], 0) != 0)
			shim_fail("%s %s=%s: %s", what, opts[k][0], opts[k][1], strerror(errno));
	if (syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) != 0)
		shim_fail("%s: creating it: %s", what, strerror(errno));
	int mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, attrs);
	if (mnt < 0)
		shim_fail("%s: mounting it: %s", what, strerror(errno));
	close(fs);
	return mnt;
}

// tree_tmpfs makes a root tree's tmpfs, detached: the task's, as bwrap's
// --tmpfs in the task's user namespace would be.
static int tree_tmpfs(const struct tree_op *op) {
	char size[32], mode[16], uid[32], gid[32], what[PATH_MAX + 32];
	snprintf(size, sizeof size, "%lld", op->size);
	snprintf(mode, sizeof mode, "%o", (unsigned)op->mode);
	snprintf(uid, sizeof uid, "%ld", tree_uid);
	snprintf(gid, sizeof gid, "%ld", tree_gid);
	snprintf(what, sizeof what, "shim: tree entry %s: tmpfs", op->path);
	// The size last: without one, the kernel's default.
	const char *opts[][2] = {{"source", "tmpfs"}, {"mode", mode}, {"uid", uid}, {"gid", gid}, {"size", size}};
	size_t n = sizeof opts / sizeof opts[0] - (op->size == 0);
	return shim_fsmount("tmpfs", (const char *const (*)[2])opts, n, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, what);
}

// tree_flags are the mount flags bwrap's bind of an entry's kind would set.
static unsigned long long tree_flags(const struct tree_op *op) {
	switch (op->kind) {
	case TREE_NODE:
	case TREE_DEVPATH:
		return MOUNT_ATTR_NOSUID;
	case TREE_FD:
		return MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (op->writable ? 0 : MOUNT_ATTR_RDONLY);
	default:
		return MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
	}
}

// tree_set_flags sets them on a detached mount and everything below it, and
// makes it private: a clone of a shared mount (systemd makes / shared) would
// otherwise be its peer, and the host's later mounts below it would reach
// the sandbox.
static void tree_set_flags(const struct tree_op *op, int mnt) {
	struct mount_attr attr = {.attr_set = tree_flags(op), .propagation = MS_PRIVATE};
	if (syscall(SYS_mount_setattr, mnt, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0)
		shim_fail("shim: tree entry %s: setting its flags: %s", op->path, strerror(errno));
}

static void tree_entry(int root, const struct tree_op *op) {
	char buf[PATH_MAX];
	const char *name;
	int parent = tree_parent(root, op->path, buf, sizeof buf, &name);
	switch (op->kind) {
	case TREE_DIR:
		tree_mkdir(parent, name, op->path);
		break;
	case TREE_FILE:
		tree_mkfile(parent, name, op->path);
		break;
	case TREE_LINK:
		if (symlinkat(op->source, parent, name) != 0)
			shim_fail("shim: tree entry %s: symlink: %s", op->path, strerror(errno));
		break;
	case TREE_TMPFS:
		attach_at(parent, name, op->path, tree_tmpfs(op));
		break;
	case TREE_PATH:
	case TREE_DEVPATH:
	case TREE_FD:
	case TREE_NODE:
	case TREE_BIND: {
		if (op->copy != NULL) {
			if (tree_write(parent, name, op) != 0)
				shim_fail("shim: tree entry %s: copying %s: %s", op->path, op->source, strerror(errno));
			break;
		}
		if (op->mnt >= 0)
			attach_at(parent, name, op->path, op->mnt);
		break;
	}
	case TREE_BEGIN:
		break;
	}
	tree_parent_close(parent, root);
}

// tree_copy reads op's source when it is a regular file of at most
// TREE_COPY_MAX bytes that every user may read (links followed, as a bind
// would), and reports whether it did; anything else is bound. The checks
// and the read are of the one file opened.
static int tree_read(struct tree_op *op, int soft, struct stat *read_st);

static int tree_copy(struct tree_op *op) { return tree_read(op, 0, NULL); }

// tree_read is tree_copy; soft, a failure to read is not the launch's (a
// spare's copy ahead): the file is left to the launch. read_st, if not
// NULL, gets the status of the file read, taken before the read.
static int tree_read(struct tree_op *op, int soft, struct stat *read_st) {
	// O_PATH first: a FIFO or a device is never opened for reading.
	int fd = open(op->source, O_PATH | O_CLOEXEC);
	if (fd < 0)
		return 0;
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 0444) != 0444 || st.st_size > TREE_COPY_MAX) {
		close(fd);
		return 0;
	}
	char self[64];
	snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
	int f = open(self, O_RDONLY | O_CLOEXEC);
	close(fd);
	if (f < 0)
		return 0;
	char *buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
	if (buf == NULL && soft) {
		close(f);
		return 0;
	}
	if (buf == NULL)
		shim_fail("shim: out of memory");
	size_t n = 0;
	for (ssize_t r; n < (size_t)st.st_size && (r = read(f, buf + n, (size_t)st.st_size - n)) != 0; n += (size_t)r) {
		if (r < 0 && soft) {
			free(buf);
			close(f);
			return 0;
		}
		if (r < 0)
			shim_fail("shim: tree entry %s: reading %s: %s", op->path, op->source, strerror(errno));
	}
	close(f);
	op->copy = buf;
	op->copy_len = n;
	op->copy_mode = st.st_mode & 0755;
	if (read_st != NULL)
		*read_st = st;
	return 1;
}

// tree_data reads op's content from its descriptor, a regular file of at
// most TREE_COPY_MAX bytes, and closes it: it must not reach bwrap.
static void tree_data(struct tree_op *op) {
	struct stat st;
	if (fstat(op->data_fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > TREE_COPY_MAX)
		shim_fail("shim: tree entry %s: descriptor %d: want a regular file of at most %d bytes", op->path, op->data_fd, TREE_COPY_MAX);
	char *buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
	if (buf == NULL)
		shim_fail("shim: out of memory");
	size_t n = 0;
	for (ssize_t r; n < (size_t)st.st_size && (r = pread(op->data_fd, buf + n, (size_t)st.st_size - n, (off_t)n)) != 0; n += (size_t)r)
		if (r < 0)
			shim_fail("shim: tree entry %s: reading descriptor %d: %s", op->path, op->data_fd, strerror(errno));
	close(op->data_fd);
	op->copy = buf;
	op->copy_len = n;
	op->copy_mode = 0644;
}

// A spare launcher's sandbox root, prepared while it waits (_shim -request
// SOURCE PATH...): the root tree's tmpfs, detached, holding a copy of each
// -tree-bind source of the launch before it that tree_copy would copy (the
// host's small /etc files). Copying them took a quarter of the launcher's
// time. A request whose root tree binds the very same sources at the same
// paths, in the same order, takes it: each copy whose source still has the
// status it had when it was read (the same file, size, mode, owner, mtime
// and ctime) is kept, and any other is removed and made as without a
// spare's. Anything else and it is dropped unused. A failure here is never
// the launch's: the spare goes on without it.
struct prebuilt_entry {
	const char *source, *path;
	struct stat st;
	int have;
};

static struct {
	int mnt, n;
	struct prebuilt_entry *e;
} prebuilt = {.mnt = -1};

int shim_prebuilt_fd(void) { return prebuilt.mnt; }

void shim_prebuilt_set(int fd) { prebuilt.mnt = fd; }

void shim_prebuilt_drop(void) {
	if (prebuilt.mnt >= 0)
		close(prebuilt.mnt);
	prebuilt.mnt = -1;
}

// tree_root_tmpfs makes a root tree's tmpfs, detached (-1: it failed).
static int tree_root_tmpfs(void) {
	int fs = (int)syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC);
	if (fs < 0)
		return -1;
	int mnt = -1;
	if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "source", "bwrap-r-sandbox", 0) == 0 &&
	    syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "mode", "0755", 0) == 0 &&
	    syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "size", "16m", 0) == 0 &&
	    syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
		mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
	close(fs);
	return mnt;
}

// same_file reports whether b is the status of the file a was taken of, unchanged.
static int same_file(const struct stat *a, const struct stat *b) {
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_mode == b->st_mode && a->st_uid == b->st_uid &&
	       a->st_gid == b->st_gid && a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec && a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	       a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

// prebuild_entry copies e's source into the tmpfs at root as tree_copy and
// tree_entry would: 1 done, 0 not a file tree_copy copies, -1 failed. The
// status is taken before the read: a change while it reads shows at the
// request.
static int prebuild_entry(int root, struct prebuilt_entry *e) {
	struct tree_op op = {.kind = TREE_BIND, .path = e->path, .source = e->source, .data_fd = -1, .mnt = -1};
	// The status is the copied file's own, as it was before its read.
	if (!tree_read(&op, 1, &e->st))
		return 0;
	char buf[PATH_MAX];
	const char *name;
	int parent = tree_parent_or(1, root, e->path, buf, sizeof buf, &name), made = -1;
	if (parent >= 0) {
		made = tree_write(parent, name, &op) == 0 ? 1 : -1;
		tree_parent_close(parent, root);
	}
	free(op.copy);
	return made;
}

void shim_prebuild(int n, char **pairs) {
	if (n <= 0 || n > SHIM_MAX_TREE_OPS)
		return;
	// Each a clean path that no other is, or lies below: then no two copies
	// touch, and none is hidden by another entry's mount.
	for (int k = 0; k < n; k++) {
		if (pairs[2 * k][0] != '/' || !tree_clean_path(pairs[2 * k + 1]))
			return;
		for (int j = 0; j < k; j++)
			if (shim_under(pairs[2 * k + 1], pairs[2 * j + 1]) || shim_under(pairs[2 * j + 1], pairs[2 * k + 1]))
				return;
	}
	struct prebuilt_entry *e = calloc((size_t)n, sizeof *e);
	if (e == NULL)
		return;
	int mnt = tree_root_tmpfs();
	if (mnt < 0) {
		free(e);
		return;
	}
	mode_t old = umask(0);
	int ok = 1;
	for (int k = 0; k < n && ok; k++) {
		e[k].source = pairs[2 * k];
		e[k].path = pairs[2 * k + 1];
		int r = prebuild_entry(mnt, &e[k]);
		e[k].have = r == 1;
		ok = r >= 0;
	}
	umask(old);
	if (!ok) {
		close(mnt);
		free(e);
		return;
	}
	prebuilt.mnt = mnt;
	prebuilt.n = n;
	prebuilt.e = e;
}

// prebuilt_match marks the root tree's binds with what the spare prepared,
// if it prepared this tree's; else it drops that.
static void prebuilt_match(struct tree_op *ops, int nops) {
	if (prebuilt.mnt < 0)
		return;
	int k = 0, in_root = 0, match = 1;
	for (int i = 0; i < nops && match; i++) {
		if (ops[i].kind == TREE_BEGIN)
			in_root = ops[i].root;
		if (!in_root || ops[i].kind != TREE_BIND || ops[i].data_fd >= 0)
			continue;
		match = k < prebuilt.n && strcmp(ops[i].source, prebuilt.e[k].source) == 0 && strcmp(ops[i].path, prebuilt.e[k].path) == 0;
		k++;
	}
	if (!match || k != prebuilt.n) {
		shim_prebuilt_drop();
		return;
	}
	k = 0;
	in_root = 0;
	for (int i = 0; i < nops; i++) {
		if (ops[i].kind == TREE_BEGIN)
			in_root = ops[i].root;
		if (!in_root || ops[i].kind != TREE_BIND || ops[i].data_fd >= 0)
			continue;
		const struct prebuilt_entry *e = &prebuilt.e[k++];
		if (!e->have)
			continue;
		// The source by its path, links followed, as the launch would
		// open it.
		struct stat now;
		int same = stat(e->source, &now) == 0 && same_file(&e->st, &now);
		if (same)
			ops[i].prebuilt = 1;
		else
			ops[i].stale = 1;
	}
}

// prebuilt_remove takes a stale copy out of the tree at root, with the
// directories made for it that hold nothing else.
static void prebuilt_remove(int root, const struct tree_op *op) {
	char buf[PATH_MAX];
	const char *name;
	int parent = tree_parent(root, op->path, buf, sizeof buf, &name);
	if (unlinkat(parent, name, 0) != 0)
		shim_fail("shim: tree entry %s: removing the spare's copy: %s", op->path, strerror(errno));
	tree_parent_close(parent, root);
	snprintf(buf, sizeof buf, "%s", op->path);
	for (char *slash; (slash = strrchr(buf, '/')) != NULL;) {
		*slash = '\0';
		if (unlinkat(root, buf, AT_REMOVEDIR) != 0)
			break;
	}
}

// shim_trees_open clones the mount of each bind's source, as the host has
// it now: links followed (as bwrap's bind of the path would), with what is
// mounted below it; a missing one is left out (bwrap's --ro-bind-try). A
// device node is bound too, not made: its own mount keeps device access
// when bwrap remounts the tree's directory read-only (and so nodev).
static void shim_trees_open(struct tree_op *ops, int nops, long uid, long gid) {
	int devices = 0;
	// A root tree's binds by path are looked up as the task, all at once,
	// as bwrap would look them up (shim_root_open).
	int found[SHIM_MAX_TREE_OPS];
	int as_task = 0;
	for (int i = 0; i < nops; i++) {
		found[i] = -1;
		if (ops[i].kind != TREE_PATH && ops[i].kind != TREE_DEVPATH)
			continue;
		if (!as_task) {
			shim_as_task(uid, gid);
			as_task = 1;
		}
		found[i] = open(ops[i].source, O_PATH | O_CLOEXEC);
		if (found[i] < 0 && (errno != ENOENT || !ops[i].optional)) {
			int err = errno;
			shim_as_root();
			shim_fail("shim: tree entry %s: %s, as uid %ld gid %ld: %s", ops[i].path, ops[i].source, uid, gid, strerror(err));
		}
	}
	if (as_task)
		shim_as_root();
	prebuilt_match(ops, nops);
	for (int i = 0; i < nops; i++) {
		ops[i].mnt = -1;
		ops[i].copy = NULL;
		if (ops[i].prebuilt)
			continue;
		if (ops[i].kind == TREE_BEGIN)
			devices = ops[i].devices;
		if (ops[i].kind == TREE_PATH || ops[i].kind == TREE_DEVPATH) {
			if (found[i] < 0)
				continue;
			ops[i].mnt = (int)syscall(SYS_open_tree, found[i], "", OPEN_TREE_CLONE | O_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH);
			if (ops[i].mnt < 0)
				shim_fail("shim: tree entry %s: %s: %s", ops[i].path, ops[i].source, strerror(errno));
			close(found[i]);
			tree_set_flags(&ops[i], ops[i].mnt);
			continue;
		}
		if (ops[i].kind == TREE_FD) {
			ops[i].mnt = ops[i].data_fd;
			ops[i].data_fd = -1;
			tree_set_flags(&ops[i], ops[i].mnt);
			continue;
		}
		if (ops[i].kind != TREE_BIND && ops[i].kind != TREE_NODE)
			continue;
		if (ops[i].data_fd >= 0) {
			tree_data(&ops[i]);
			continue;
		}
		if (ops[i].kind == TREE_BIND && tree_copy(&ops[i]))
			continue;
		int mnt = (int)syscall(SYS_open_tree, AT_FDCWD, ops[i].source, OPEN_TREE_CLONE | O_CLOEXEC | AT_RECURSIVE);
		if (mnt < 0) {
			if (errno == ENOENT)
				continue;
			shim_fail("shim: tree entry %s: %s: %s", ops[i].path, ops[i].source, strerror(errno));
		}
		struct stat st;
		if (fstat(mnt, &st) != 0)
			shim_fail("shim: tree entry %s: %s: %s", ops[i].path, ops[i].source, strerror(errno));
		if (ops[i].kind == TREE_NODE && (!devices || (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode))))
			shim_fail("shim: tree entry %s: %s is not a device node in a tree for devices", ops[i].path, ops[i].source);
		tree_set_flags(&ops[i], mnt);
		ops[i].mnt = mnt;
	}
}

// shim_stage moves each bind source the launcher opened (descriptors
// SHIM_LAST_FD+1 to last_fd: detached copies of their mounts, open_tree
// OPEN_TREE_CLONE), but those a root tree binds itself (-tree-fd), to
// stage/<fd>, on a tmpfs private to this launch. That
// binds the very file root opened and checked, whatever its path is by now,
// and the task's UID only has to traverse stage, not every parent of the
// source.
static void shim_stage(const char *stage, long last_fd, const struct tree_op *trees, int ntrees) {
	if (mount("bwrap-r-stage", stage, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0711,size=4m") != 0)
		shim_fail("shim: staging tmpfs on %s: %s", stage, strerror(errno));
	for (long fd = SHIM_LAST_FD + 1; fd <= last_fd; fd++) {
		struct stat st;
		char dst[PATH_MAX];
		int taken = 0;
		for (int t = 0; t < ntrees; t++)
			taken |= trees[t].kind == TREE_FD && trees[t].mnt == fd;
		if (taken)
			continue;
		if (fstat((int)fd, &st) != 0)
			shim_fail("shim: bind source descriptor %ld: %s", fd, strerror(errno));
		if (snprintf(dst, sizeof dst, "%s/%ld", stage, fd) >= (int)sizeof dst)
			shim_fail("shim: -stage %s: path too long", stage);
		if (S_ISDIR(st.st_mode)) {
			if (mkdir(dst, 0700) != 0)
				shim_fail("shim: staging %s: %s", dst, strerror(errno));
		} else {
			int f = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
			if (f < 0)
				shim_fail("shim: staging %s: %s", dst, strerror(errno));
			close(f);
		}
		if (syscall(SYS_move_mount, (int)fd, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) != 0)
			shim_fail("shim: binding bind source descriptor %ld at %s: %s", fd, dst, strerror(errno));
		close((int)fd);
	}
}

// shim_trees builds each tree at stage/<name>, a directory on the staging
// tmpfs: its directories and mount points first, then its links, then its
// binds, so that nothing is ever made through a link or inside a bound host
// directory.
static void shim_trees(const char *stage, const struct tree_op *ops, int nops, long uid, long gid) {
	tree_uid = uid;
	tree_gid = gid;
	mode_t old = umask(0);
	for (int i = 0; i < nops; i++) {
		if (ops[i].kind != TREE_BEGIN)
			continue;
		const char *name = ops[i].path;
		if (name[0] == '\0' || strchr(name, '/') != NULL || name[0] == '.')
			shim_fail("shim: tree %s: want a plain name", name);
		char dir[PATH_MAX];
		if (snprintf(dir, sizeof dir, "%s/%s", stage, name) >= (int)sizeof dir)
			shim_fail("shim: tree %s: path too long", name);
		if (mkdir(dir, 0755) != 0)
			shim_fail("shim: tree %s: %s", dir, strerror(errno));
		// The spare's tmpfs, if it prepared this one (prebuilt_match).
		int spare = ops[i].root ? shim_prebuilt_fd() : -1;
		if (spare >= 0) {
			if (syscall(SYS_move_mount, spare, "", AT_FDCWD, dir, MOVE_MOUNT_F_EMPTY_PATH) != 0)
				shim_fail("shim: tree %s: the spare's tmpfs: %s", dir, strerror(errno));
			shim_prebuilt_drop();
		} else if (ops[i].root && mount("bwrap-r-sandbox", dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=16m") != 0)
			shim_fail("shim: tree %s: its tmpfs: %s", dir, strerror(errno));
		int root = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (root < 0)
			shim_fail("shim: tree %s: %s", dir, strerror(errno));
		int end = i + 1;
		while (end < nops && ops[end].kind != TREE_BEGIN)
			end++;
		// Before anything else is made in it: nothing is a link or a mount yet.
		for (int j = i + 1; j < end && spare >= 0; j++)
			if (ops[j].stale)
				prebuilt_remove(root, &ops[j]);
		for (int pass = 0; pass < 3; pass++) {
			for (int j = i + 1; j < end; j++) {
				int p = ops[j].kind == TREE_LINK ? 1 : ops[j].kind == TREE_DIR || ops[j].kind == TREE_FILE ? 0 : 2;
				if (p == pass && !ops[j].prebuilt)
					tree_entry(root, &ops[j]);
			}
		}
		// Built: the task can change nothing in it.
		struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
		if (ops[i].root && syscall(SYS_mount_setattr, root, "", AT_EMPTY_PATH, &ro, sizeof ro) != 0)
			shim_fail("shim: tree %s: read-only: %s", dir, strerror(errno));
		close(root);
	}
	umask(old);
}

// The launch's root: what bwrap sees of the host when it builds the sandbox.
// bwrap reads and parses the whole mount table for every bind and remount
// it makes, and copies it into the sandbox's mount namespace: with the
// host's table (a hundred and more mounts, a few more for every task of the
// node) that is most of a start's cost. So bwrap runs in a root of its own,
// a tmpfs holding only the host paths it binds from (-root-bind), the links
// its loader needs (-root-link), /proc, an empty /tmp (where bwrap builds
// the sandbox) and the stage.
//
// Everything of the host that goes in is cloned first, in the host's mount
// namespace (detached copies of its mounts, open_tree). The launcher then
// copies a template mount namespace (-template FD: a namespace of one tmpfs,
// made once, see shim_template) rather than the host's, mounts the root in
// it and moves into it: no step of a start copies, parses or detaches the
// host's mount table, however many tasks the node runs. (The kernel still
// looks at each mount directly below a source's own mount when it clones
// the source, for locked mounts below it: for a path on the root file
// system that is a few mounts for every task of the node, about 0.3 ms for
// a start's first clone with 1,500 of them.) Without a template
// it copies the host's namespace and detaches the host's root from it.
#define SHIM_MAX_ROOT_OPS 64

// Where the root is mounted in a copy of the template.
#define SHIM_TEMPLATE_ROOT "/r"

struct root_op {
	// path is absolute; target is a link's (NULL for a bind).
	const char *path, *target;
	// A bind's source mount, cloned in the host's namespace (-1: missing).
	int mnt;
};

// shim_as_task and shim_as_root switch the effective IDs, for the lookups
// bwrap would have made as the task.
static void shim_as_task(long uid, long gid) {
	if (setgroups(0, NULL) != 0 || setegid((gid_t)gid) != 0 || seteuid((uid_t)uid) != 0)
		shim_fail("shim: acting as uid %ld gid %ld: %s", uid, gid, strerror(errno));
}

static void shim_as_root(void) {
	if (seteuid(0) != 0 || setegid(0) != 0)
		shim_fail("shim: back to root: %s", strerror(errno));
}

// shim_root_open clones, in the host's namespace, the mount of each
// -root-bind path. Each path is looked up as the task's UID and GID, as bwrap
// would look it up: a path the task cannot reach fails the start here, and
// one that is missing is left out (bwrap then reports it, or skips it for a
// -try bind). Only then does root clone its mount, with what is mounted
// below it. A path below one bound before is there already, and skipped:
// the launcher passes paths with their links resolved, so lying below is a
// matter of names. Returns the clone of /proc (see shim_root_build).
static int shim_root_open(struct root_op *ops, int nops, long uid, long gid) {
	int found[SHIM_MAX_ROOT_OPS];
	shim_as_task(uid, gid);
	for (int i = 0; i < nops; i++) {
		found[i] = -1;
		if (ops[i].target != NULL)
			continue;
		found[i] = open(ops[i].path, O_PATH | O_CLOEXEC);
		if (found[i] < 0 && errno != ENOENT) {
			int err = errno;
			shim_as_root();
			shim_fail("shim: %s, as uid %ld gid %ld: %s", ops[i].path, uid, gid, strerror(err));
		}
	}
	shim_as_root();
	for (int i = 0; i < nops; i++) {
		ops[i].mnt = -1;
		if (found[i] < 0)
			continue;
		int covered = 0;
		for (int j = 0; j < i; j++)
			if (ops[j].mnt >= 0 && shim_under(ops[i].path, ops[j].path))
				covered = 1;
		if (!covered) {
			ops[i].mnt = (int)syscall(SYS_open_tree, found[i], "", OPEN_TREE_CLONE | O_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH);
			if (ops[i].mnt < 0)
				shim_fail("shim: root entry %s: %s", ops[i].path, strerror(errno));
			// Private, as the trees' (tree_set_flags): bwrap binds from it.
			struct mount_attr private = {.propagation = MS_PRIVATE};
			if (syscall(SYS_mount_setattr, ops[i].mnt, "", AT_EMPTY_PATH | AT_RECURSIVE, &private, sizeof private) != 0)
				shim_fail("shim: root entry %s: making it private: %s", ops[i].path, strerror(errno));
		}
		close(found[i]);
	}
	// bwrap's /proc (its own process's files, the uid map it writes): the
	// host's, without what is mounted below it. It also lets bwrap mount the
	// sandbox's proc, which the kernel allows a user namespace only where a
	// proc is fully visible already.
	int proc = (int)syscall(SYS_open_tree, AT_FDCWD, "/proc", OPEN_TREE_CLONE | O_CLOEXEC);
	if (proc < 0)
		shim_fail("shim: /proc for the launch's root: %s", strerror(errno));
	return proc;
}

// root_mkdirs makes the directory rel (and those on its way) in the root.
static void root_mkdirs(int root, const char *rel) {
	char buf[PATH_MAX];
	const char *name;
	int parent = tree_parent(root, rel, buf, sizeof buf, &name);
	tree_mkdir(parent, name, rel);
	tree_parent_close(parent, root);
}

// root_attach moves the detached mount mnt to rel in the root (attach_at).
static void root_attach(int root, const char *rel, int mnt) {
	char buf[PATH_MAX];
	const char *name;
	int parent = tree_parent(root, rel, buf, sizeof buf, &name);
	attach_at(parent, name, rel, mnt);
	tree_parent_close(parent, root);
}

// shim_root_build mounts the launch's root on dir and fills it; the stage
// then goes at dir/stage (returned in stage_at), so that after the move into
// the root it lies where bwrap's arguments name it. Nothing is made through
// a link or inside a bound host directory (tree_parent).
static void shim_root_build(const char *dir, const struct root_op *ops, int nops, int proc, const char *stage, char *stage_at, size_t len) {
	if (mount("bwrap-r-root", dir, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k") != 0)
		shim_fail("shim: the launch's root on %s: %s", dir, strerror(errno));
	int root = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (root < 0)
		shim_fail("shim: the launch's root on %s: %s", dir, strerror(errno));
	mode_t old = umask(0);
	for (int i = 0; i < nops; i++) {
		const char *rel = ops[i].path + 1;
		if (ops[i].target != NULL) {
			char buf[PATH_MAX];
			const char *name;
			int parent = tree_parent(root, rel, buf, sizeof buf, &name);
			if (symlinkat(ops[i].target, parent, name) != 0)
				shim_fail("shim: root entry %s: symlink: %s", ops[i].path, strerror(errno));
			tree_parent_close(parent, root);
		} else if (ops[i].mnt >= 0)
			root_attach(root, rel, ops[i].mnt);
	}
	root_attach(root, "proc", proc);
	root_mkdirs(root, "tmp");
	root_mkdirs(root, stage + 1);
	umask(old);
	close(root);
	if (snprintf(stage_at, len, "%s%s", strcmp(dir, "/") == 0 ? "" : dir, stage) >= (int)len)
		shim_fail("shim: -stage %s: path too long", stage);
}

// shim_pivot makes dir the root and detaches the old one, with every mount
// in it, from this namespace (a slave of the one copied: that keeps them).
static void shim_pivot(const char *dir) {
	if (chdir(dir) != 0)
		shim_fail("shim: the launch's root %s: %s", dir, strerror(errno));
	if (syscall(SYS_pivot_root, ".", ".") != 0)
		shim_fail("shim: pivot_root into %s: %s", dir, strerror(errno));
	if (umount2(".", MNT_DETACH) != 0)
		shim_fail("shim: detaching the old root: %s", strerror(errno));
	if (chdir("/") != 0)
		shim_fail("shim: chdir /: %s", strerror(errno));
}

#ifndef SHIM_PRELOAD
// shim_template (_shim -template DIR) makes the template mount namespace:
// one tmpfs, root's and closed to everyone else, holding the empty
// directory each launch mounts its root on. It says "ready" on stdout once
// there and waits for stdin to close, while the launcher opens its
// namespace (/proc/PID/ns/mnt), which then lives as long as that
// descriptor. It holds nothing of the host, so it is never stale. DIR is
// any directory, the mount point before the move.
static void shim_template(const char *dir) {
	shim_report_fd = -1;
	if (unshare(CLONE_NEWNS) != 0)
		shim_fail("template: new mount namespace: %s", strerror(errno));
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		shim_fail("template: making / private: %s", strerror(errno));
	if (mount("bwrap-r-template", dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700,size=16k") != 0)
		shim_fail("template: tmpfs on %s: %s", dir, strerror(errno));
	char r[PATH_MAX];
	if (snprintf(r, sizeof r, "%s%s", dir, SHIM_TEMPLATE_ROOT) >= (int)sizeof r || mkdir(r, 0700) != 0)
		shim_fail("template: %s: %s", r, strerror(errno));
	shim_pivot(dir);
	if (write(STDOUT_FILENO, "ready\n", 6) != 6)
		shim_fail("template: telling the launcher: %s", strerror(errno));
	char c;
	while (read(STDIN_FILENO, &c, 1) > 0)
		;
	_exit(0);
}
#endif

// shim_stdio opens /dev/null on any of descriptors 0-2 that is closed:
// otherwise the next file opened (by the shim or bwrap) would take its
// number and reach the task as its stdin, stdout or stderr.
void shim_stdio(void) {
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
			continue;
		int null = open("/dev/null", O_RDWR);
		if (null != fd)
			shim_fail("shim: /dev/null on descriptor %d: got %d (%s)", fd, null, strerror(errno));
	}
}

// shim_single_threaded reports whether this process has one thread: the
// launchers run before the Go runtime starts any, but nothing else need hold.
static int shim_single_threaded(void) {
	int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	char buf[512];
	int threads = 0;
	long n;
	while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
		for (long off = 0; off < n;) {
			// struct linux_dirent64: ino (8), off (8), reclen (2), type (1), name.
			unsigned short reclen;
			memcpy(&reclen, buf + off + 16, sizeof reclen);
			const char *name = buf + off + 19;
			if (name[0] != '.')
				threads++;
			off += reclen;
		}
	}
	close(fd);
	return n == 0 && threads == 1;
}

// shim_join_cgroups moves this process into each cgroup directory.
//
// On cgroups v1 a single-threaded process writes 0 (the calling thread) to
// the directory's tasks file: the kernel then moves it without the global
// threadgroup lock, whose write side waits for an RCU grace period whenever
// no migration ran in the last few tens of milliseconds (5 to 20 ms per start
// here, for the first controller joined). Writing a pid to cgroup.procs
// takes that lock. The thread is the whole process, and the exec that
// follows keeps only it. v2 has no tasks file: cgroup.procs, with the pid.
void shim_join_cgroups(const char *const *cgroups, int n) {
	int by_thread = n > 0 && shim_single_threaded();
	for (int c = 0; c < n; c++) {
		char path[PATH_MAX], pid[32];
		int fd = -1, len;
		if (by_thread) {
			if (snprintf(path, sizeof path, "%s/tasks", cgroups[c]) >= (int)sizeof path)
				shim_fail("cgroup path too long");
			fd = open(path, O_WRONLY | O_CLOEXEC);
			if (fd < 0 && errno != ENOENT)
				shim_fail("joining cgroup: open %s: %s", path, strerror(errno));
		}
		if (fd >= 0)
			len = snprintf(pid, sizeof pid, "0");
		else {
			if (snprintf(path, sizeof path, "%s/cgroup.procs", cgroups[c]) >= (int)sizeof path)
				shim_fail("cgroup path too long");
			fd = open(path, O_WRONLY | O_CLOEXEC);
			if (fd < 0)
				shim_fail("joining cgroup: open %s: %s", path, strerror(errno));
			len = snprintf(pid, sizeof pid, "%d", (int)getpid());
		}
		if (write(fd, pid, len) != len)
			shim_fail("joining cgroup: write %s: %s", path, strerror(errno));
		close(fd);
	}
}

void (*shim_handover)(int, char **);

// shim_trees_free clears and frees the file copies the trees were built
// with, in a spare that may hand over without an exec (preload.c): bwrap's
// processes would keep them for the task's life. An exec discards them.
static void shim_trees_free(struct tree_op *ops, int nops) {
	for (int i = 0; shim_handover != NULL && i < nops; i++) {
		if (ops[i].copy != NULL) {
			memset(ops[i].copy, 0, ops[i].copy_len);
			free(ops[i].copy);
			ops[i].copy = NULL;
		}
	}
}

void shim_main(int argc, char **argv) {
	long uid = -1, gid = -1, last_fd = SHIM_LAST_FD;
	const char *netns = NULL, *stage = NULL;
	const char *cgroups[SHIM_MAX_CGROUPS];
	int ncgroups = 0;
	struct root_op roots[SHIM_MAX_ROOT_OPS];
	int nroots = 0, template_fd = -1;
	static struct tree_op trees[SHIM_MAX_TREE_OPS];
	int ntrees = 0;
	int i = 2;

	shim_stdio();
	for (; i < argc; i++) {
		const char *flag = argv[i];
		if (strcmp(flag, "--") == 0) {
			i++;
			break;
		}
		if (i + 1 >= argc)
			shim_fail("shim: %s needs a value", flag);
		const char *val = argv[++i];
		if (strncmp(flag, "-tree", 5) == 0 || strcmp(flag, "-devtree") == 0 || strcmp(flag, "-roottree") == 0) {
			// -tree NAME, -devtree NAME, -tree-dir PATH, -tree-file PATH,
			// -tree-node SOURCE PATH, -tree-link TARGET PATH, -tree-bind SOURCE PATH,
			// -tree-data FD PATH
			if (ntrees == SHIM_MAX_TREE_OPS)
				shim_fail("shim: more than %d tree entries", SHIM_MAX_TREE_OPS);
			struct tree_op *op = &trees[ntrees];
			op->source = NULL;
			op->path = val;
			op->devices = 0;
			op->data_fd = -1;
			op->root = op->optional = op->writable = 0;
			op->size = 0;
			op->mode = 0;
			op->prebuilt = op->stale = 0;
			if (strcmp(flag, "-tree") == 0 || strcmp(flag, "-devtree") == 0 || strcmp(flag, "-roottree") == 0) {
				op->kind = TREE_BEGIN;
				op->root = flag[1] == 'r';
				op->devices = flag[1] != 't';
			} else if (strcmp(flag, "-tree-tmpfs") == 0) {
				op->kind = TREE_TMPFS;
				if (i + 2 >= argc)
					shim_fail("shim: %s needs a size, a mode and a path", flag);
				char *end = NULL;
				errno = 0;
				op->size = strtoll(val, &end, 10);
				if (errno != 0 || end == val || *end != '\0' || op->size < 0)
					shim_fail("shim: %s %s: not a size", flag, val);
				const char *mode = argv[++i];
				long m = strtol(mode, &end, 8);
				if (end == mode || *end != '\0' || m < 0 || m > 07777)
					shim_fail("shim: %s %s: not a mode", flag, mode);
				op->mode = (mode_t)m;
				op->path = argv[++i];
			} else if (strcmp(flag, "-tree-dir") == 0)
				op->kind = TREE_DIR;
			else if (strcmp(flag, "-tree-file") == 0)
				op->kind = TREE_FILE;
			else {
				if (strcmp(flag, "-tree-node") == 0)
					op->kind = TREE_NODE;
				else if (strcmp(flag, "-tree-link") == 0)
					op->kind = TREE_LINK;
				else if (strcmp(flag, "-tree-bind") == 0 || strcmp(flag, "-tree-data") == 0)
					op->kind = TREE_BIND;
				else if (strcmp(flag, "-tree-path") == 0 || strcmp(flag, "-tree-path-try") == 0)
					op->kind = TREE_PATH;
				else if (strcmp(flag, "-tree-devpath") == 0 || strcmp(flag, "-tree-devpath-try") == 0)
					op->kind = TREE_DEVPATH;
				else if (strcmp(flag, "-tree-fd") == 0 || strcmp(flag, "-tree-fd-rw") == 0)
					op->kind = TREE_FD;
				else
					shim_fail("shim: unknown flag %s", flag);
				op->optional = strcmp(flag + strlen(flag) - 4, "-try") == 0;
				op->writable = strcmp(flag, "-tree-fd-rw") == 0;
				if (i + 1 >= argc)
					shim_fail("shim: %s needs a source and a path", flag);
				op->source = val;
				op->path = argv[++i];
				if (strcmp(flag, "-tree-data") == 0 || op->kind == TREE_FD) {
					long fd = shim_id(flag, val);
					if (fd <= SHIM_LAST_FD || fd > 65535 || fcntl((int)fd, F_GETFD) < 0)
						shim_fail("shim: %s %s: want an open descriptor above %d", flag, val, SHIM_LAST_FD);
					op->data_fd = (int)fd;
					op->source = op->kind == TREE_FD ? "its descriptor" : "its data";
				} else if (op->kind != TREE_LINK && op->source[0] != '/')
					shim_fail("shim: %s %s: not an absolute path", flag, op->source);
			}
			ntrees++;
			continue;
		}
		if (strcmp(flag, "-uid") == 0)
			uid = shim_id(flag, val);
		else if (strcmp(flag, "-gid") == 0)
			gid = shim_id(flag, val);
		else if (strcmp(flag, "-netns") == 0)
			netns = val;
		else if (strcmp(flag, "-fds") == 0) {
			last_fd = shim_id(flag, val);
			if (last_fd < SHIM_LAST_FD || last_fd > 65535)
				shim_fail("shim: -fds %s: want %d to 65535", val, SHIM_LAST_FD);
		}
		else if (strcmp(flag, "-template") == 0) {
			long fd = shim_id(flag, val);
			if (fd <= SHIM_LAST_FD || fd > 65535 || fcntl((int)fd, F_GETFD) < 0)
				shim_fail("shim: -template %s: want an open descriptor above %d", val, SHIM_LAST_FD);
			template_fd = (int)fd;
		} else if (strcmp(flag, "-root-bind") == 0 || strcmp(flag, "-root-link") == 0) {
			if (nroots == SHIM_MAX_ROOT_OPS)
				shim_fail("shim: more than %d root entries", SHIM_MAX_ROOT_OPS);
			struct root_op *op = &roots[nroots++];
			op->target = NULL;
			op->path = val;
			if (flag[6] == 'l') {
				if (i + 1 >= argc)
					shim_fail("shim: %s needs a target and a path", flag);
				op->target = val;
				op->path = argv[++i];
			}
			if (op->path[0] != '/')
				shim_fail("shim: %s %s: not an absolute path", flag, op->path);
		} else if (strcmp(flag, "-stage") == 0)
			stage = val;
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
	shim_join_cgroups(cgroups, ncgroups);
	if (netns != NULL) {
		int fd = open(netns, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			shim_fail("shim: network namespace %s: %s", netns, strerror(errno));
		if (setns(fd, CLONE_NEWNET) != 0)
			shim_fail("shim: joining network namespace %s: %s", netns, strerror(errno));
		close(fd);
	}
	if (last_fd != SHIM_LAST_FD && stage == NULL)
		shim_fail("shim: -fds needs -stage");
	if (ntrees > 0 && (stage == NULL || trees[0].kind != TREE_BEGIN))
		shim_fail("shim: tree entries need -stage and a -tree or -devtree first");
	if (nroots > 0 && stage == NULL)
		shim_fail("shim: root entries need -stage");
	if (template_fd >= 0 && (stage == NULL || template_fd <= last_fd))
		shim_fail("shim: -template needs -stage, and a descriptor after the bind sources");
	// A data descriptor is none of the others: staging would bind it, or
	// the namespace would be read as a file.
	// A root tree's bind source is one of the bind sources, taken once.
	int in_root = 0;
	for (int t = 0; t < ntrees; t++) {
		const struct tree_op *op = &trees[t];
		if (op->kind == TREE_BEGIN)
			in_root = op->root;
		if ((op->kind == TREE_PATH || op->kind == TREE_DEVPATH || op->kind == TREE_FD || op->kind == TREE_TMPFS) && !in_root)
			shim_fail("shim: tree entry %s: only a -roottree has it", op->path);
		if (op->kind == TREE_BEGIN && op->root && t != 0)
			shim_fail("shim: -roottree %s: it comes first", op->path);
		if (op->kind == TREE_FD) {
			if (op->data_fd > last_fd)
				shim_fail("shim: -tree-fd %d: want one of the bind sources (%d to %ld)", op->data_fd, SHIM_LAST_FD + 1, last_fd);
			for (int u = 0; u < t; u++)
				if (trees[u].kind == TREE_FD && trees[u].data_fd == op->data_fd)
					shim_fail("shim: -tree-fd %d: taken twice", op->data_fd);
			continue;
		}
		if (op->data_fd >= 0 && (op->data_fd <= last_fd || op->data_fd == template_fd))
			shim_fail("shim: -tree-data %d: want a descriptor after the bind sources and the template", op->data_fd);
	}
	if (stage != NULL) {
		char dir[PATH_MAX], staged[PATH_MAX];
		if (stage[0] != '/' || realpath(stage, dir) == NULL || strcmp(dir, "/") == 0)
			shim_fail("shim: -stage %s: want an absolute path of a directory (not /)", stage);
		// What comes from the host, while in its namespace.
		int proc = shim_root_open(roots, nroots, uid, gid);
		shim_trees_open(trees, ntrees, uid, gid);
		shim_private_mounts(template_fd);
		if (template_fd >= 0) {
			close(template_fd);
			snprintf(dir, sizeof dir, "%s", SHIM_TEMPLATE_ROOT);
		}
		shim_root_build(dir, roots, nroots, proc, stage, staged, sizeof staged);
		shim_stage(staged, last_fd, trees, ntrees);
		if (ntrees > 0) {
			shim_trees(staged, trees, ntrees, uid, gid);
			shim_trees_free(trees, ntrees);
		}
		shim_pivot(dir);
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

	// A task's file modes do not depend on the umask the agent was started
	// with (a hardened 077 would leave the files one task of an allocation
	// writes to /alloc unreadable to the next).
	umask(022);
	// The failure report's descriptor closes with the exec: the launcher
	// reads it to its end, and bwrap must not hand it on.
	if (fcntl(SHIM_INFO_FD, F_GETFD) >= 0 && fcntl(SHIM_INFO_FD, F_SETFD, FD_CLOEXEC) != 0)
		shim_fail("shim: descriptor %d: %s", SHIM_INFO_FD, strerror(errno));
	// In a spare that runs bwrap already, bwrap's main, unless an exec
	// would start something else (preload.c).
	if (shim_handover != NULL)
		shim_handover(argc - i, &argv[i]);
	char *empty_env[] = {NULL};
	execve(argv[i], &argv[i], empty_env);
	shim_fail("shim: exec %s: %s", argv[i], strerror(errno));
}

#ifndef SHIM_PRELOAD
// glibc passes argc, argv and envp to constructors.
__attribute__((constructor)) static void bwrap_r_shim(int argc, char **argv, char **envp) {
	(void)envp;
	if (argc == 4 && strcmp(argv[1], "_shim") == 0 && strcmp(argv[2], "-template") == 0)
		shim_template(argv[3]);
	if (argc >= 3 && (argc - 3) % 2 == 0 && strcmp(argv[1], "_shim") == 0 && strcmp(argv[2], "-request") == 0)
		shim_request(argv[0], (argc - 3) / 2, argv + 3);
	if (argc > 1 && strcmp(argv[1], "_shim") == 0)
		shim_main(argc, argv);
}
#endif
