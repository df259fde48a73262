// Package syscallfilter is the seccomp filter every task runs under: it
// refuses the system calls a task never needs and that widen the kernel's
// attack surface (new user namespaces, kexec, bpf, keyrings, ptrace, kernel
// modules, ...). bwrap loads it for the task (--seccomp); commands exec'd into
// a sandbox load it themselves before they exec.
package syscallfilter

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// eperm makes a refused call fail with EPERM, as it would without privilege.
var eperm = seccomp.ActionErrno | seccomp.Action(unix.EPERM)

// denied are refused outright.
var denied = []string{
	// Namespaces and mounts: a task keeps exactly the namespaces bwrap made.
	// (bwrap's --disable-userns would nest a second user namespace, which
	// breaks entering the sandbox for exec; this filter does the same job.)
	"unshare", "setns", "mount", "umount2", "pivot_root", "chroot",
	"open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
	// The kernel itself.
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"bpf", "perf_event_open", "userfaultfd", "reboot", "swapon", "swapoff", "acct",
	"syslog", "iopl", "ioperm", "quotactl", "lookup_dcookie", "uselib",
	// Keyrings are not namespaced.
	"keyctl", "add_key", "request_key",
	// No tracing of other processes.
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
	// Clocks are global.
	"settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
	"open_by_handle_at", "name_to_handle_at",
	// io_uring runs its operations past this filter, and has been a rich
	// source of kernel bugs.
	"io_uring_setup", "io_uring_enter", "io_uring_register",
}

// Policy is the filter as a policy.
func Policy() seccomp.Policy {
	return seccomp.Policy{
		DefaultAction: seccomp.ActionAllow,
		Syscalls: []seccomp.SyscallGroup{
			{Names: denied, Action: eperm},
			{
				Action: eperm,
				NamesWithCondtions: []seccomp.NameWithConditions{
					// clone with CLONE_NEWUSER (or any other new namespace).
					{Name: "clone", Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.BitsSet, Value: unix.CLONE_NEWUSER}}},
					{Name: "clone", Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.BitsSet, Value: unix.CLONE_NEWNS}}},
					{Name: "clone", Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.BitsSet, Value: unix.CLONE_NEWNET}}},
					// personality: only the ordinary domains, no ASLR tricks.
					{Name: "personality", Conditions: seccomp.ArgumentConditions{
						{Argument: 0, Operation: seccomp.NotEqual, Value: 0},
						{Argument: 0, Operation: seccomp.NotEqual, Value: 8},
						{Argument: 0, Operation: seccomp.NotEqual, Value: 0x20000},
						{Argument: 0, Operation: seccomp.NotEqual, Value: 0x20008},
						{Argument: 0, Operation: seccomp.NotEqual, Value: 0xffffffff},
					}},
					// Packet sockets, and raw sockets with any of their flags.
					{Name: "socket", Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.Equal, Value: unix.AF_PACKET}}},
					{Name: "socket", Conditions: seccomp.ArgumentConditions{{Argument: 1, Operation: seccomp.Equal, Value: unix.SOCK_RAW}}},
					{Name: "socket", Conditions: seccomp.ArgumentConditions{{Argument: 1, Operation: seccomp.Equal, Value: unix.SOCK_RAW | unix.SOCK_CLOEXEC}}},
					{Name: "socket", Conditions: seccomp.ArgumentConditions{{Argument: 1, Operation: seccomp.Equal, Value: unix.SOCK_RAW | unix.SOCK_NONBLOCK}}},
					{Name: "socket", Conditions: seccomp.ArgumentConditions{{Argument: 1, Operation: seccomp.Equal, Value: unix.SOCK_RAW | unix.SOCK_CLOEXEC | unix.SOCK_NONBLOCK}}},
				},
			},
			// clone3 passes its flags in memory the filter cannot read: ENOSYS
			// makes libc fall back to clone, which the filter can check.
			{Names: []string{"clone3"}, Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS)},
		},
	}
}

// instructions is the policy with a guard in front: a system call through
// another ABI (i386's int 0x80 on x86_64) would skip the native filter, so
// any other architecture is refused.
func instructions() ([]bpf.Instruction, error) {
	p := Policy()
	prog, err := p.Assemble()
	if err != nil {
		return nil, err
	}
	native, err := arch.GetInfo("")
	if err != nil {
		return nil, err
	}
	guard := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(native.ID), SkipTrue: 1},
		bpf.RetConstant{Val: uint32(eperm)},
	}
	return append(guard, prog...), nil
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

// Load installs the filter on every thread of this process, with
// no_new_privs, so that whatever it execs next runs under it.
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

// ConfineCommand is the hidden subcommand that runs inside a sandbox, for
// commands exec'd into it: it loads the filter and execs the command.
const ConfineCommand = "_confine"

// ConfineMain loads the filter and execs args (after an optional "--"),
// found on PATH. It only returns by exiting.
func ConfineMain(args []string) {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "bwrap-r: _confine: no command")
		os.Exit(126)
	}
	if err := Load(); err != nil {
		fmt.Fprintf(os.Stderr, "bwrap-r: loading the seccomp filter: %v\n", err)
		os.Exit(126)
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "bwrap-r: %v\n", err)
		os.Exit(127)
	}
	err = syscall.Exec(path, args, os.Environ())
	fmt.Fprintf(os.Stderr, "bwrap-r: exec %s: %v\n", path, err)
	os.Exit(126)
}
