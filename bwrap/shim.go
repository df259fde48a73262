package bwrap

// The launcher shim is shim.c: a constructor that runs before the Go runtime
// in any binary linking this package, so the package needs cgo.

// #cgo CFLAGS: -O2 -Wall
// #include "shim.h"
import "C"

// The shim and the launcher must agree on the descriptors: an array of
// negative length does not compile, so these hold only when they are equal.
var (
	_ [infoFD - C.SHIM_INFO_FD]struct{}
	_ [C.SHIM_INFO_FD - infoFD]struct{}
	_ [lastFD - C.SHIM_LAST_FD]struct{}
	_ [C.SHIM_LAST_FD - lastFD]struct{}
	_ [enterEnvFD - C.ENTER_ENV_FD]struct{}
	_ [C.ENTER_ENV_FD - enterEnvFD]struct{}
	_ [enterSeccompFD - C.ENTER_SECCOMP_FD]struct{}
	_ [C.ENTER_SECCOMP_FD - enterSeccompFD]struct{}
	_ [enterConsoleFD - C.ENTER_CONSOLE_FD]struct{}
	_ [C.ENTER_CONSOLE_FD - enterConsoleFD]struct{}
	_ [maxRequestFDs - C.SHIM_REQUEST_MAX_FDS]struct{}
	_ [C.SHIM_REQUEST_MAX_FDS - maxRequestFDs]struct{}
	_ [maxRequestArgs - C.SHIM_REQUEST_MAX_ARGS_BYTES]struct{}
	_ [C.SHIM_REQUEST_MAX_ARGS_BYTES - maxRequestArgs]struct{}
	_ [preloadFD - C.SHIM_PRELOAD_FD]struct{}
	_ [C.SHIM_PRELOAD_FD - preloadFD]struct{}
	_ [infoFD - C.SHIM_REQUEST_FD]struct{}
	_ [C.SHIM_REQUEST_FD - infoFD]struct{}
)

// ShimCommand is the hidden subcommand that runs the launcher shim (shim.c).
// It never reaches Go's main: the shim execs bwrap or exits.
const ShimCommand = "_shim"
