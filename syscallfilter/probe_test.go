package syscallfilter

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// probeChildEnv makes the test binary a child that runs the probes, with
// the filter loaded when its value is "filtered".
const probeChildEnv = "BWRAP_R_TEST_PROBE_CHILD"

// probe is one system call made for real. The child runs in a new user,
// network and mount namespace where it is root, so it holds CAP_NET_RAW,
// CAP_SYS_ADMIN and the rest over its own namespaces: without the filter
// the kernel would let most of these through, or answer with another errno
// (bad descriptors and pointers keep them harmless). distinct says the
// unfiltered kernel's answer differs from want, which shows that the
// refusal is the filter's.
type probe struct {
	name     string
	call     func() error
	want     syscall.Errno // 0: the call succeeds
	distinct bool
}

const high = 1 << 32 // a bit the kernel drops from an int argument

func sys(nr uintptr, args ...uintptr) func() error {
	return func() error {
		var a [6]uintptr
		copy(a[:], args)
		r, _, e := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
		if e != 0 {
			return e
		}
		// A descriptor from a successful socket or pidfd_getfd.
		if nr == unix.SYS_SOCKET || nr == unix.SYS_PIDFD_GETFD {
			unix.Close(int(r))
		}
		return nil
	}
}

const minus1 = ^uintptr(0)

// bad is a pointer the kernel cannot read: EFAULT where it gets that far.
const bad = uintptr(1)

var probes = append([]probe{
	// The 64-bit socket hole: the kernel reads SOCK_RAW in the low word.
	{"socket(AF_INET, SOCK_RAW|1<<32, IPPROTO_ICMP)", sys(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_RAW|high, unix.IPPROTO_ICMP), unix.EPERM, true},
	{"socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)", sys(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP), unix.EPERM, true},
	{"socket(AF_INET6, SOCK_RAW|SOCK_CLOEXEC|1<<32, IPPROTO_ICMPV6)", sys(unix.SYS_SOCKET, unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC|high, unix.IPPROTO_ICMPV6), unix.EPERM, true},
	{"socket(AF_PACKET, SOCK_RAW, ETH_P_ALL)", sys(unix.SYS_SOCKET, unix.AF_PACKET, unix.SOCK_RAW, htons(unix.ETH_P_ALL)), unix.EAFNOSUPPORT, true},
	{"socket(AF_PACKET|1<<32, SOCK_DGRAM, ETH_P_ALL)", sys(unix.SYS_SOCKET, unix.AF_PACKET|high, unix.SOCK_DGRAM, htons(unix.ETH_P_ALL)), unix.EAFNOSUPPORT, true},
	{"socketpair(AF_INET, SOCK_STREAM)", socketpair(unix.AF_INET, unix.SOCK_STREAM), unix.EAFNOSUPPORT, true},
	// Another process's descriptors (here its own: the kernel allows that).
	{"pidfd_getfd(own pidfd, 0)", pidfdGetfd, unix.EPERM, true},
	{"process_madvise(-1)", sys(unix.SYS_PROCESS_MADVISE, minus1, 0, 0, 0, 0), unix.EPERM, true},
	{"process_vm_readv(self, 0 iovecs)", func() error { return sys(unix.SYS_PROCESS_VM_READV, uintptr(os.Getpid()), 0, 0, 0, 0, 0)() }, unix.EPERM, true},
	// Terminal ioctls, on fd -1: EBADF if they got through.
	{"ioctl(-1, TIOCSTI|1<<32)", sys(unix.SYS_IOCTL, minus1, unix.TIOCSTI|high, bad), unix.EPERM, true},
	{"ioctl(-1, TIOCSTI)", sys(unix.SYS_IOCTL, minus1, unix.TIOCSTI, bad), unix.EPERM, true},
	{"ioctl(-1, TIOCLINUX|1<<32)", sys(unix.SYS_IOCTL, minus1, unix.TIOCLINUX|high, bad), unix.EPERM, true},
	{"ioctl(-1, TIOCSETD)", sys(unix.SYS_IOCTL, minus1, unix.TIOCSETD, bad), unix.EPERM, true},
	// Namespaces: root of its own user namespace could make them all.
	{"clone(CLONE_NEWPID)", startWith(unix.CLONE_NEWPID), unix.EPERM, true},
	{"clone(CLONE_NEWIPC)", startWith(unix.CLONE_NEWIPC), unix.EPERM, true},
	{"clone(CLONE_NEWCGROUP)", startWith(unix.CLONE_NEWCGROUP), unix.EPERM, true},
	{"clone(CLONE_NEWUTS)", startWith(unix.CLONE_NEWUTS), unix.EPERM, true},
	{"clone(CLONE_NEWNS)", startWith(unix.CLONE_NEWNS), unix.EPERM, true},
	{"setns(-1, 0)", sys(unix.SYS_SETNS, minus1, 0), unix.EPERM, true},
	{"clone3(bad pointer)", sys(unix.SYS_CLONE3, bad, 88), unix.ENOSYS, true},
	{"fsopen(bad pointer)", sys(unix.SYS_FSOPEN, bad, 0), unix.EPERM, true},
	{"open_tree(-1, bad pointer)", sys(unix.SYS_OPEN_TREE, minus1, bad, 0), unix.EPERM, true},
	{"mount(bad pointers)", sys(unix.SYS_MOUNT, bad, bad, bad, 0, 0), unix.EPERM, true},
	{"chroot(bad pointer)", sys(unix.SYS_CHROOT, bad), unix.EPERM, true},
	// NUMA policy.
	{"get_mempolicy", sys(unix.SYS_GET_MEMPOLICY, 0, 0, 0, 0, 0), unix.EPERM, true},
	{"set_mempolicy(MPOL_DEFAULT)", sys(unix.SYS_SET_MEMPOLICY, unix.MPOL_DEFAULT, 0, 0), unix.EPERM, true},
	{"mbind(0 bytes, MPOL_DEFAULT)", sys(unix.SYS_MBIND, 0, 0, unix.MPOL_DEFAULT, 0, 0, 0), unix.EPERM, true},
	{"move_pages(self, 0 pages)", sys(unix.SYS_MOVE_PAGES, 0, 0, 0, 0, 0, 0), unix.EPERM, true},
	// Keyrings, handles, the kernel's sharp edges.
	{"keyctl(bad operation)", sys(unix.SYS_KEYCTL, 0xffff, 0, 0, 0, 0), unix.EPERM, true},
	{"add_key(bad pointers)", sys(unix.SYS_ADD_KEY, bad, bad, 0, 0, 0), unix.EPERM, true},
	{"name_to_handle_at(bad pointers)", sys(unix.SYS_NAME_TO_HANDLE_AT, minus1, bad, bad, bad, 0), unix.EPERM, true},
	{"perf_event_open(bad pointer)", sys(unix.SYS_PERF_EVENT_OPEN, bad, 0, minus1, minus1, 0), unix.EPERM, true},
	{"userfaultfd(bad flags)", sys(unix.SYS_USERFAULTFD, 0x10000001), unix.EPERM, true},
	{"io_uring_setup(bad pointer)", sys(unix.SYS_IO_URING_SETUP, 1, bad), unix.EPERM, false},
	{"quotactl_fd(-1)", sys(unix.SYS_QUOTACTL_FD, minus1, 0, 0, 0), unix.EPERM, true},
	{"unshare(CLONE_NEWUSER)", sys(unix.SYS_UNSHARE, unix.CLONE_NEWUSER), unix.EPERM, true},
	{"syscall newer than reviewed", sys(newestReviewed + 1), unix.ENOSYS, false},

	// Ordinary calls, also with high bits the kernel drops.
	{"getpid", sys(unix.SYS_GETPID), 0, false},
	{"socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, 0)", sys(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0), 0, false},
	{"socket(AF_INET|1<<32, SOCK_STREAM|1<<32, IPPROTO_TCP|1<<32)", sys(unix.SYS_SOCKET, unix.AF_INET|high, unix.SOCK_STREAM|high, unix.IPPROTO_TCP|high), 0, false},
	{"socket(AF_INET6, SOCK_DGRAM|SOCK_NONBLOCK, IPPROTO_UDP)", sys(unix.SYS_SOCKET, unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK, unix.IPPROTO_UDP), 0, false},
	{"socket(AF_UNIX, SOCK_SEQPACKET, 0)", sys(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_SEQPACKET, 0), 0, false},
	{"socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, NETLINK_ROUTE)", sys(unix.SYS_SOCKET, unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE), 0, false},
	{"socketpair(AF_UNIX, SOCK_STREAM)", socketpair(unix.AF_UNIX, unix.SOCK_STREAM), 0, false},
	{"clone without namespace flags (exec /bin/true)", startWith(0), 0, false},
	{"personality(0xffffffff)", sys(unix.SYS_PERSONALITY, 0xffffffff), 0, false},
	{"personality(PER_LINUX|1<<32)", sys(unix.SYS_PERSONALITY, high), 0, false},
	{"ioctl(-1, TCGETS|1<<32)", sys(unix.SYS_IOCTL, minus1, unix.TCGETS|high, bad), unix.EBADF, false},
	{"pidfd_open(self)", func() error {
		fd, err := unix.PidfdOpen(os.Getpid(), 0)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}, 0, false},
}, archProbes...)

func htons(v uint16) uintptr { return uintptr(v>>8 | v<<8&0xff00) }

func socketpair(domain, typ uintptr) func() error {
	return func() error {
		var fds [2]int32
		_, _, e := unix.Syscall6(unix.SYS_SOCKETPAIR, domain, typ, 0, uintptr(unsafe.Pointer(&fds)), 0, 0)
		if e != 0 {
			return e
		}
		unix.Close(int(fds[0]))
		unix.Close(int(fds[1]))
		return nil
	}
}

func pidfdGetfd() error {
	pidfd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		return fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(pidfd)
	return sys(unix.SYS_PIDFD_GETFD, uintptr(pidfd), 0, 0)()
}

// startWith runs /bin/true, cloned with flags (Go's os/exec uses clone,
// not clone3, unless asked for a cgroup).
func startWith(flags uintptr) func() error {
	return func() error {
		cmd := exec.Command("/bin/true")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags}
		return cmd.Run()
	}
}

func probeChild(mode string) {
	if mode == "filtered" {
		if err := Load(); err != nil {
			fmt.Println("load:", err)
			os.Exit(1)
		}
	}
	for _, p := range probes {
		fmt.Printf("%s\t%s\n", p.name, errnoOf(p.call()))
	}
	os.Exit(0)
}

// errnoOf names the errno of a failed call, "ok" for success.
func errnoOf(err error) string {
	if err == nil {
		return "ok"
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return unix.ErrnoName(e)
	}
	return "error " + strings.ReplaceAll(err.Error(), "\t", " ")
}

func want(e syscall.Errno) string {
	if e == 0 {
		return "ok"
	}
	return unix.ErrnoName(e)
}

// runProbes runs the probes in a child in new user, network and mount
// namespaces, where it is root mapped to root (so it can run this binary).
func runProbes(t *testing.T, mode string) map[string]string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), probeChildEnv+"="+mode)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER | unix.CLONE_NEWNET | unix.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s probes: %v: %s", mode, err, out)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, result, ok := strings.Cut(line, "\t")
		if !ok {
			t.Fatalf("%s probes: unexpected output %q", mode, line)
		}
		got[name] = result
	}
	return got
}

// TestFilterInForce makes each probe's call under the loaded filter and
// checks the exact errno; for a refusal marked distinct it also runs the
// probe without the filter, to show the kernel alone would have answered
// otherwise (the raw socket with SOCK_RAW|1<<32 opens there).
func TestFilterInForce(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for the probes' user namespace mapped to root")
	}
	unfiltered := runProbes(t, "unfiltered")
	filtered := runProbes(t, "filtered")
	for _, p := range probes {
		got, ok := filtered[p.name]
		if !ok {
			t.Errorf("%s: no result", p.name)
			continue
		}
		t.Logf("%-60s unfiltered %-16s filtered %s", p.name, unfiltered[p.name], got)
		if got != want(p.want) {
			t.Errorf("%s under the filter: %s, want %s (without the filter: %s)", p.name, got, want(p.want), unfiltered[p.name])
		}
		if p.distinct && unfiltered[p.name] == want(p.want) {
			t.Errorf("%s without the filter: %s too, so the probe does not show the filter's refusal", p.name, unfiltered[p.name])
		}
	}
}
