package bwrap

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Descriptor numbers the launcher gets after stdin, stdout and stderr: 3 for
// its own failure report (closed at its exec of bwrap), the others bwrap's.
const (
	infoFD    = 3
	statusFD  = 4
	argsFD    = 5
	seccompFD = 6
	// lastFD is the highest descriptor the shim keeps for bwrap.
	lastFD = seccompFD
)

// Launch is one sandbox to start.
type Launch struct {
	// Bwrap is the absolute path of the bwrap binary.
	Bwrap string
	// Shim is the argv that starts the launcher shim, e.g. {"/proc/self/exe",
	// ShimCommand}, ending with ShimCommand; the shim's flags and bwrap's argv
	// are appended (or sent to a spare started as Shim + "-request").
	Shim []string
	Spec *Spec
	// Stdin, Stdout and Stderr are the only descriptors besides bwrap's own
	// that reach the sandbox (bwrap passes every inherited descriptor on).
	Stdin, Stdout, Stderr *os.File
	// StatusPath is where bwrap's JSON status (and so the exit code) is kept.
	// It must lie where the task cannot write: a task must not forge its exit.
	StatusPath string
	// Cgroups are cgroup directories the shim joins before it drops to the
	// task's UID, so that nothing of the task ever runs outside them.
	Cgroups []string
	// NetNS is a network namespace file the shim joins first ("" keeps the
	// host's network).
	NetNS string
	// StageDir is an empty directory of root's that every task UID can
	// traverse (0711). The shim mounts on it, in a mount namespace of its
	// own, the root bwrap runs in: only the host paths bwrap binds from, and
	// a private tmpfs at StageDir where it binds each source root opened
	// (Mount.Beneath) and builds the trees, for bwrap to bind from. Needed
	// when a mount names a Beneath or is a Tree; without it bwrap runs in
	// the host's root and mount table.
	StageDir string
	// Seccomp is a compiled filter (struct sock_filter entries) bwrap loads
	// for the command; nil runs without one.
	Seccomp []byte
	// Ready, if set, is waited for once the launch is prepared, just before
	// the launcher starts: what must be settled before anything of the
	// command runs, and may take its time alongside the preparation (the
	// hand-over of the task's output to a collector). An error stops the
	// launch.
	Ready func() error
}

// Sandbox is a started (or reattached) bwrap sandbox.
type Sandbox struct {
	// Monitor is bwrap's own process, the launcher's pid after its exec.
	Monitor Proc
	// Init is the sandbox's pid 1 (bwrap's init) as the host sees it; the
	// command is its first child.
	Init       Proc
	StatusPath string

	done   chan struct{}
	result ExitStatus
	once   sync.Once

	// cmdFD is a pidfd on the task's command (-1 until found), for its own
	// wait status; finished: the sandbox has ended, take no new one.
	cmdMu    sync.Mutex
	cmdFD    int
	finished bool

	// heldNS are the mount namespaces of bwrap's monitor (the launch's root)
	// and of the sandbox, held open until the sandbox has ended: the last
	// process of a mount namespace tears its mounts down as it exits, and
	// waits there for an RCU grace period, which held up the exit's report.
	// Closed off that path, once it is reported; released is closed then.
	heldNS   []int
	released chan struct{}
}

// ExitStatus is how a sandbox ended.
type ExitStatus struct {
	// Code is the command's exit code; 128+N when killed by signal N.
	Code int
	// Signal is N when the command was killed by signal N, else 0.
	Signal int
	// Err is set when bwrap itself failed (setup or exec of the command), or
	// when the status could not be read: then Code means nothing.
	Err error
}

// Start launches the sandbox through the shim and returns once bwrap reported
// the sandbox's pid 1, or with an error if it never did.
func Start(l Launch) (*Sandbox, error) {
	if l.Spec == nil || len(l.Shim) < 2 || l.Bwrap == "" || l.StatusPath == "" {
		return nil, errors.New("bwrap: incomplete launch")
	}
	if l.Shim[len(l.Shim)-1] != ShimCommand {
		return nil, fmt.Errorf("bwrap: launcher argv %q does not end with %s", l.Shim, ShimCommand)
	}
	// The next launch's spare, once this one is done with its own, with
	// this launch's copies of host files made ahead for it.
	var prebuild []string
	defer func() { refillSpare(l.Shim, l.Bwrap, prebuild) }()
	// The status file is made alongside the steps below: creating a file
	// on the state dir's file system (ext4) took 0.26 ms of every start.
	type made struct {
		f   *os.File
		err error
	}
	statusMade := make(chan made, 1)
	go func() {
		// O_EXCL: an existing file could hold a stale or planted exit code.
		f, err := os.OpenFile(l.StatusPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
		statusMade <- made{f, err}
	}()
	statusTaken := false
	defer func() {
		if !statusTaken {
			// A return before it was needed: it was made for nothing.
			// Waited for here, so that it is gone before a retry makes it.
			if m := <-statusMade; m.err == nil {
				m.f.Close()
				os.Remove(l.StatusPath)
			}
		}
	}()
	spec := *l.Spec
	// No --info-fd: bwrap's monitor writes it before it lets pid 1 go on, so
	// with a pipe whose reader (this process) had died, SIGPIPE killed the
	// monitor there and pid 1 waited for it for ever. The same child-pid
	// goes to the status file, a file, right after (waitChildPid).
	spec.InfoFD, spec.StatusFD = 0, statusFD
	var seccompFile *os.File
	if l.Seccomp != nil {
		spec.SeccompFD = seccompFD
		f, err := memfd("bwrap-seccomp", l.Seccomp)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		seccompFile = f
	}
	var rootArgs []string
	var templateFile *os.File
	bwrapPath := l.Bwrap
	sources, staged, opened, err := openSources(spec.Mounts, lastFD+1, l.StageDir)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, f := range sources {
			f.Close()
		}
	}()
	if l.StageDir != "" {
		fdOf := map[int]int{}
		for i, f := range opened {
			fdOf[i] = lastFD + 1 + slices.Index(sources, f)
		}
		spec.Mounts, staged, opened = assembleRoot(spec.Mounts, fdOf, staged, opened)
		spec.Mounts, rootArgs, bwrapPath = launchRoot(spec.Mounts, l.Bwrap)
		prebuild = rootBinds(spec.Mounts)
		if templateFile, err = templateNS(l.Shim, l.StageDir); err != nil {
			return nil, err
		}
	}
	var trees []string
	var dataFiles []*os.File
	defer func() {
		for _, f := range dataFiles {
			f.Close()
		}
	}()
	if l.StageDir != "" {
		// The data entries' descriptors come after the bind sources and
		// the template namespace (ExtraFiles below).
		dataFD := lastFD + len(sources) + 1
		if templateFile != nil {
			dataFD++
		}
		var data [][]byte
		trees, data, err = treeArgs(spec.Mounts, l.StageDir, staged, stagedKind(spec.Mounts, opened), dataFD)
		if err != nil {
			return nil, err
		}
		for _, d := range data {
			f, err := memfd("bwrap-tree-data", d)
			if err != nil {
				return nil, err
			}
			dataFiles = append(dataFiles, f)
		}
	}
	opts, command, err := spec.split(staged)
	if err != nil {
		return nil, err
	}
	m := <-statusMade
	statusTaken = true
	if m.err != nil {
		return nil, fmt.Errorf("bwrap: status file: %w", m.err)
	}
	status := m.f
	defer status.Close()
	// Watched before the launch, so that no write of bwrap's is missed.
	watch, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("bwrap: watching the status file: %w", err)
	}
	// Closed off the start's path: the last close of an inotify instance
	// waits for an SRCU grace period in the kernel (1 to 13 ms here), which
	// held up Start's return, and StartTask's, every time.
	defer func() { go unix.Close(watch) }()
	if _, err := unix.InotifyAddWatch(watch, l.StatusPath, unix.IN_MODIFY); err != nil {
		return nil, fmt.Errorf("bwrap: watching the status file: %w", err)
	}
	// The launcher's own failures come on this pipe; it is closed when the
	// launcher execs bwrap.
	infoR, infoW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer infoR.Close()
	// bwrap reads its options from a memfd (--args): on its command line the
	// task's environment (tokens, passwords) would be readable by every user.
	// The command and its arguments stay visible, as for any process.
	argsFile, err := argsMemfd(opts)
	if err != nil {
		infoW.Close()
		return nil, err
	}
	defer argsFile.Close()

	args := []string{"-uid", strconv.FormatUint(uint64(spec.UID), 10),
		"-gid", strconv.FormatUint(uint64(spec.GID), 10)}
	for _, cg := range l.Cgroups {
		args = append(args, "-cgroup", cg)
	}
	if l.NetNS != "" {
		args = append(args, "-netns", l.NetNS)
	}
	if l.StageDir != "" {
		args = append(args, "-stage", l.StageDir)
	}
	if len(sources) > 0 {
		args = append(args, "-fds", strconv.Itoa(lastFD+len(sources)))
	}
	if templateFile != nil {
		args = append(args, "-template", strconv.Itoa(lastFD+len(sources)+1))
	}
	args = append(args, rootArgs...)
	args = append(args, trees...)
	args = append(args, "--", bwrapPath, "--args", strconv.Itoa(argsFD))
	args = append(args, command...)
	files := append([]*os.File{l.Stdin, l.Stdout, l.Stderr, infoW, status, argsFile, seccompFile}, sources...)
	if templateFile != nil {
		files = append(files, templateFile)
	}
	files = append(files, dataFiles...)
	if l.Ready != nil {
		if err := l.Ready(); err != nil {
			infoW.Close()
			os.Remove(l.StatusPath)
			return nil, err
		}
	}
	cmd, err := startShim(l.Shim, l.Bwrap, args, files)
	if err != nil {
		infoW.Close()
		os.Remove(l.StatusPath)
		return nil, err
	}
	infoW.Close()

	s := &Sandbox{StatusPath: l.StatusPath, done: make(chan struct{}), released: make(chan struct{}), cmdFD: -1}
	s.Monitor, err = ProcOf(cmd.Process.Pid)
	if err != nil {
		s.Monitor = Proc{Pid: cmd.Process.Pid}
	}
	initPid, infoErr := 0, readShimError(infoR)
	if infoErr == nil {
		initPid, infoErr = waitChildPid(l.StatusPath, watch, cmd.Process.Pid)
	}
	if infoErr != nil {
		// bwrap never got as far as a sandbox: collect its exit and report.
		werr := cmd.Wait()
		os.Remove(l.StatusPath)
		return nil, fmt.Errorf("bwrap: sandbox did not start (%v): %v", werr, infoErr)
	}
	s.Init, err = ProcOf(initPid)
	if err != nil {
		// pid 1 already gone: the command failed at once; Wait reports it.
		s.Init = Proc{Pid: initPid}
	}
	// The monitor is this process's child, so its pid is not reused before
	// the wait; pid 1's could be, if it is already gone, and then some other
	// namespace is held for a while, which is harmless.
	for _, pid := range []int{cmd.Process.Pid, initPid} {
		if fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			s.heldNS = append(s.heldNS, fd)
		}
	}
	go s.watchCommand()
	go func() {
		err := waitChild(cmd.Process.Pid)
		// Reaped here, not by os/exec: its handle (a pidfd) is let go.
		_ = cmd.Process.Release()
		s.finish(err)
	}()
	return s, nil
}

// stagedKind tells what a later mount's source is, for its mount point in a
// tree: the descriptor root opened when it is bound by descriptor (none for
// an optional source that is missing), else its path.
func stagedKind(mounts []Mount, opened map[int]*os.File) sourceKind {
	return func(j int) (dir, skip bool) {
		if !mounts[j].byDescriptor() {
			return pathKind(mounts[j])
		}
		f := opened[j]
		if f == nil {
			return false, true
		}
		fi, err := f.Stat()
		return err == nil && fi.IsDir(), false
	}
}

// argsMemfd returns a memory file holding argv, NUL-separated, as
// bwrap's --args wants it.
func argsMemfd(argv []string) (*os.File, error) {
	var buf bytes.Buffer
	for _, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, fmt.Errorf("bwrap: argument with a NUL byte: %q", a)
		}
		buf.WriteString(a)
		buf.WriteByte(0)
	}
	return memfd("bwrap-args", buf.Bytes())
}

// memfd returns a memory file holding data, read from its start.
func memfd(name string, data []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("bwrap: memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// readShimError reads what the launcher reports on its descriptor 3 until
// it closes (at its exec of bwrap, or its exit): nothing, or
// {"shim-error": "..."}.
func readShimError(r io.Reader) error {
	b, err := io.ReadAll(io.LimitReader(r, 1<<16))
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	var info struct {
		ShimError string `json:"shim-error"`
	}
	if err := json.Unmarshal(b, &info); err != nil || info.ShimError == "" {
		return fmt.Errorf("launcher said %q", b)
	}
	return errors.New(info.ShimError)
}

// waitChildPid waits for the first line of bwrap's status file,
// {"child-pid": N, ...}, which its monitor writes once the sandbox's pid 1
// exists, and returns N. watch is an inotify descriptor watching the file
// for writes; monitor is the launcher's pid (bwrap after its exec): if it
// exits first, the sandbox never started.
func waitChildPid(path string, watch, monitor int) (int, error) {
	exited, err := unix.PidfdOpen(monitor, 0)
	if err != nil {
		return 0, fmt.Errorf("bwrap's monitor: %w", err)
	}
	defer unix.Close(exited)
	drain := make([]byte, 4096)
	for {
		if pid, ok, err := readChildPidLine(path); ok || err != nil {
			return pid, err
		}
		fds := []unix.PollFd{{Fd: int32(watch), Events: unix.POLLIN}, {Fd: int32(exited), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil && err != unix.EINTR {
			return 0, err
		}
		if fds[1].Revents != 0 {
			if pid, ok, err := readChildPidLine(path); ok || err != nil {
				return pid, err
			}
			return 0, errors.New("bwrap reported no sandbox")
		}
		for {
			if _, err := unix.Read(watch, drain); err != nil {
				break
			}
		}
	}
}

// readChildPidLine reads the child-pid from the status file's first line,
// once that line is whole.
func readChildPidLine(path string) (int, bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false, err
	}
	line, _, whole := bytes.Cut(b, []byte("\n"))
	if !whole {
		return 0, false, nil
	}
	var info struct {
		ChildPid int `json:"child-pid"`
	}
	if err := json.Unmarshal(line, &info); err != nil || info.ChildPid <= 0 {
		return 0, false, fmt.Errorf("bwrap status without child-pid: %q", line)
	}
	return info.ChildPid, true, nil
}

// Reattach picks up a sandbox started by an earlier process (a plugin that
// restarted): it waits for the monitor without being its parent, and reads the
// exit code from the status file.
func Reattach(monitor, init Proc, statusPath string) *Sandbox {
	s := &Sandbox{Monitor: monitor, Init: init, StatusPath: statusPath, done: make(chan struct{}), released: make(chan struct{}), cmdFD: -1}
	go s.watchCommand()
	go func() {
		s.finish(monitor.waitExit())
	}()
	return s
}

// finish runs once the monitor has exited: it reads the exit status and kills
// what is left in the sandbox (pid 1 waits for background children forever).
func (s *Sandbox) finish(waitErr error) {
	s.once.Do(func() {
		killed := s.Init.Signal(syscall.SIGKILL) == nil
		// Read while pid 1 is being torn down: the monitor wrote the status
		// before it exited, and the command has exited too.
		s.result = s.commandExit(ReadStatus(s.StatusPath))
		if killed {
			_ = s.Init.waitExit()
		}
		// waitErr is a failure to wait at all, never the monitor's exit.
		if s.result.Err != nil && waitErr != nil {
			s.result.Err = fmt.Errorf("%v (%v)", s.result.Err, waitErr)
		}
		close(s.done)
		go func() {
			for _, fd := range s.heldNS {
				unix.Close(fd)
			}
			close(s.released)
		}()
	})
}

// Released waits, once the sandbox has ended, until its mounts are gone
// from every namespace this process held: a volume bound into it is then
// free for its plugin to unmount and detach.
func (s *Sandbox) Released() {
	<-s.done
	<-s.released
}

// ReadStatus reads bwrap's --json-status-fd file. bwrap writes the exit code
// only when the command ran and exited; its absence means bwrap failed.
func ReadStatus(path string) ExitStatus {
	f, err := os.Open(path)
	if err != nil {
		return ExitStatus{Code: -1, Err: fmt.Errorf("reading sandbox status: %w", err)}
	}
	defer f.Close()
	dec := json.NewDecoder(bufio.NewReader(io.LimitReader(f, 1<<20)))
	for {
		var line struct {
			ExitCode *int `json:"exit-code"`
		}
		if err := dec.Decode(&line); err != nil {
			break
		}
		if line.ExitCode != nil {
			st := ExitStatus{Code: *line.ExitCode}
			if st.Code > 128 && st.Code <= 128+64 {
				st.Signal = st.Code - 128
			}
			return st
		}
	}
	return ExitStatus{Code: -1, Err: errors.New("the sandbox failed before its command ran (bwrap reported no exit code; see the task's stderr)")}
}

// Done is closed when the sandbox has ended and Status is final.
func (s *Sandbox) Done() <-chan struct{} { return s.done }

// Status is the exit status; valid after Done is closed.
func (s *Sandbox) Status() ExitStatus {
	<-s.done
	return s.result
}

// Wait blocks until the sandbox ends or the timeout passes (<0: no timeout),
// and reports whether it ended.
func (s *Sandbox) Wait(timeout time.Duration) bool {
	if timeout < 0 {
		<-s.done
		return true
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-s.done:
		return true
	case <-t.C:
		return false
	}
}

// Command returns the task's command process: the first child of the
// sandbox's pid 1. Signals for the task go there, since bwrap's pid 1 ignores
// them.
func (s *Sandbox) Command() (Proc, error) {
	// Right after start, pid 1 may not have forked the command yet.
	for try := 0; try < 50; try++ {
		if !s.Init.Alive() {
			return Proc{}, os.ErrProcessDone
		}
		kids, err := s.Init.children()
		if err != nil {
			return Proc{}, err
		}
		for _, pid := range kids {
			st, err := readStat(pid)
			if err == nil && st.ppid == s.Init.Pid {
				return Proc{Pid: pid, StartTime: st.startTime}, nil
			}
		}
		select {
		case <-s.done:
			return Proc{}, os.ErrProcessDone
		case <-time.After(20 * time.Millisecond):
		}
	}
	return Proc{}, os.ErrProcessDone
}

// Signal sends sig to the task's command.
func (s *Sandbox) Signal(sig syscall.Signal) error {
	if sig == syscall.SIGKILL {
		return s.Kill()
	}
	p, err := s.Command()
	if err != nil {
		return err
	}
	return p.Signal(sig)
}

// Kill ends the whole sandbox: SIGKILL to its pid 1 ends its pid namespace.
func (s *Sandbox) Kill() error {
	err := s.Init.Signal(syscall.SIGKILL)
	if errors.Is(err, os.ErrProcessDone) {
		// pid 1 is gone, so the monitor is exiting and will write the status.
		return nil
	}
	return err
}

// Stop sends sig to the command, waits up to timeout for the sandbox to end,
// then kills it. It returns once the sandbox has ended.
func (s *Sandbox) Stop(sig syscall.Signal, timeout time.Duration) error {
	if err := s.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	if s.Wait(timeout) {
		return nil
	}
	if err := s.Kill(); err != nil {
		return err
	}
	s.Wait(-1)
	return nil
}

// Version runs `bwrap --version` ("bubblewrap 0.8.0") and returns "0.8.0";
// an error when path is not bubblewrap.
func Version(path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version failed: %v", path, err)
	}
	f := strings.Fields(string(out))
	if len(f) < 2 || f[0] != "bubblewrap" {
		return "", fmt.Errorf("%s is not bubblewrap: %q", path, strings.TrimSpace(string(out)))
	}
	return f[1], nil
}
