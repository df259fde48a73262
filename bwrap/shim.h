// Descriptors the launcher (launch.go) hands to the shim: bwrap's info
// descriptor, and the highest one the shim keeps for bwrap. shim.go checks
// at compile time that launch.go agrees.
#define SHIM_INFO_FD 3
#define SHIM_LAST_FD 6

// A spare launcher (request.c) waits for its request on this descriptor; a
// request carries at most this many descriptors for the shim (one more, its
// argv, and the kernel's limit of 253 a message is kept).
#define SHIM_REQUEST_FD 3
// Where the spare moves that socket while it waits: above what a request
// usually sends, below any descriptor limit in use.
#define SHIM_REQUEST_SOCKET_FD 128
#define SHIM_REQUEST_MAX_FDS 240
// And at most this many bytes of argv (above the kernel's own bound on an
// exec's, 2 MiB with the usual 8 MiB stack limit).
#define SHIM_REQUEST_MAX_ARGS_BYTES (4 << 20)
// A spare started as bwrap with the launcher preloaded (preload.c) has the
// object's memory file here, above the request socket's number.
#define SHIM_PRELOAD_FD 4

// Descriptors enter.go hands to the enter launcher (enter.c): the task's
// environment (NUL-separated KEY=VALUE entries) and the compiled seccomp
// filter (struct sock_filter entries); with -tty, the unix socket the
// launcher sends the master of the command's terminal on.
#define ENTER_ENV_FD 3
#define ENTER_SECCOMP_FD 4
#define ENTER_CONSOLE_FD 5

// Shared by shim.c and enter.c.
extern int shim_report_fd;
extern int shim_stderr_fd;
int shim_fsmount(const char *type, const char *const (*opts)[2], size_t n, unsigned attrs, const char *what);
extern int shim_fail_status;
void shim_fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
long shim_id(const char *flag, const char *s);
void shim_stdio(void);
void shim_join_cgroups(const char *const *cgroups, int n);
// In a spare that bwrap runs with the launcher preloaded (preload.c): what
// the shim calls where it would exec bwrap's argv (argc, argv). It runs
// bwrap's main in place of the exec and never returns, or returns having
// done nothing when an exec would start something else. NULL otherwise.
extern void (*shim_handover)(int, char **);
// The request's argv buffer (request.c), for the handover to clear the
// shim's part of it; NULL for a launcher exec'd with its argv.
extern char *shim_request_buf;
// The launcher shim with argv as exec'd ("_shim" in argv[1]); it execs bwrap
// or fails.
void shim_main(int argc, char **argv) __attribute__((noreturn));
// A spare launcher; pairs are its n SOURCE PATH pairs to prepare
// (shim_prebuild).
void shim_request(char *argv0, int n, char **pairs) __attribute__((noreturn));
// The spare's preparation of a root tree's tmpfs (shim.c): its descriptor
// (-1: none), and letting it go.
void shim_prebuild(int n, char **pairs);
int shim_prebuilt_fd(void);
void shim_prebuilt_set(int fd);
void shim_prebuilt_drop(void);
