package bwrap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxRequestFDs and maxRequestArgs bound what a launcher request carries:
// its descriptors and the bytes of its argv (SHIM_REQUEST_MAX_FDS and
// SHIM_REQUEST_MAX_ARGS_BYTES; shim.go checks they agree). A launch above
// either goes the old way, by exec.
const (
	maxRequestFDs  = 240
	maxRequestArgs = 4 << 20
)

// launcher is a launcher shim started ahead of its sandbox (_shim -request,
// request.c): this process's child, waiting on a socket of which this
// process holds the only other end. Starting one is a fork and exec of this
// binary, and on these VMs the exec alone costs half a millisecond of glibc
// start-up; a spare started after one launch is what the next one takes, so
// that a start pays a message instead.
type launcher struct {
	cmd  *exec.Cmd
	conn int
}

// startLauncher starts a launcher that waits for its request. shim is the
// launch's Shim argv; prebuild, SOURCE PATH pairs, the assembled root's
// -tree-bind entries it copies ahead (shim_prebuild, shim.c) for a request
// that has the same.
func startLauncher(shim []string, prebuild []string) (*launcher, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("bwrap: launcher socket: %w", err)
	}
	theirs := os.NewFile(uintptr(fds[1]), "launcher-request")
	cmd := shimCommand(shim, append([]string{"-request"}, prebuild...)...)
	cmd.ExtraFiles = []*os.File{theirs}
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		unix.Close(fds[0])
		return nil, fmt.Errorf("bwrap: starting launcher: %w", err)
	}
	return &launcher{cmd: cmd, conn: fds[0]}, nil
}

// shimCommand is the launcher's command: Shim's argv with args after it, an
// empty environment, and a session of its own (the sandbox must not get the
// plugin's signals, nor die with it: tasks outlive plugin restarts).
func shimCommand(shim []string, args ...string) *exec.Cmd {
	cmd := exec.Command(shim[0], append(append([]string{}, shim[1:]...), args...)...)
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd
}

// errLauncherGone is a request to a launcher that had already exited.
var errLauncherGone = errors.New("bwrap: the launcher had exited")

// request hands the launcher its shim argv (what follows "_shim") and its
// descriptors: files[k] becomes its descriptor k; nil leaves k closed, but
// for stdio, which gets the null device (as the shim would open it). argv
// is at most maxRequestArgs bytes (startShim checks). The launcher's socket
// is closed either way.
func (ln *launcher) request(argv []string, files []*os.File) error {
	defer func() { unix.Close(ln.conn); ln.conn = -1 }()
	argsFile, err := argsMemfd(argv)
	if err != nil {
		return err
	}
	defer argsFile.Close()
	header := []byte{0, 0, 0, 0}
	var fds []int
	for k, f := range files {
		if f == nil && k <= 2 {
			// The null device, as the shim would open itself: with no gap
			// below the rest they arrive placed (request.c). A fresh one, so
			// that no two tasks share a file description.
			null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer null.Close()
			f = null
		}
		if f == nil {
			continue
		}
		header = binary.NativeEndian.AppendUint32(header, uint32(k))
		fds = append(fds, int(f.Fd()))
	}
	n := len(fds)
	// The argv file last: the descriptors then arrive at their targets
	// when those run from 0 without a gap (request.c).
	fds = append(fds, int(argsFile.Fd()))
	if n == 0 || n > maxRequestFDs {
		return fmt.Errorf("bwrap: a launcher request of %d descriptors, want 1 to %d", n, maxRequestFDs)
	}
	binary.NativeEndian.PutUint32(header, uint32(n))
	err = unix.Sendmsg(ln.conn, header, unix.UnixRights(fds...), nil, unix.MSG_NOSIGNAL)
	runtime.KeepAlive(files)
	if errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.ECONNREFUSED) {
		return errLauncherGone
	}
	if err != nil {
		return fmt.Errorf("bwrap: sending the launcher its request: %w", err)
	}
	return nil
}

// spares holds one idle launcher for each Shim argv launched with.
var spares struct {
	sync.Mutex
	idle    map[string]*launcher
	filling map[string]bool
}

func spareKey(shim []string) string { return strings.Join(shim, "\x00") }

// takeSpare returns the idle launcher for shim, if there is one.
func takeSpare(shim []string) *launcher {
	spares.Lock()
	defer spares.Unlock()
	key := spareKey(shim)
	ln := spares.idle[key]
	delete(spares.idle, key)
	return ln
}

// refillSpare starts, in the background, a spare launcher for shim unless
// one is idle or on its way (so never more than one), to copy prebuild's
// files ahead (startLauncher). Start calls it as it returns, once bwrap has
// made the sandbox. (Started 30 ms later instead, it held a /bin/true task
// up less, but an R task did no better and a job's many allocations found
// no spare ready: see BENCHMARKS.md.)
func refillSpare(shim []string, prebuild []string) {
	key := spareKey(shim)
	spares.Lock()
	if spares.idle[key] != nil || spares.filling[key] {
		spares.Unlock()
		return
	}
	if spares.filling == nil {
		spares.filling = map[string]bool{}
		spares.idle = map[string]*launcher{}
	}
	spares.filling[key] = true
	spares.Unlock()
	go func() {
		ln, err := startLauncher(shim, prebuild)
		spares.Lock()
		defer spares.Unlock()
		spares.filling[key] = false
		if err != nil {
			// The next launch starts its own, and reports the failure.
			return
		}
		// A spare that dies while idle (killed) stays a zombie until a
		// launch takes it and finds it gone: there is at most one.
		spares.idle[key] = ln
	}()
}

// startShim starts the launcher shim with args (its flags and bwrap's argv,
// after Shim's own) and files as its descriptors 0 to len(files)-1 (nil:
// closed; for 0 to 2, /dev/null). It takes the spare launcher if there is
// one.
func startShim(shim, args []string, files []*os.File) (*exec.Cmd, error) {
	n, size := 0, 0
	for _, f := range files {
		if f != nil {
			n++
		}
	}
	for _, a := range args {
		size += len(a) + 1
	}
	if n <= maxRequestFDs && size <= maxRequestArgs {
		ln := takeSpare(shim)
		for try := 0; try < 2; try++ {
			if ln == nil {
				var err error
				if ln, err = startLauncher(shim, nil); err != nil {
					return nil, err
				}
			}
			err := ln.request(args, files)
			if err == nil {
				return ln.cmd, nil
			}
			go ln.cmd.Wait()
			if !errors.Is(err, errLauncherGone) {
				return nil, err
			}
			// A spare that died while it waited (killed, say): once more,
			// with one of its own. One killed after the request was sent
			// fails this start (Start reports that no sandbox came).
			ln = nil
		}
		return nil, errLauncherGone
	}
	cmd := shimCommand(shim, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = files[0], files[1], files[2]
	cmd.ExtraFiles = files[3:]
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bwrap: starting launcher: %w", err)
	}
	return cmd, nil
}

// rootBinds are the SOURCE PATH pairs of the assembled root's -tree-bind
// entries (the host's /etc files), in the launcher's order.
func rootBinds(mounts []Mount) []string {
	if len(mounts) == 0 || !mounts[0].root {
		return nil
	}
	var pairs []string
	for _, e := range mounts[0].Entries {
		if e.Kind == TreeBind {
			pairs = append(pairs, e.Source, e.Path)
		}
	}
	return pairs
}
