package syscallfilter

import (
	"encoding/binary"
	"fmt"
	"maps"
	"syscall"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The program Program returns, run on synthetic seccomp_data in
// golang.org/x/net/bpf's interpreter: the exact verdict for every system
// call, and for each argument rule with and without high bits set in the
// 64-bit argument words.

const allowed = unix.SECCOMP_RET_ALLOW

func errnoVerdict(e syscall.Errno) uint32 { return unix.SECCOMP_RET_ERRNO | uint32(e) }

func verdictName(v uint32) string {
	if v == allowed {
		return "allow"
	}
	if v&unix.SECCOMP_RET_ACTION_FULL == unix.SECCOMP_RET_ERRNO {
		return "errno " + unix.ErrnoName(syscall.Errno(v&unix.SECCOMP_RET_DATA))
	}
	return fmt.Sprintf("%#x", v)
}

// programVM decodes Program's bytes, the ones bwrap and the launcher load.
func programVM(t *testing.T) *bpf.VM {
	t.Helper()
	b, err := Program()
	if err != nil {
		t.Fatal(err)
	}
	if len(b)%8 != 0 {
		t.Fatalf("program is %d bytes, not whole sock_filter entries", len(b))
	}
	raw := make([]bpf.RawInstruction, len(b)/8)
	for i := range raw {
		e := b[8*i:]
		raw[i] = bpf.RawInstruction{
			Op: binary.LittleEndian.Uint16(e), Jt: e[2], Jf: e[3], K: binary.LittleEndian.Uint32(e[4:]),
		}
	}
	insts, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("program has instructions the interpreter does not know")
	}
	for i, in := range insts {
		// seccomp allows only aligned 32-bit loads from seccomp_data.
		if l, ok := in.(bpf.LoadAbsolute); ok && (l.Size != 4 || l.Off%4 != 0 || l.Off >= 64) {
			t.Fatalf("instruction %d: %v is not a load seccomp accepts", i, in)
		}
	}
	vm, err := bpf.NewVM(insts)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

// seccompData lays out struct seccomp_data for the interpreter. The kernel
// loads native-endian words; the interpreter reads every word big-endian,
// so each 32-bit word goes in big-endian at the offset where a
// little-endian kernel finds it (an argument's low word first).
func seccompData(arch, nr uint32, args [6]uint64) []byte {
	d := make([]byte, 64)
	binary.BigEndian.PutUint32(d[0:], nr)
	binary.BigEndian.PutUint32(d[4:], arch)
	for i, a := range args {
		binary.BigEndian.PutUint32(d[16+8*i:], uint32(a))
		binary.BigEndian.PutUint32(d[20+8*i:], uint32(a>>32))
	}
	return d
}

func run(t *testing.T, vm *bpf.VM, arch, nr uint32, args [6]uint64) uint32 {
	t.Helper()
	v, err := vm.Run(seccompData(arch, nr, args))
	if err != nil {
		t.Fatal(err)
	}
	return uint32(v)
}

// refusedOutright is every call refused whatever its arguments, with its
// errno: the spec the tables in filter.go must meet.
var refusedOutright = byErrno(map[syscall.Errno][]uintptr{
	unix.EPERM: {
		unix.SYS_UNSHARE, unix.SYS_SETNS,
		unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT, unix.SYS_CHROOT,
		unix.SYS_OPEN_TREE, unix.SYS_OPEN_TREE_ATTR, unix.SYS_MOVE_MOUNT, unix.SYS_FSOPEN, unix.SYS_FSCONFIG,
		unix.SYS_FSMOUNT, unix.SYS_FSPICK, unix.SYS_MOUNT_SETATTR,
		unix.SYS_KEXEC_LOAD, unix.SYS_KEXEC_FILE_LOAD, unix.SYS_INIT_MODULE, unix.SYS_FINIT_MODULE, unix.SYS_DELETE_MODULE,
		unix.SYS_REBOOT, unix.SYS_SWAPON, unix.SYS_SWAPOFF, unix.SYS_ACCT, unix.SYS_SYSLOG,
		unix.SYS_QUOTACTL, unix.SYS_QUOTACTL_FD, unix.SYS_LOOKUP_DCOOKIE,
		unix.SYS_SETTIMEOFDAY, unix.SYS_CLOCK_SETTIME, unix.SYS_CLOCK_ADJTIME, unix.SYS_ADJTIMEX,
		unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN, unix.SYS_USERFAULTFD,
		unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER,
		unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY,
		unix.SYS_PTRACE, unix.SYS_PROCESS_VM_READV, unix.SYS_PROCESS_VM_WRITEV, unix.SYS_KCMP,
		unix.SYS_PIDFD_GETFD, unix.SYS_PROCESS_MADVISE,
		unix.SYS_NAME_TO_HANDLE_AT, unix.SYS_OPEN_BY_HANDLE_AT,
		unix.SYS_MBIND, unix.SYS_SET_MEMPOLICY, unix.SYS_GET_MEMPOLICY, unix.SYS_SET_MEMPOLICY_HOME_NODE,
		unix.SYS_MIGRATE_PAGES, unix.SYS_MOVE_PAGES,
	},
	unix.ENOSYS: {unix.SYS_CLONE3},
})

func byErrno(groups map[syscall.Errno][]uintptr) map[uintptr]syscall.Errno {
	m := map[uintptr]syscall.Errno{}
	for e, nrs := range groups {
		for _, nr := range nrs {
			m[nr] = e
		}
	}
	return m
}

// argumentRules are the calls whose verdict depends on their arguments
// (TestProgramArguments).
var argumentRules = []uintptr{unix.SYS_CLONE, unix.SYS_IOCTL, unix.SYS_PERSONALITY, unix.SYS_SOCKET, unix.SYS_SOCKETPAIR}

const hi = 0xdead_beef << 32 // high bits the kernel drops from an int argument

// Personality flags, from <linux/personality.h>.
const (
	addrNoRandomize  = 0x0040000
	mmapPageZero     = 0x0100000
	addrCompatLayout = 0x0200000
	readImpliesExec  = 0x0400000
)

var argWords = [][6]uint64{
	{},
	{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)},
	{hi, hi, hi, hi, hi, hi},
}

// Every number up to the newest reviewed is refused with its errno when
// listed, and allowed otherwise, whatever the arguments.
func TestProgramSyscalls(t *testing.T) {
	vm := programVM(t)
	refused := maps.Clone(refusedOutright)
	maps.Copy(refused, archRefusedOutright)
	rules := map[uintptr]bool{}
	for _, nr := range argumentRules {
		rules[nr] = true
	}
	for nr := uintptr(0); nr <= newestReviewed; nr++ {
		if rules[nr] {
			continue
		}
		want := uint32(allowed)
		if e, ok := refused[nr]; ok {
			want = errnoVerdict(e)
		}
		for _, args := range argWords {
			if got := run(t, vm, nativeArch, uint32(nr), args); got != want {
				t.Errorf("syscall %d args %x: %s, want %s", nr, args, verdictName(got), verdictName(want))
			}
		}
	}
}

// Calls through another ABI, and numbers newer than the list, never reach
// the native rules.
func TestProgramABI(t *testing.T) {
	vm := programVM(t)
	cases := []struct {
		name     string
		arch, nr uint32
		want     uint32
	}{
		{"native getpid", nativeArch, unix.SYS_GETPID, allowed},
		{"newest reviewed", nativeArch, newestReviewed, allowed},
		{"newer than reviewed", nativeArch, newestReviewed + 1, errnoVerdict(unix.ENOSYS)},
		{"far newer", nativeArch, 1000, errnoVerdict(unix.ENOSYS)},
	}
	for _, nr := range []uint32{0, 1, 20, 39, 102, 172, 310, 435} {
		cases = append(cases, struct {
			name     string
			arch, nr uint32
			want     uint32
		}{fmt.Sprintf("foreign arch %#x nr %d", foreignArch, nr), foreignArch, nr, errnoVerdict(unix.EPERM)})
	}
	cases = append(cases, abiCases...)
	for _, c := range cases {
		for _, args := range argWords {
			if got := run(t, vm, c.arch, c.nr, args); got != c.want {
				t.Errorf("%s (arch %#x nr %#x): %s, want %s", c.name, c.arch, c.nr, verdictName(got), verdictName(c.want))
			}
		}
	}
}

// TestProgramArguments: the argument rules look at the low 32 bits only,
// as the kernel does for these int arguments.
func TestProgramArguments(t *testing.T) {
	vm := programVM(t)
	eperm, eafnosupport, eprotonosupport := errnoVerdict(unix.EPERM), errnoVerdict(unix.EAFNOSUPPORT), errnoVerdict(unix.EPROTONOSUPPORT)
	type call struct {
		name string
		nr   uintptr
		args [6]uint64
		want uint32
	}
	cases := []call{
		// clone: any CLONE_NEW* flag refused, in the low 32 bits.
		{"clone SIGCHLD", unix.SYS_CLONE, [6]uint64{uint64(unix.SIGCHLD)}, allowed},
		{"clone thread", unix.SYS_CLONE, [6]uint64{unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD | unix.CLONE_SYSVSEM | unix.CLONE_SETTLS | unix.CLONE_PARENT_SETTID | unix.CLONE_CHILD_CLEARTID}, allowed},
		{"clone vfork pidfd", unix.SYS_CLONE, [6]uint64{unix.CLONE_VM | unix.CLONE_VFORK | unix.CLONE_PIDFD | uint64(unix.SIGCHLD)}, allowed},
		{"clone high bits only", unix.SYS_CLONE, [6]uint64{hi | uint64(unix.SIGCHLD)}, allowed},
		{"clone exit signal 0x80", unix.SYS_CLONE, [6]uint64{0x80}, allowed},
		{"ioctl TCGETS", unix.SYS_IOCTL, [6]uint64{0, unix.TCGETS}, allowed},
		{"ioctl TCGETS high bits", unix.SYS_IOCTL, [6]uint64{0, hi | unix.TCGETS}, allowed},
		{"ioctl FIONREAD (TIOCINQ)", unix.SYS_IOCTL, [6]uint64{0, unix.TIOCINQ}, allowed},
		{"ioctl TIOCSTI as the third argument", unix.SYS_IOCTL, [6]uint64{0, unix.TIOCINQ, unix.TIOCSTI}, allowed},
		{"ioctl fd TIOCSTI", unix.SYS_IOCTL, [6]uint64{unix.TIOCSTI, unix.TCGETS}, allowed},
		{"personality query with high bits", unix.SYS_PERSONALITY, [6]uint64{^uint64(0)}, allowed},
		{"personality PER_LINUX with high bits", unix.SYS_PERSONALITY, [6]uint64{hi}, allowed},
		{"personality ADDR_NO_RANDOMIZE", unix.SYS_PERSONALITY, [6]uint64{addrNoRandomize}, eperm},
		{"personality ADDR_NO_RANDOMIZE with high bits", unix.SYS_PERSONALITY, [6]uint64{hi | addrNoRandomize}, eperm},
		{"personality READ_IMPLIES_EXEC", unix.SYS_PERSONALITY, [6]uint64{readImpliesExec}, eperm},
		{"personality MMAP_PAGE_ZERO", unix.SYS_PERSONALITY, [6]uint64{mmapPageZero}, eperm},
		{"personality ADDR_COMPAT_LAYOUT", unix.SYS_PERSONALITY, [6]uint64{addrCompatLayout}, eperm},
		{"personality PER_BSD", unix.SYS_PERSONALITY, [6]uint64{6}, eperm},
		{"personality PER_LINUX32|ADDR_NO_RANDOMIZE", unix.SYS_PERSONALITY, [6]uint64{perLinux32 | addrNoRandomize}, eperm},
		{"personality 0xfffffffe", unix.SYS_PERSONALITY, [6]uint64{0xfffffffe}, eperm},
	}
	for _, f := range []uint64{unix.CLONE_NEWNS, unix.CLONE_NEWCGROUP, unix.CLONE_NEWUTS, unix.CLONE_NEWIPC, unix.CLONE_NEWUSER, unix.CLONE_NEWPID, unix.CLONE_NEWNET} {
		cases = append(cases,
			call{fmt.Sprintf("clone %#x", f), unix.SYS_CLONE, [6]uint64{f | uint64(unix.SIGCHLD)}, eperm},
			call{fmt.Sprintf("clone %#x with high bits", f), unix.SYS_CLONE, [6]uint64{hi | f}, eperm},
			call{fmt.Sprintf("clone vfork %#x", f), unix.SYS_CLONE, [6]uint64{unix.CLONE_VM | unix.CLONE_VFORK | f}, eperm})
	}
	for _, req := range []uint64{unix.TIOCSTI, unix.TIOCLINUX, unix.TIOCSETD} {
		cases = append(cases,
			call{fmt.Sprintf("ioctl %#x", req), unix.SYS_IOCTL, [6]uint64{0, req}, eperm},
			call{fmt.Sprintf("ioctl %#x on fd -1", req), unix.SYS_IOCTL, [6]uint64{^uint64(0), req, ^uint64(0)}, eperm},
			call{fmt.Sprintf("ioctl %#x with high bits", req), unix.SYS_IOCTL, [6]uint64{0, hi | req}, eperm},
			call{fmt.Sprintf("ioctl %#x with all high bits", req), unix.SYS_IOCTL, [6]uint64{0, 0xffffffff<<32 | req}, eperm})
	}
	for _, p := range []uint64{0, perLinux32, uname26, perLinux32 | uname26, 0xffffffff} {
		cases = append(cases,
			call{fmt.Sprintf("personality %#x", p), unix.SYS_PERSONALITY, [6]uint64{p}, allowed},
			call{fmt.Sprintf("personality %#x with high bits", p), unix.SYS_PERSONALITY, [6]uint64{hi | p}, allowed})
	}

	// socket(domain, type, protocol): the domain, the type's low four bits
	// and the protocol, each in its low 32 bits.
	sock := func(name string, domain, typ, proto uint64, want uint32) {
		cases = append(cases,
			call{"socket " + name, unix.SYS_SOCKET, [6]uint64{domain, typ, proto}, want},
			call{"socket " + name + " with high bits", unix.SYS_SOCKET, [6]uint64{hi | domain, hi | typ, hi | proto}, want},
			call{"socket " + name + " with all high bits", unix.SYS_SOCKET, [6]uint64{0xffffffff<<32 | domain, 0xffffffff<<32 | typ, 0xffffffff<<32 | proto}, want})
	}
	const flags = unix.SOCK_CLOEXEC | unix.SOCK_NONBLOCK
	for _, typ := range []uint64{unix.SOCK_STREAM, unix.SOCK_DGRAM, unix.SOCK_SEQPACKET} {
		sock(fmt.Sprintf("unix type %d", typ), unix.AF_UNIX, typ, 0, allowed)
		sock(fmt.Sprintf("unix type %d cloexec nonblock", typ), unix.AF_UNIX, typ|flags, 0, allowed)
	}
	for _, domain := range []uint64{unix.AF_INET, unix.AF_INET6} {
		d := fmt.Sprintf("domain %d ", domain)
		sock(d+"stream", domain, unix.SOCK_STREAM, 0, allowed)
		sock(d+"stream tcp cloexec", domain, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP, allowed)
		sock(d+"stream tcp nonblock", domain, unix.SOCK_STREAM|flags, unix.IPPROTO_TCP, allowed)
		sock(d+"stream mptcp", domain, unix.SOCK_STREAM, unix.IPPROTO_MPTCP, allowed)
		sock(d+"dgram", domain, unix.SOCK_DGRAM, 0, allowed)
		sock(d+"dgram udp", domain, unix.SOCK_DGRAM|flags, unix.IPPROTO_UDP, allowed)
		sock(d+"ping", domain, unix.SOCK_DGRAM, unix.IPPROTO_ICMP, allowed)
		sock(d+"ping6", domain, unix.SOCK_DGRAM, unix.IPPROTO_ICMPV6, allowed)
		for _, typ := range []uint64{unix.SOCK_RAW, unix.SOCK_RAW | unix.SOCK_CLOEXEC, unix.SOCK_RAW | flags, unix.SOCK_RDM, unix.SOCK_SEQPACKET, unix.SOCK_DCCP, unix.SOCK_PACKET, 0, 7, 15} {
			for _, proto := range []uint64{0, unix.IPPROTO_ICMP, unix.IPPROTO_TCP, unix.IPPROTO_RAW, unix.IPPROTO_SCTP} {
				sock(fmt.Sprintf("%stype %#x proto %d", d, typ, proto), domain, typ, proto, eperm)
			}
		}
		for _, proto := range []uint64{unix.IPPROTO_SCTP, unix.IPPROTO_L2TP, unix.IPPROTO_UDPLITE, unix.IPPROTO_RAW, unix.IPPROTO_IGMP, 255, 0xffffffff} {
			sock(fmt.Sprintf("%sstream proto %d", d, proto), domain, unix.SOCK_STREAM, proto, eprotonosupport)
			sock(fmt.Sprintf("%sdgram proto %d", d, proto), domain, unix.SOCK_DGRAM, proto, eprotonosupport)
		}
	}
	for _, typ := range []uint64{unix.SOCK_RAW, unix.SOCK_DGRAM, unix.SOCK_RAW | unix.SOCK_CLOEXEC} {
		for _, proto := range []uint64{unix.NETLINK_ROUTE, unix.NETLINK_SOCK_DIAG, unix.NETLINK_KOBJECT_UEVENT} {
			sock(fmt.Sprintf("netlink type %#x proto %d", typ, proto), unix.AF_NETLINK, typ, proto, allowed)
		}
		for _, proto := range []uint64{unix.NETLINK_GENERIC, unix.NETLINK_ISCSI, unix.NETLINK_AUDIT, unix.NETLINK_NETFILTER, unix.NETLINK_CRYPTO, unix.NETLINK_XFRM, unix.NETLINK_RDMA, unix.NETLINK_SCSITRANSPORT, unix.NETLINK_CONNECTOR, 31} {
			sock(fmt.Sprintf("netlink type %#x proto %d", typ, proto), unix.AF_NETLINK, typ, proto, eprotonosupport)
		}
	}
	sock("netlink stream", unix.AF_NETLINK, unix.SOCK_STREAM, unix.NETLINK_ROUTE, eperm)
	sock("unix raw", unix.AF_UNIX, unix.SOCK_RAW, 0, eperm)
	sock("unix rdm", unix.AF_UNIX, unix.SOCK_RDM, 0, eperm)
	for _, domain := range []uint64{unix.AF_UNSPEC, unix.AF_PACKET, unix.AF_AX25, unix.AF_IPX, unix.AF_APPLETALK, unix.AF_X25, unix.AF_KEY,
		unix.AF_RDS, unix.AF_LLC, unix.AF_CAN, unix.AF_TIPC, unix.AF_BLUETOOTH, unix.AF_ALG, unix.AF_VSOCK, unix.AF_XDP, unix.AF_MCTP, 46, 255, 0xffffffff} {
		sock(fmt.Sprintf("domain %d", domain), domain, unix.SOCK_RAW, 0, eafnosupport)
		sock(fmt.Sprintf("domain %d dgram", domain), domain, unix.SOCK_DGRAM, 0, eafnosupport)
		sock(fmt.Sprintf("domain %d seqpacket", domain), domain, unix.SOCK_SEQPACKET, 0, eafnosupport)
	}

	// socketpair: unix sockets only.
	pair := func(name string, domain, typ, proto uint64, want uint32) {
		cases = append(cases,
			call{"socketpair " + name, unix.SYS_SOCKETPAIR, [6]uint64{domain, typ, proto}, want},
			call{"socketpair " + name + " with high bits", unix.SYS_SOCKETPAIR, [6]uint64{hi | domain, hi | typ, hi | proto}, want})
	}
	pair("unix stream", unix.AF_UNIX, unix.SOCK_STREAM, 0, allowed)
	pair("unix dgram cloexec", unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0, allowed)
	pair("unix seqpacket", unix.AF_UNIX, unix.SOCK_SEQPACKET|flags, 0, allowed)
	pair("unix raw", unix.AF_UNIX, unix.SOCK_RAW, 0, eperm)
	for _, domain := range []uint64{unix.AF_INET, unix.AF_INET6, unix.AF_NETLINK, unix.AF_PACKET, unix.AF_TIPC, unix.AF_RDS, 0} {
		pair(fmt.Sprintf("domain %d", domain), domain, unix.SOCK_DGRAM, 0, eafnosupport)
	}

	for _, c := range cases {
		if got := run(t, vm, nativeArch, uint32(c.nr), c.args); got != c.want {
			t.Errorf("%s %x: %s, want %s", c.name, c.args, verdictName(got), verdictName(c.want))
		}
	}
}
