package logcollect

// closefds.c closes what the collector inherited before the runtime starts.

// #cgo CFLAGS: -O2 -Wall
import "C"
