package bwrap

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// EnterCommand is the hidden subcommand that joins a task's cgroups and then
// execs nsenter into its sandbox. The binary that hosts it must call RunEnter.
const EnterCommand = "_enter"

// Enter describes a command to run inside a running sandbox, as the task's
// own user, in all of its namespaces and its cgroups: never on the host.
type Enter struct {
	// Nsenter is util-linux's nsenter on the host.
	Nsenter string
	// Confine is the argv, as the sandbox sees it, that sets no_new_privs,
	// loads the task's seccomp filter and execs the command (appended).
	Confine []string
	// Shim is the argv that starts the enter shim ({"/proc/self/exe", EnterCommand}).
	Shim     []string
	Cgroups  []string
	UID, GID uint32
	Env      map[string]string
	Command  []string
}

// EnterCmd builds the process that enters the sandbox; the caller sets its
// stdio and starts it. nsenter forks into the sandbox's pid namespace and
// returns the command's exit status.
func (s *Sandbox) EnterCmd(e Enter) (*exec.Cmd, error) {
	if len(e.Command) == 0 {
		return nil, errors.New("exec: no command")
	}
	if e.UID == 0 || e.GID == 0 {
		return nil, errors.New("exec: refusing to enter a sandbox as root")
	}
	if len(e.Confine) == 0 {
		return nil, errors.New("exec: no confining wrapper")
	}
	target, err := s.Command()
	if err != nil {
		// The sandbox's pid 1 shares every namespace with the command.
		if !s.Init.Alive() {
			return nil, errors.New("exec: the task is not running")
		}
		target = s.Init
	}
	args := append([]string{}, e.Shim[1:]...)
	for _, cg := range e.Cgroups {
		args = append(args, "-cgroup", cg)
	}
	args = append(args, "-pid", strconv.Itoa(target.Pid), "-start", strconv.FormatUint(target.StartTime, 10), "--",
		e.Nsenter, "--target", strconv.Itoa(target.Pid),
		"--user", "--mount", "--pid", "--ipc", "--uts", "--net", "--root", "--wd",
		"--setuid", strconv.FormatUint(uint64(e.UID), 10), "--setgid", strconv.FormatUint(uint64(e.GID), 10),
		"--")
	args = append(args, e.Confine...)
	args = append(args, e.Command...)
	cmd := exec.Command(e.Shim[0], args...)
	cmd.Env = make([]string, 0, len(e.Env))
	for _, k := range slices.Sorted(maps.Keys(e.Env)) {
		cmd.Env = append(cmd.Env, k+"="+e.Env[k])
	}
	return cmd, nil
}

// RunEnter is the enter shim: it joins the cgroups, checks that the target
// pid is still the task's process, closes inherited descriptors and execs
// nsenter. It only returns on failure.
func RunEnter(args []string) error {
	fs := flag.NewFlagSet(EnterCommand, flag.ContinueOnError)
	var cgroups stringList
	fs.Var(&cgroups, "cgroup", "cgroup directory to join (repeatable)")
	pid := fs.Int("pid", 0, "target pid")
	start := fs.Uint64("start", 0, "target start time")
	if err := fs.Parse(args); err != nil {
		return err
	}
	argv := fs.Args()
	if len(argv) == 0 || !filepath.IsAbs(argv[0]) {
		return errors.New("enter: want -- /absolute/path/to/nsenter ARGS")
	}
	for _, cg := range cgroups {
		if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
			return fmt.Errorf("enter: joining cgroup: %w", err)
		}
	}
	// The pid was the task's when the driver looked; it must still be.
	if !(Proc{Pid: *pid, StartTime: *start}).Alive() {
		return errors.New("enter: the task's process is gone")
	}
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("enter: close_range: %w", err)
	}
	err := syscall.Exec(argv[0], argv, os.Environ())
	return fmt.Errorf("enter: exec %s: %w", argv[0], err)
}

// EnterMain runs the enter shim for a hosting binary's main.
func EnterMain(args []string) {
	err := RunEnter(args)
	fmt.Fprintf(os.Stderr, "bwrap-r: %v\n", err)
	os.Exit(126)
}

type stringList []string

func (s *stringList) String() string     { return fmt.Sprint(*s) }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
