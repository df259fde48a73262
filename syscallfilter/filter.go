// Package syscallfilter is the seccomp filter every task runs under: it
// refuses the system calls a task never needs and that widen the kernel's
// attack surface (new namespaces, mounts, kexec, bpf, keyrings, ptrace and
// its relatives, kernel modules, raw and exotic sockets, ...). bwrap loads it
// for the task (--seccomp); the enter launcher (bwrap/enter.c) loads it for
// commands exec'd into a sandbox, last before their exec.
//
// The program is assembled here from the tables below. Every argument rule
// compares the low 32 bits only: the arguments it looks at are ints (or, for
// clone's flags, read as 32 bits), the kernel drops the high half of the
// 64-bit register, and a comparison of all 64 bits would let a caller slip
// past a rule by setting bits the kernel then ignores. SECURITY.md says what
// is refused and why.
package syscallfilter

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"syscall"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// newestReviewed is the highest system call number this list was checked
// against (file_setattr, Linux 6.17; the numbers from 424 up are the same on
// every architecture). Newer calls fail with ENOSYS, as on an older kernel,
// until someone decides about them: a deny list must not wave through what
// it has never seen.
const newestReviewed = 469

// refusal is a group of calls refused whatever their arguments.
type refusal struct {
	errno syscall.Errno
	calls []uintptr
}

// refusals are checked after the architecture guard (guardArch).
var refusals = append([]refusal{
	// Namespaces and mounts: a task keeps exactly the namespaces and mounts
	// bwrap made. (bwrap's --disable-userns would nest a second user
	// namespace, which breaks entering the sandbox for exec; the filter does
	// the same job.) The new mount API gets EPERM like mount(2): flatpak
	// answers ENOSYS so that libmount falls back to mount(2), which fails here
	// too.
	{unix.EPERM, []uintptr{
		unix.SYS_UNSHARE, unix.SYS_SETNS, unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT, unix.SYS_CHROOT,
		unix.SYS_OPEN_TREE, unix.SYS_OPEN_TREE_ATTR, unix.SYS_MOVE_MOUNT, unix.SYS_FSOPEN, unix.SYS_FSCONFIG,
		unix.SYS_FSMOUNT, unix.SYS_FSPICK, unix.SYS_MOUNT_SETATTR,
	}},
	// clone3 passes its flags in memory the filter cannot read: ENOSYS makes
	// libc and Go fall back to clone, whose flags the filter checks.
	{unix.ENOSYS, []uintptr{unix.SYS_CLONE3}},
	// The kernel itself: its code, its log, its clocks, its swap and quotas.
	{unix.EPERM, []uintptr{
		unix.SYS_KEXEC_LOAD, unix.SYS_KEXEC_FILE_LOAD, unix.SYS_INIT_MODULE, unix.SYS_FINIT_MODULE,
		unix.SYS_DELETE_MODULE, unix.SYS_REBOOT, unix.SYS_SWAPON, unix.SYS_SWAPOFF, unix.SYS_ACCT,
		unix.SYS_SYSLOG, unix.SYS_QUOTACTL, unix.SYS_QUOTACTL_FD, unix.SYS_LOOKUP_DCOOKIE,
		unix.SYS_SETTIMEOFDAY, unix.SYS_CLOCK_SETTIME, unix.SYS_CLOCK_ADJTIME, unix.SYS_ADJTIMEX,
	}},
	// Large kernel interfaces with a long record of privilege escalations
	// that no task needs: bpf, perf, userfaultfd (it makes races in the rest
	// of the kernel easy to win), and io_uring, whose operations run past
	// this filter.
	{unix.EPERM, []uintptr{
		unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN, unix.SYS_USERFAULTFD,
		unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER,
	}},
	// Keyrings are not namespaced: keys of the host and of other tasks.
	{unix.EPERM, []uintptr{unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY}},
	// Reaching into another process: a command run by `nomad alloc exec`
	// runs in the task's pid namespace as the task's UID, with the
	// operator's terminal. pidfd_getfd would copy that terminal's
	// descriptor, ptrace or process_vm_writev take the process over.
	{unix.EPERM, []uintptr{
		unix.SYS_PTRACE, unix.SYS_PROCESS_VM_READV, unix.SYS_PROCESS_VM_WRITEV, unix.SYS_KCMP,
		unix.SYS_PIDFD_GETFD, unix.SYS_PROCESS_MADVISE,
	}},
	// File handles: open_by_handle_at opens any file of a file system by
	// number, past every directory permission and bind mount (the "shocker"
	// escape); name_to_handle_at is its other half.
	{unix.EPERM, []uintptr{unix.SYS_NAME_TO_HANDLE_AT, unix.SYS_OPEN_BY_HANDLE_AT}},
	// NUMA memory policy and page migration, as flatpak: placement is the
	// operator's (the cgroup's cpuset), the calls are a kernel surface with
	// a record of bugs, and move_pages/migrate_pages act on other processes.
	// Callers treat a refusal as "no NUMA" (OpenBLAS ignores mbind's error).
	{unix.EPERM, []uintptr{
		unix.SYS_MBIND, unix.SYS_SET_MEMPOLICY, unix.SYS_GET_MEMPOLICY, unix.SYS_SET_MEMPOLICY_HOME_NODE,
		unix.SYS_MIGRATE_PAGES, unix.SYS_MOVE_PAGES,
	}},
}, archRefusals...)

// newNamespaceFlags are clone's flags that make a namespace (CLONE_NEWTIME
// only exists for unshare and clone3).
const newNamespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// refusedIoctls are refused on any descriptor: TIOCSTI pushes input into a
// terminal (CVE-2017-5226), TIOCLINUX's selection paste does the same on a
// virtual console (CVE-2023-28100), and TIOCSETD attaches line disciplines,
// modules with a record of privilege escalations (n_hdlc, n_gsm).
var refusedIoctls = []uint32{unix.TIOCSTI, unix.TIOCLINUX, unix.TIOCSETD}

// allowedPersonalities are the execution domains a task may set: Linux,
// 32-bit Linux (setarch i686) and the 2.6 uname, and 0xffffffff, which only
// reads the current one. Everything else (ADDR_NO_RANDOMIZE,
// READ_IMPLIES_EXEC, MMAP_PAGE_ZERO, other domains) is refused.
var allowedPersonalities = []uint32{0, perLinux32, uname26, perLinux32 | uname26, 0xffffffff}

// From <linux/personality.h>.
const (
	perLinux32 = 0x0008
	uname26    = 0x0020000
)

// socketFamily is a socket domain a task may use, with the types (the low
// four bits of the type argument; SOCK_CLOEXEC and SOCK_NONBLOCK are flags
// above them) and protocols (nil: any) it may ask for.
type socketFamily struct {
	domain    uint32
	types     []uint32
	protocols []uint32
}

// sockTypeMask is the kernel's SOCK_TYPE_MASK.
const sockTypeMask = 0xf

// socketFamilies are the only domains socket accepts (as flatpak: unix,
// inet, inet6, netlink); any other fails with EAFNOSUPPORT, as from a kernel
// without it. Rare families are modules the kernel loads on demand for any
// user, and many had holes: packet, DCCP, SCTP, L2TP, RDS, TIPC, AX.25, ...
// A refused type (raw sockets, which forge and sniff packets, DCCP,
// SOCK_PACKET) fails with EPERM; a refused protocol with EPROTONOSUPPORT.
var socketFamilies = []socketFamily{
	unixSockets,
	{unix.AF_INET, []uint32{unix.SOCK_STREAM, unix.SOCK_DGRAM}, inetProtocols},
	{unix.AF_INET6, []uint32{unix.SOCK_STREAM, unix.SOCK_DGRAM}, inetProtocols},
	// Raw is netlink's ordinary type.
	{unix.AF_NETLINK, []uint32{unix.SOCK_RAW, unix.SOCK_DGRAM}, netlinkProtocols},
}

// inetProtocols: the default, TCP, UDP, MPTCP (Go's listeners ask for it
// first), and ICMP for ping sockets (SOCK_DGRAM, within the kernel's
// net.ipv4.ping_group_range). Not SCTP, UDP-Lite or L2TP.
var inetProtocols = []uint32{0, unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_MPTCP, unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6}

// netlinkProtocols: routes and addresses (getaddrinfo, getifaddrs), socket
// diagnostics (ss) and device events (udev monitors). Not the others, which
// need privilege, or are modules the kernel would load (iSCSI's was
// CVE-2021-27365), or generic netlink, which loads modules by family name.
var netlinkProtocols = []uint32{unix.NETLINK_ROUTE, unix.NETLINK_SOCK_DIAG, unix.NETLINK_KOBJECT_UEVENT}

var unixSockets = socketFamily{unix.AF_UNIX, []uint32{unix.SOCK_STREAM, unix.SOCK_DGRAM, unix.SOCK_SEQPACKET}, nil}

// socketpairFamilies: only unix sockets come in pairs, and socketpair
// makes both sockets (loading the family's module) before it asks the
// family for a pair, so it is held to a list as socket is.
var socketpairFamilies = []socketFamily{unixSockets}

// seccomp_data: nr and arch are 32-bit words; args are 64-bit, and a
// 32-bit argument is the low word, first on little-endian machines (the
// only ones this package builds for).
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

func loadNr() bpf.Instruction { return bpf.LoadAbsolute{Off: offNr, Size: 4} }

// loadArgLow loads the low 32 bits of argument i.
func loadArgLow(i int) bpf.Instruction { return bpf.LoadAbsolute{Off: uint32(offArgs + 8*i), Size: 4} }

func allow() []bpf.Instruction { return ret(unix.SECCOMP_RET_ALLOW) }

func refuse(e syscall.Errno) []bpf.Instruction {
	return ret(unix.SECCOMP_RET_ERRNO | uint32(e)&unix.SECCOMP_RET_DATA)
}

func ret(v uint32) []bpf.Instruction { return []bpf.Instruction{bpf.RetConstant{Val: v}} }

// The blocks below end in a return on every path, so that a skipped block
// leaves the accumulator as it was: after each syscall's block the next
// test still finds the syscall number there.

// ifEqual runs then when the accumulator equals v, and falls through past
// it otherwise.
func ifEqual(v uint32, then []bpf.Instruction) []bpf.Instruction {
	return append([]bpf.Instruction{bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: v, SkipTrue: skip(len(then))}}, then...)
}

// ifAnyBit runs then when the accumulator has any bit of mask set.
func ifAnyBit(mask uint32, then []bpf.Instruction) []bpf.Instruction {
	return append([]bpf.Instruction{bpf.JumpIf{Cond: bpf.JumpBitsNotSet, Val: mask, SkipTrue: skip(len(then))}}, then...)
}

// oneOf runs match when the accumulator is one of values, and otherwise
// when it is none of them.
func oneOf(values []uint32, match, otherwise []bpf.Instruction) []bpf.Instruction {
	var p []bpf.Instruction
	for i, v := range values {
		p = append(p, bpf.JumpIf{Cond: bpf.JumpEqual, Val: v, SkipTrue: skip(len(values) - 1 - i + len(otherwise))})
	}
	return seq(p, otherwise, match)
}

// onSyscalls runs body when the accumulator, the syscall number, is one of
// nrs, and falls through past it otherwise.
func onSyscalls(nrs []uintptr, body []bpf.Instruction) []bpf.Instruction {
	var p []bpf.Instruction
	last := len(nrs) - 1
	for i, nr := range nrs[:last] {
		p = append(p, bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(nr), SkipTrue: skip(last - i)})
	}
	return append(p, ifEqual(uint32(nrs[last]), body)...)
}

// tooLong is the panic of a block too long for a conditional jump over it;
// the program is fixed, so every test would see it.
type tooLong int

func skip(n int) uint8 {
	if n > 255 {
		panic(tooLong(n))
	}
	return uint8(n)
}

func seq(blocks ...[]bpf.Instruction) []bpf.Instruction {
	var p []bpf.Instruction
	for _, b := range blocks {
		p = append(p, b...)
	}
	return p
}

// argOneOf returns match when the low 32 bits of argument arg are one of
// values, otherwise otherwise.
func argOneOf(arg int, values []uint32, match, otherwise []bpf.Instruction) []bpf.Instruction {
	return seq([]bpf.Instruction{loadArgLow(arg)}, oneOf(values, match, otherwise))
}

// socketRule holds socket's (or socketpair's) domain, type and protocol to
// families.
func socketRule(families []socketFamily) []bpf.Instruction {
	p := []bpf.Instruction{loadArgLow(0)}
	for _, f := range families {
		accepted := allow()
		if f.protocols != nil {
			accepted = argOneOf(2, f.protocols, allow(), refuse(unix.EPROTONOSUPPORT))
		}
		typeCheck := seq(
			[]bpf.Instruction{loadArgLow(1), bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: sockTypeMask}},
			oneOf(f.types, accepted, refuse(unix.EPERM)),
		)
		p = append(p, ifEqual(f.domain, typeCheck)...)
	}
	return append(p, refuse(unix.EAFNOSUPPORT)...)
}

// guardArch refuses every call through another ABI than the native one,
// which would skip all the native numbers below: i386's int 0x80 (another
// arch in seccomp_data) and x86_64's x32 (the native arch with bit
// 0x40000000 in the number), and every number newer than the list.
func guardArch() []bpf.Instruction {
	p := seq(
		[]bpf.Instruction{
			bpf.LoadAbsolute{Off: offArch, Size: 4},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: nativeArch, SkipTrue: 1},
		},
		refuse(unix.EPERM),
		[]bpf.Instruction{loadNr()},
	)
	if abiBit != 0 {
		p = append(p, ifAnyBit(abiBit, refuse(unix.EPERM))...)
	}
	return append(p,
		bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: newestReviewed, SkipFalse: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
	)
}

// instructions is the whole program.
func instructions() (prog []bpf.Instruction, err error) {
	defer func() {
		if n, ok := recover().(tooLong); ok {
			err = fmt.Errorf("syscallfilter: a block of %d instructions is too long to jump over", int(n))
		}
	}()
	var cases []syscallCase
	for _, r := range refusals {
		for _, nr := range r.calls {
			cases = append(cases, syscallCase{uint32(nr), refuse(r.errno)})
		}
	}
	cases = append(cases,
		syscallCase{unix.SYS_CLONE, seq([]bpf.Instruction{loadArgLow(0)}, ifAnyBit(newNamespaceFlags, refuse(unix.EPERM)), allow())},
		syscallCase{unix.SYS_IOCTL, argOneOf(1, refusedIoctls, refuse(unix.EPERM), allow())},
		syscallCase{unix.SYS_PERSONALITY, argOneOf(0, allowedPersonalities, allow(), refuse(unix.EPERM))},
		syscallCase{unix.SYS_SOCKET, socketRule(socketFamilies)},
		syscallCase{unix.SYS_SOCKETPAIR, socketRule(socketpairFamilies)},
	)
	slices.SortFunc(cases, func(a, b syscallCase) int { return cmp.Compare(a.nr, b.nr) })
	for i := 1; i < len(cases); i++ {
		if cases[i].nr == cases[i-1].nr {
			return nil, fmt.Errorf("syscallfilter: system call %d has two rules", cases[i].nr)
		}
	}
	return seq(guardArch(), dispatch(cases, allow())), nil
}

// syscallCase is what the filter does with one system call number.
type syscallCase struct {
	nr   uint32
	body []bpf.Instruction
}

// dispatchLeaf is the most cases a branch of dispatch tests one by one: the
// shortest program of the sizes tried (4 to 16), and as fast to load.
const dispatchLeaf = 12

// dispatch runs the body of the case whose number is in the accumulator,
// and otherwise: cases are sorted by number and searched by halves, not in
// a list. A call then passes about a dozen instructions instead of every
// rule, and so does the kernel at each load, when it runs the filter on
// every system call number to find those it may allow without running it
// (its action cache): a load took 0.13 to 0.16 ms with the list and 0.05
// with the search, and a start has two (bwrap loads the filter in pid 1 and
// again for the command), an exec into the sandbox one.
func dispatch(cases []syscallCase, otherwise []bpf.Instruction) []bpf.Instruction {
	if len(cases) <= dispatchLeaf {
		// Numbers with the same body share it: the program stays short
		// (the kernel caps the instructions of a thread's filters).
		var p []bpf.Instruction
		for len(cases) > 0 {
			var nrs []uintptr
			rest := cases[:0:0]
			for _, c := range cases {
				if slices.Equal(c.body, cases[0].body) {
					nrs = append(nrs, uintptr(c.nr))
				} else {
					rest = append(rest, c)
				}
			}
			p = append(p, onSyscalls(nrs, cases[0].body)...)
			cases = rest
		}
		return append(p, otherwise...)
	}
	half := len(cases) / 2
	below := dispatch(cases[:half], otherwise)
	return seq(
		// From the half's first number up: over the other half, with an
		// unconditional jump (a conditional one reaches 255 at most).
		[]bpf.Instruction{
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: cases[half].nr, SkipTrue: 0, SkipFalse: 1},
			bpf.Jump{Skip: uint32(len(below))},
		},
		below,
		dispatch(cases[half:], otherwise),
	)
}

// sockFilters is the filter as the kernel's struct sock_filter entries.
func sockFilters() ([]unix.SockFilter, error) {
	insts, err := instructions()
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(insts)
	if err != nil {
		return nil, err
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return filter, nil
}

// Program returns the filter as raw struct sock_filter entries, the form
// bwrap's --seccomp reads.
func Program() ([]byte, error) {
	filter, err := sockFilters()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, filter); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Load installs the filter on this process's thread, with no_new_privs, so
// that whatever it execs next runs under it (the package's tests use it).
func Load() error {
	filter, err := sockFilters()
	if err != nil {
		return err
	}
	// no_new_privs is per thread and seccomp checks the calling thread's:
	// both calls must run on the same thread. The thread stays locked, as
	// the caller is about to exec.
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	return seccompSetFilter(&prog)
}
