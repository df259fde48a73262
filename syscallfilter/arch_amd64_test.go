package syscallfilter

import (
	"syscall"

	"golang.org/x/sys/unix"
)

var archRefusedOutright = byErrno(map[syscall.Errno][]uintptr{
	unix.EPERM: {unix.SYS_IOPL, unix.SYS_IOPERM, unix.SYS_MODIFY_LDT, unix.SYS_USELIB},
})

// foreignArch is i386, reached from x86_64 through int 0x80.
const foreignArch = unix.AUDIT_ARCH_I386

// x32 calls carry the native arch and bit 0x40000000 in the number.
const x32 = 0x40000000

var abiCases = []struct {
	name     string
	arch, nr uint32
	want     uint32
}{
	{"x32 getpid", nativeArch, x32 | unix.SYS_GETPID, errnoVerdict(unix.EPERM)},
	{"x32 socket", nativeArch, x32 | unix.SYS_SOCKET, errnoVerdict(unix.EPERM)},
	{"x32 unshare", nativeArch, x32 | unix.SYS_UNSHARE, errnoVerdict(unix.EPERM)},
	{"x32 ioctl", nativeArch, x32 | unix.SYS_IOCTL, errnoVerdict(unix.EPERM)},
	{"x32 pidfd_getfd", nativeArch, x32 | unix.SYS_PIDFD_GETFD, errnoVerdict(unix.EPERM)},
	{"x32 ioctl (x32 number 514)", nativeArch, x32 | 514, errnoVerdict(unix.EPERM)},
	{"x32 ptrace (x32 number 521)", nativeArch, x32 | 521, errnoVerdict(unix.EPERM)},
	{"number -1", nativeArch, 0xffffffff, errnoVerdict(unix.EPERM)},
	{"aarch64 arch", unix.AUDIT_ARCH_AARCH64, unix.SYS_GETPID, errnoVerdict(unix.EPERM)},
}

var archProbes = []probe{
	// The kernel has no x32 here (ENOSYS) or runs getpid.
	{"x32 getpid", sys(x32 | unix.SYS_GETPID), unix.EPERM, true},
	{"modify_ldt(read, 0 bytes)", sys(unix.SYS_MODIFY_LDT, 0, 0, 0), unix.EPERM, true},
	{"iopl(0)", sys(unix.SYS_IOPL, 0), unix.EPERM, false},
}
