package syscallfilter

import (
	"syscall"

	"golang.org/x/sys/unix"
)

var archRefusedOutright = map[uintptr]syscall.Errno{}

// foreignArch is AArch32.
const foreignArch = unix.AUDIT_ARCH_ARM

var abiCases = []struct {
	name     string
	arch, nr uint32
	want     uint32
}{
	{"number -1", nativeArch, 0xffffffff, errnoVerdict(unix.ENOSYS)},
}

var archProbes []probe
