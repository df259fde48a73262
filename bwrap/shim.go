package bwrap

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// ShimCommand is the hidden subcommand that runs the launcher shim. The binary
// that hosts it (bwrap-r, or a test binary) must call RunShim for it.
const ShimCommand = "_shim"

// RunShim is the launcher shim, started as root with the task's stdio and
// bwrap's two status descriptors. In this order it joins the task's cgroups
// and network namespace, drops to the task's UID and GID, and execs bwrap. It
// only returns on failure.
//
// Why drop before bwrap rather than let bwrap map IDs: a bwrap started by UID
// N with --unshare-user --uid N --gid N writes the identity map "N N 1", so the
// task's processes are host UID N and host firewall rules can match them.
func RunShim(args []string) error {
	fs := flag.NewFlagSet(ShimCommand, flag.ContinueOnError)
	uid := fs.Int("uid", -1, "task uid")
	gid := fs.Int("gid", -1, "task gid")
	netns := fs.String("netns", "", "network namespace file to join")
	var cgroups stringList
	fs.Var(&cgroups, "cgroup", "cgroup directory to join (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	argv := fs.Args()
	if len(argv) == 0 || !filepath.IsAbs(argv[0]) {
		return errors.New("shim: want -- /absolute/path/to/bwrap ARGS")
	}
	if *uid <= 0 || *gid <= 0 {
		return fmt.Errorf("shim: refusing uid %d gid %d: a task never runs as root", *uid, *gid)
	}
	// setns applies to the calling thread; exec must happen from that thread.
	runtime.LockOSThread()

	for _, cg := range cgroups {
		procs := filepath.Join(cg, "cgroup.procs")
		if err := os.WriteFile(procs, []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
			return fmt.Errorf("shim: joining cgroup: %w", err)
		}
	}
	if *netns != "" {
		if err := joinNetNS(*netns); err != nil {
			return err
		}
	}
	if err := syscall.Setgroups([]int{}); err != nil {
		return fmt.Errorf("shim: setgroups: %w", err)
	}
	if err := syscall.Setgid(*gid); err != nil {
		return fmt.Errorf("shim: setgid: %w", err)
	}
	if err := syscall.Setuid(*uid); err != nil {
		return fmt.Errorf("shim: setuid: %w", err)
	}
	// setuid cleared dumpable; bwrap (unprivileged now) must write its own
	// /proc/self/uid_map, which needs it. Kernels reset dumpable at exec of a
	// readable binary, so here this is belt and braces; on set-ups where exec
	// keeps it cleared, bwrap fails with "setting up uid map: Permission denied"
	// without it.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("shim: PR_SET_DUMPABLE: %w", err)
	}
	// No parent-death signal: the task must outlive the plugin.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("shim: PR_SET_PDEATHSIG: %w", err)
	}
	// bwrap hands every open descriptor to the task. Anything the shim (or
	// the plugin before it) inherited beyond stdio and bwrap's own must close.
	if err := unix.CloseRange(lastFD+1, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("shim: close_range: %w", err)
	}
	err := syscall.Exec(argv[0], argv, []string{})
	return fmt.Errorf("shim: exec %s: %w", argv[0], err)
}

func joinNetNS(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("shim: network namespace %s: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("shim: joining network namespace %s: %w", path, err)
	}
	return nil
}

// ShimMain runs the shim for a hosting binary's main and exits on failure.
func ShimMain(args []string) {
	err := RunShim(args)
	// Tell the launcher why on bwrap's info descriptor, which it reads.
	if b, jerr := json.Marshal(map[string]string{"shim-error": err.Error()}); jerr == nil {
		os.NewFile(infoFD, "info").Write(b)
	}
	fmt.Fprintf(os.Stderr, "bwrap-r: %v\n", err)
	os.Exit(125)
}

type stringList []string

func (s *stringList) String() string     { return fmt.Sprint(*s) }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
