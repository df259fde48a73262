package syscallfilter

import "golang.org/x/sys/unix"

// nativeArch is seccomp_data.arch of this build's ABI.
const nativeArch = unix.AUDIT_ARCH_X86_64

// abiBit marks x32 calls: the native arch, with this bit in the number
// (__X32_SYSCALL_BIT). They are refused whether or not the kernel has x32.
const abiBit = 0x40000000

// archRefusals are x86's own: port I/O, the LDT (16-bit code, a history of
// leaks; flatpak refuses it too), and the obsolete uselib.
var archRefusals = []refusal{
	{unix.EPERM, []uintptr{unix.SYS_IOPL, unix.SYS_IOPERM, unix.SYS_MODIFY_LDT, unix.SYS_USELIB}},
}
