// A launcher started ahead of its sandbox (_shim -request): launch.go keeps
// one spare, so that a start does not wait for a fork and exec of the plugin's
// binary (on these VMs glibc's start-up alone costs half a millisecond). It
// does nothing until its request comes, on the socket at descriptor 3 of
// which only the plugin holds the other end:
//
//   one message: int32 n, int32 target[n] (ascending, 0 to 65535), with
//   n+1 descriptors (SCM_RIGHTS): one for each target, then a memory file
//   holding the shim's argv after "_shim", NUL-separated.
//
// It places each descriptor at its target, closes every other one, and runs
// the shim with that argv, exactly as if it had been exec'd so (shim.c).
// End of file on the socket (the plugin let the spare go, or died) ends it
// at once, having done nothing.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim.h"

char *shim_request_buf;

// request_fail reports a failure of the request: on its report descriptor
// (the one bound for 3) once the request has named it, else only on stderr
// (the /dev/null the spare was started with), and ends the launcher.
static void request_fail(const char *what) {
	shim_fail("launcher request: %s: %s", what, strerror(errno));
}

// request_close_above closes every descriptor from first up but the spare's
// prepared root (shim_prebuilt_fd).
static void request_close_above(int first) {
	int keep = shim_prebuilt_fd();
	int ok = keep < first ? syscall(SYS_close_range, first, ~0U, 0) == 0
	                      : (keep == first || syscall(SYS_close_range, first, keep - 1, 0) == 0) &&
	                            syscall(SYS_close_range, keep + 1, ~0U, 0) == 0;
	if (!ok)
		request_fail("close_range");
}

// request_place moves each descriptor fds[k] to targets[k] and closes every
// other descriptor, the socket included, but the spare's prepared root.
static void request_place(const int *fds, const int32_t *targets, int n, int sock) {
	// A target on the prepared root's number: it goes (the request is
	// built as without it).
	for (int k = 0; k < n; k++)
		if (targets[k] == shim_prebuilt_fd())
			shim_prebuilt_drop();
	// The kernel gives received descriptors the lowest free numbers, in
	// order, and the spare waits with none below its socket's open: a
	// request whose targets run 0, 1, 2... without a gap arrives placed.
	int placed = 1;
	for (int k = 0; k < n; k++)
		placed &= fds[k] == targets[k];
	if (placed) {
		close(sock);
		request_close_above(targets[n - 1] + 1);
		return;
	}
	for (int k = 0; k < n; k++)
		if (targets[k] == shim_stderr_fd)
			shim_stderr_fd = -1;
	int top = targets[n - 1];
	// First above every target and every received descriptor, so that no
	// dup2 below closes one still to be placed.
	for (int k = 0; k < n; k++)
		if (fds[k] > top)
			top = fds[k];
	int high[SHIM_REQUEST_MAX_FDS];
	for (int k = 0; k < n; k++) {
		high[k] = fcntl(fds[k], F_DUPFD_CLOEXEC, top + 1);
		if (high[k] < 0)
			request_fail("moving a descriptor");
		if (shim_report_fd == fds[k])
			shim_report_fd = high[k];
		close(fds[k]);
	}
	for (int k = 0; k < n; k++) {
		if (dup2(high[k], targets[k]) != targets[k])
			request_fail("placing a descriptor");
		if (shim_report_fd == high[k])
			shim_report_fd = targets[k];
	}
	// Everything else goes: the socket, what the spare was started with,
	// the copies above.
	int k = 0;
	for (int fd = 0; fd <= targets[n - 1]; fd++) {
		if (k < n && targets[k] == fd) {
			k++;
			continue;
		}
		if (fd != shim_prebuilt_fd())
			close(fd);
	}
	request_close_above(targets[n - 1] + 1);
}

// request_args reads the argv memory file into a NULL-terminated vector
// that starts with argv0 and "_shim".
static char **request_args(int fd, char *argv0, int *argc) {
	struct stat st;
	if (fstat(fd, &st) != 0)
		request_fail("the argv file");
	if (st.st_size <= 0 || st.st_size > SHIM_REQUEST_MAX_ARGS_BYTES) {
		errno = EINVAL;
		request_fail("the argv file's size");
	}
	size_t size = (size_t)st.st_size;
	char *buf = malloc(size + 1);
	if (buf == NULL)
		request_fail("malloc");
	for (size_t got = 0; got < size;) {
		ssize_t r = pread(fd, buf + got, size - got, (off_t)got);
		if (r <= 0) {
			if (r == 0)
				errno = EIO;
			request_fail("reading the argv file");
		}
		got += (size_t)r;
	}
	close(fd);
	shim_request_buf = buf;
	// Every argument ends with a NUL, the last one too.
	if (buf[size - 1] != '\0') {
		errno = EINVAL;
		request_fail("the argv file is not NUL-terminated");
	}
	int n = 0;
	for (size_t i = 0; i < size; i++)
		if (buf[i] == '\0')
			n++;
	char **argv = calloc((size_t)n + 3, sizeof *argv);
	if (argv == NULL)
		request_fail("calloc");
	argv[0] = argv0;
	argv[1] = "_shim";
	char *p = buf;
	for (int a = 0; a < n; a++) {
		argv[2 + a] = p;
		p += strlen(p) + 1;
	}
	*argc = n + 2;
	return argv;
}

void shim_request(char *argv0, int npairs, char **pairs) {
	// No report descriptor until the request names one.
	shim_report_fd = -1;
	// Nothing below the socket stays open (stdio is the spare's /dev/null,
	// and nothing is reported before the request): what the request sends
	// then lands on the lowest numbers (request_place).
	int sock = fcntl(SHIM_REQUEST_FD, F_DUPFD_CLOEXEC, SHIM_REQUEST_SOCKET_FD);
	if (sock < 0)
		request_fail("moving the socket");
	shim_stderr_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, sock + 1);
	for (int fd = 0; fd <= SHIM_REQUEST_FD; fd++)
		close(fd);
	// The root tree's tmpfs of the next launch, while nothing waits for it;
	// kept above the socket, so that the request's descriptors still land
	// on the lowest numbers.
	shim_prebuild(npairs, pairs);
	if (shim_prebuilt_fd() >= 0) {
		int high = fcntl(shim_prebuilt_fd(), F_DUPFD_CLOEXEC, sock + 2);
		shim_prebuilt_drop();
		if (high >= 0)
			shim_prebuilt_set(high);
	}
	// A request's bytes: n, then n targets.
	int32_t header[1 + SHIM_REQUEST_MAX_FDS + 1];
	union {
		char buf[CMSG_SPACE(sizeof(int) * (SHIM_REQUEST_MAX_FDS + 1))];
		struct cmsghdr align;
	} control;
	struct iovec iov = {.iov_base = header, .iov_len = sizeof header};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
	ssize_t got;
	do
		got = recvmsg(sock, &msg, 0);
	while (got < 0 && errno == EINTR);
	if (got == 0)
		_exit(0);
	if (got < 0)
		request_fail("recvmsg");
	int fds[SHIM_REQUEST_MAX_FDS + 1];
	int nfds = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		if (nfds + k > SHIM_REQUEST_MAX_FDS + 1) {
			errno = EMSGSIZE;
			request_fail("too many descriptors");
		}
		memcpy(fds + nfds, CMSG_DATA(c), k * sizeof(int));
		nfds += (int)k;
	}
	errno = EPROTO;
	if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
		request_fail("truncated");
	if (got < (ssize_t)sizeof(int32_t) || header[0] < 1 || header[0] > SHIM_REQUEST_MAX_FDS ||
	    got != (ssize_t)(sizeof(int32_t) * (1 + (size_t)header[0])) || nfds != header[0] + 1)
		request_fail("malformed");
	int n = header[0];
	const int32_t *targets = header + 1;
	for (int k = 0; k < n; k++)
		if (targets[k] < 0 || targets[k] > 65535 || (k > 0 && targets[k] <= targets[k - 1]))
			request_fail("descriptor targets out of order");
	for (int k = 0; k < n; k++)
		if (targets[k] == SHIM_INFO_FD)
			shim_report_fd = fds[k];
	// The argv file (sent last) first, while the numbers are still known;
	// it is read before placing moves anything onto its number.
	int argc;
	char **argv = request_args(fds[n], argv0, &argc);
	request_place(fds, targets, n, sock);
	// Placed: stderr is the task's, as for a launcher exec'd so.
	shim_stderr_fd = STDERR_FILENO;
	shim_main(argc, argv);
}
