package bwrap

import (
	"os"
	"strings"
	"testing"
)

// Each probe tries something a task must not do; the script exits 0 only
// when the attempt failed. A probe that succeeds is a sandbox bug.
func TestEscapeProbes(t *testing.T) {
	hostPid := os.Getpid()
	probes := []struct{ name, script string }{
		{"read /etc/shadow", `! cat /etc/shadow 2>/dev/null && [ ! -e /etc/shadow ]`},
		{"write under /usr", `! touch /usr/bwrap-r-probe 2>/dev/null`},
		{"write /etc", `! touch /etc/bwrap-r-probe 2>/dev/null`},
		{"write /", `! touch /bwrap-r-probe 2>/dev/null`},
		{"write /proc/sys", `! sh -c 'echo 1 > /proc/sys/kernel/sysrq' 2>/dev/null`},
		{"write /dev", `! mkdir /dev/x 2>/dev/null && echo x > /dev/shm/ok`},
		{"see host processes", `[ "$(ls -d /proc/[0-9]* | wc -l)" -le 4 ] && [ ! -e /proc/` + itoa(hostPid) + `/cmdline ] || [ "$(cat /proc/` + itoa(hostPid) + `/cmdline 2>/dev/null | tr '\0' ' ')" != "` + strings.Join(os.Args, " ") + ` " ]`},
		{"host root, home, var, run", `for d in /root /home /var /run /opt /srv /mnt /media /boot; do [ -e $d ] && exit 1; done; exit 0`},
		{"agent environment", `[ -z "$BWRAP_R_TEST_SECRET" ]`},
		{"capabilities", `grep -q '^CapEff:[[:space:]]*0000000000000000$' /proc/self/status && grep -q '^CapBnd:[[:space:]]*0000000000000000$' /proc/self/status`},
		{"no new privileges or setuid", `[ ! -u /usr/bin/su ] || ! /usr/bin/su -c true root </dev/null 2>/dev/null`},
		{"mount", `! mount -t tmpfs none /tmp 2>/dev/null`},
		{"device nodes", `[ ! -e /dev/mem ] && [ ! -e /dev/kmsg ] && [ ! -e /dev/sda ] && [ ! -e /dev/vda ]`},
		{"write /tmp, /local ok", `echo x > /tmp/ok && echo x > /local/ok`},
		// The seccomp filter: each call must fail with EPERM (ENOSYS for clone3,
		// EAFNOSUPPORT for a socket family outside its list).
		{"new user namespace (unshare)", `! unshare -U true 2>/dev/null && ` + perlSyscall(272, "0x10000000", "EPERM")},
		{"new user namespace (clone)", perlSyscall(56, "0x10000011", "EPERM")},
		{"clone3", perlSyscall(435, "0, 0", "ENOSYS")},
		{"keyctl", perlSyscall(250, "0, 0", "EPERM")},
		{"add_key", perlSyscall(248, "0, 0, 0, 0, 0", "EPERM")},
		{"bpf", perlSyscall(321, "0, 0, 0", "EPERM")},
		{"kexec_load", perlSyscall(246, "0, 0, 0, 0", "EPERM")},
		{"ptrace attach", perlSyscall(101, "16, 1, 0, 0", "EPERM")},
		{"personality ADDR_NO_RANDOMIZE", perlSyscall(135, "0x0040000", "EPERM")},
		{"perf_event_open", perlSyscall(298, "0, 0, -1, -1, 0", "EPERM")},
		{"io_uring_setup", perlSyscall(425, "1, 0", "EPERM")},
		{"io_uring_register", perlSyscall(427, "0, 0, 0, 0", "EPERM")},
		{"userfaultfd", perlSyscall(323, "0", "EPERM")},
		{"init_module", perlSyscall(175, "0, 0, 0", "EPERM")},
		{"raw socket", perlSyscall(41, "2, 3, 1", "EPERM")},
		{"packet socket", perlSyscall(41, "17, 3, 0", "EAFNOSUPPORT")},
		{"ordinary calls still work", perlSyscall(39, "", "") + ` && ` + perlSyscall(135, "0xffffffff", "")},
		{"tmp is size-limited", `! dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>/dev/null`},
	}
	t.Setenv("BWRAP_R_TEST_SECRET", "leaked")
	for _, p := range probes {
		st, out := run(t, p.script)
		if st.Err != nil || st.Code != 0 {
			t.Errorf("probe %q: not blocked (status %+v, output %q)", p.name, st, out)
		}
	}
}

// perlSyscall is a shell test that calls syscall nr with args and checks the
// errno (an empty errno wants success).
func perlSyscall(nr int, args, errno string) string {
	call := "syscall(" + itoa(nr)
	if args != "" {
		call += ", " + args
	}
	call += ")"
	if errno == "" {
		return `perl -e 'exit(` + call + ` == -1 ? 1 : 0)'`
	}
	return `perl -e 'my $r = ` + call + `; exit($r == -1 && $!{` + errno + `} ? 0 : 1)'`
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	if n == 0 {
		return "0"
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
