package syscallfilter

import "golang.org/x/sys/unix"

// nativeArch is seccomp_data.arch of this build's ABI; AArch32 calls come
// with another and are refused.
const nativeArch = unix.AUDIT_ARCH_AARCH64

// abiBit: arm64 has no second ABI on the native arch.
const abiBit = 0

var archRefusals []refusal
