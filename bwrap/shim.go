package bwrap

// The launcher shim is shim.c: a constructor that runs before the Go runtime
// in any binary linking this package, so the package needs cgo.

// #cgo CFLAGS: -O2 -Wall
import "C"

// ShimCommand is the hidden subcommand that runs the launcher shim (shim.c).
// It never reaches Go's main: the shim execs bwrap or exits.
const ShimCommand = "_shim"
