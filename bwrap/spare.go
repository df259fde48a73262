package bwrap

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
// launch's Shim argv, and bwrap the launch's bwrap (Launch.Bwrap), or ""
// for a launch that runs no bwrap; prebuild, SOURCE PATH pairs, the
// assembled root's -tree-bind entries it copies ahead (shim_prebuild,
// shim.c) for a request that has the same.
//
// With the preloaded launcher (preload.c) the spare is bwrap itself, started
// with the launcher preloaded: a request then pays for no exec, no glibc
// start-up and no loading of bwrap's libraries.
func startLauncher(shim []string, bwrap string, prebuild []string) (*launcher, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("bwrap: launcher socket: %w", err)
	}
	theirs := os.NewFile(uintptr(fds[1]), "launcher-request")
	request := append([]string{"-request"}, prebuild...)
	var cmd *exec.Cmd
	if object := preloadFor(shim, bwrap); object != nil {
		cmd = shimCommand([]string{bwrap, ShimCommand}, request...)
		cmd.Env = []string{"LD_PRELOAD=/proc/self/fd/" + strconv.Itoa(preloadFD)}
		cmd.ExtraFiles = []*os.File{theirs, object}
	} else {
		cmd = shimCommand(shim, request...)
		cmd.ExtraFiles = []*os.File{theirs}
	}
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

func spareKey(shim []string, bwrap string) string {
	return strings.Join(shim, "\x00") + "\x00\x00" + bwrap
}

// takeSpare returns the idle launcher for shim and bwrap, if there is one.
func takeSpare(shim []string, bwrap string) *launcher {
	spares.Lock()
	defer spares.Unlock()
	key := spareKey(shim, bwrap)
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
func refillSpare(shim []string, bwrap string, prebuild []string) {
	key := spareKey(shim, bwrap)
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
		ln, err := startLauncher(shim, bwrap, prebuild)
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
// closed; for 0 to 2, /dev/null). It takes the spare launcher for shim and
// bwrap (startLauncher) if there is one.
func startShim(shim []string, bwrap string, args []string, files []*os.File) (*exec.Cmd, error) {
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
		ln := takeSpare(shim, bwrap)
		for try := 0; try < 2; try++ {
			if ln == nil {
				var err error
				if ln, err = startLauncher(shim, bwrap, nil); err != nil {
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
			// A spare that died while it waited (killed, say, or a
			// preloaded one that could not run): once more, with one of
			// its own, exec'd. One killed after the request was sent fails
			// this start (Start reports that no sandbox came).
			ln = nil
			bwrap = ""
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

// preloadFD is where a preloaded spare has the launcher object
// (SHIM_PRELOAD_FD; shim.go checks they agree).
const preloadFD = 4

// preloaded is the launcher object (preload.c) in a sealed memory file,
// made once: what every preloaded spare maps. nil in a build without it.
var preloaded = sync.OnceValue(func() *os.File {
	if len(preloadObject) == 0 {
		return nil
	}
	fd, err := unix.MemfdCreate("bwrap-r-launcher", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), "bwrap-r-launcher")
	if _, err := f.Write(preloadObject); err != nil {
		f.Close()
		return nil
	}
	// Sealed: no one holding it (this process included) changes what root
	// maps and runs in every spare.
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil
	}
	return f
})

// preloadStale: the build embedded a launcher object of other sources than
// its own (preload_embed.go), and uses none.
var preloadStale bool

// preloadOff keeps spares started from now on to this binary, exec'd.
var preloadOff atomic.Bool

// DisablePreload, with off, has the spares started from now on be this
// binary exec'd, as in a build without the preloaded launcher (for
// comparisons, and the tests of that path); an idle spare stays as it is.
func DisablePreload(off bool) { preloadOff.Store(off) }

// Preloaded reports whether spares started now for bwrap (a path) run it
// with the launcher preloaded (preload.c) rather than exec it.
func Preloaded(bwrap string) bool {
	return preloadFor([]string{"/proc/self/exe", ShimCommand}, bwrap) != nil
}

// preloadFor returns the launcher object for a spare of shim and bwrap, or
// nil when the spare is to be shim exec'd: the object is this binary's own
// shim, so only a launch whose Shim is this binary and the shim command
// alone (what the driver passes) may have it, and only one that runs bwrap.
func preloadFor(shim []string, bwrap string) *os.File {
	object := preloaded()
	if object == nil || preloadOff.Load() || bwrap == "" || !filepath.IsAbs(bwrap) || len(shim) != 2 || shim[1] != ShimCommand ||
		!loadsLikeThis(bwrap) {
		return nil
	}
	if shim[0] != "/proc/self/exe" {
		self, err1 := os.Stat("/proc/self/exe")
		named, err2 := os.Stat(shim[0])
		if err1 != nil || err2 != nil || !os.SameFile(self, named) {
			return nil
		}
	}
	return object
}

// loadsLikeThis reports whether the file at path is a dynamically linked
// program of this binary's loader, which honours LD_PRELOAD with an object
// of this binary's C library: anything else (a script, a static or musl
// bwrap) would run without the launcher, as root, and is exec'd instead.
// Remembered by the file's identity.
func loadsLikeThis(path string) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	key := fmt.Sprintf("%s\x00%d:%d:%d", path, st.Dev, st.Ino, st.Ctim.Nano())
	if v, ok := loaderOf.Load(key); ok {
		return v.(bool)
	}
	theirs, err := interpreter(path)
	own := ownInterpreter()
	same := err == nil && own != "" && own == theirs
	loaderOf.Store(key, same)
	return same
}

var loaderOf sync.Map

// ownInterpreter is this binary's ELF interpreter, "" if unknown.
var ownInterpreter = sync.OnceValue(func() string {
	own, _ := interpreter("/proc/self/exe")
	return own
})

// interpreter is the ELF program interpreter (the dynamic loader) path
// names, "" for none.
func interpreter(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(p.Open())
			if err != nil {
				return "", err
			}
			return strings.TrimRight(string(b), "\x00"), nil
		}
	}
	return "", nil
}
