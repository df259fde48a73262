package syscallfilter

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// seccompSetFilter is seccomp(SECCOMP_SET_MODE_FILTER, TSYNC): all threads.
func seccompSetFilter(prog *unix.SockFprog) error {
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(prog)))
	if errno != 0 {
		return errno
	}
	return nil
}
