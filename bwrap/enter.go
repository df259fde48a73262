package bwrap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// EnterCommand is the hidden subcommand that runs the enter launcher
// (enter.c). It never reaches Go's main: the launcher execs the command or
// exits.
const EnterCommand = "_enter"

// Descriptor numbers the enter launcher reads, after stdin, stdout, stderr.
const (
	enterEnvFD     = 3
	enterSeccompFD = 4
	enterConsoleFD = 5
)

// Enter describes a command to run inside a running sandbox, as the task's
// own user, in all of its namespaces and its cgroups: never on the host.
type Enter struct {
	// Launcher is the argv that starts the enter launcher
	// ({"/proc/self/exe", EnterCommand}).
	Launcher []string
	Cgroups  []string
	UID, GID uint32
	// Env is the command's whole environment. Only the command's own execve
	// sees it, after the launcher has become the task.
	Env map[string]string
	// Dir is the working directory inside the sandbox ("/" when empty).
	Dir string
	// Seccomp is the compiled filter the command runs under.
	Seccomp []byte
	Command []string
}

// EnterCmd builds the process that enters the sandbox; the caller sets its
// stdio, starts it (in a session of its own), and then calls CloseFiles. The
// launcher returns the command's exit status (a signal is raised again on
// the launcher).
func (s *Sandbox) EnterCmd(e Enter) (*exec.Cmd, error) {
	return s.enterCmd(e, false)
}

func (s *Sandbox) enterCmd(e Enter, tty bool) (*exec.Cmd, error) {
	if len(e.Command) == 0 || e.Command[0] == "" {
		return nil, errors.New("exec: no command")
	}
	if e.UID == 0 || e.GID == 0 {
		return nil, errors.New("exec: refusing to enter a sandbox as root")
	}
	if len(e.Seccomp) == 0 {
		return nil, errors.New("exec: no seccomp filter")
	}
	if len(e.Launcher) == 0 {
		return nil, errors.New("exec: no launcher")
	}
	dir := e.Dir
	if dir == "" {
		dir = "/"
	}
	if !path.IsAbs(dir) {
		return nil, fmt.Errorf("exec: working directory %q is not absolute", dir)
	}
	target, err := s.Command()
	if err != nil {
		// The sandbox's pid 1 shares every namespace with the command.
		if !s.Init.Alive() {
			return nil, errors.New("exec: the task is not running")
		}
		target = s.Init
	}
	var env bytes.Buffer
	for _, k := range slices.Sorted(maps.Keys(e.Env)) {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(e.Env[k], 0) >= 0 {
			return nil, fmt.Errorf("exec: invalid environment variable %q", k)
		}
		env.WriteString(k + "=" + e.Env[k])
		env.WriteByte(0)
	}
	envFile, err := memfd("bwrap-r-env", env.Bytes())
	if err != nil {
		return nil, err
	}
	filterFile, err := memfd("bwrap-r-seccomp", e.Seccomp)
	if err != nil {
		envFile.Close()
		return nil, err
	}
	args := append([]string{}, e.Launcher[1:]...)
	args = append(args,
		"-pid", strconv.Itoa(target.Pid), "-start", strconv.FormatUint(target.StartTime, 10),
		"-uid", strconv.FormatUint(uint64(e.UID), 10), "-gid", strconv.FormatUint(uint64(e.GID), 10),
		"-cwd", dir)
	for _, cg := range e.Cgroups {
		args = append(args, "-cgroup", cg)
	}
	if tty {
		args = append(args, "-tty")
	}
	for _, a := range e.Command {
		if strings.IndexByte(a, 0) >= 0 {
			envFile.Close()
			filterFile.Close()
			return nil, fmt.Errorf("exec: argument with a NUL byte: %q", a)
		}
	}
	args = append(args, "--")
	args = append(args, e.Command...)
	cmd := exec.Command(e.Launcher[0], args...)
	// The launcher runs as root: it gets no environment at all.
	cmd.Env = []string{}
	cmd.ExtraFiles = []*os.File{envFile, filterFile}
	return cmd, nil
}

// CloseFiles closes the descriptors EnterCmd made for the launcher; call it
// once the command has started (or failed to).
func CloseFiles(cmd *exec.Cmd) {
	for _, f := range cmd.ExtraFiles {
		if f != nil {
			f.Close()
		}
	}
}

// How long the launcher may take to hand over the terminal: it joins the
// sandbox and mounts one devpts instance, a few milliseconds.
const terminalTimeout = 30 * time.Second

// EnterTerminal starts the command on a terminal of its own made inside the
// sandbox: a pty of a devpts instance mounted in a mount namespace of the
// command's (a copy of the task's), so that `tty` names /dev/pts/N there and
// no terminal of the host's is in the sandbox. It returns the started
// launcher (the caller waits for it; the command leads a session of its own,
// so end it through its process group, or by closing the master) and the
// terminal's master, checked to be a pty's master: the one end that stays
// outside, which the caller relays the session to.
func (s *Sandbox) EnterTerminal(ctx context.Context, e Enter) (*exec.Cmd, *os.File, error) {
	cmd, err := s.enterCmd(e, true)
	if err != nil {
		return nil, nil, err
	}
	defer CloseFiles(cmd)
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("exec: console socket: %w", err)
	}
	ours := os.NewFile(uintptr(pair[0]), "console")
	defer ours.Close()
	cmd.ExtraFiles = append(cmd.ExtraFiles, os.NewFile(uintptr(pair[1]), "console-launcher"))
	// stdin and stdout stay /dev/null until the launcher puts the terminal
	// there; stderr tells what went wrong before it could.
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	// Now, not on return: with the launcher's end of the socket closed here,
	// a launcher that ends without sending shows as the socket's end.
	CloseFiles(cmd)
	master, recvErr := receiveTerminal(ctx, ours)
	if recvErr != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, nil, fmt.Errorf("exec: %s (%w)", strings.TrimPrefix(msg, "bwrap-r: "), recvErr)
		}
		return nil, nil, fmt.Errorf("exec: %w (launcher %v)", recvErr, cmd.ProcessState)
	}
	return cmd, master, nil
}

// receiveTerminal reads the one descriptor the launcher sends on sock and
// checks it is a pty's master.
func receiveTerminal(ctx context.Context, sock *os.File) (*os.File, error) {
	conn, err := net.FileConn(sock)
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	defer conn.Close()
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, errors.New("console socket: not a unix socket")
	}
	deadline := time.Now().Add(terminalTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = uc.SetReadDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = uc.SetReadDeadline(time.Now()) })
	defer stop()
	// Room for two descriptors: a message with more is refused, not trimmed.
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(2*4))
	n, oobn, flags, _, err := uc.ReadMsgUnix(buf, oob)
	var fds []int
	if oobn > 0 {
		msgs, perr := unix.ParseSocketControlMessage(oob[:oobn])
		if perr != nil {
			return nil, fmt.Errorf("console socket: %w", perr)
		}
		for _, m := range msgs {
			got, rerr := unix.ParseUnixRights(&m)
			if rerr == nil {
				fds = append(fds, got...)
			}
		}
	}
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	switch {
	case (err == nil || errors.Is(err, io.EOF)) && n == 0 && len(fds) == 0:
		return nil, errors.New("the launcher ended before it made a terminal")
	case err != nil:
		closeAll()
		return nil, fmt.Errorf("no terminal from the launcher: %w", err)
	case flags&unix.MSG_CTRUNC != 0 || len(fds) != 1:
		closeAll()
		return nil, fmt.Errorf("the launcher sent %d descriptors, want the terminal's master alone", len(fds))
	}
	if err := checkPtyMaster(fds[0]); err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	// Non-blocking, so that reads can have a deadline.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	return os.NewFile(uintptr(fds[0]), "ptmx"), nil
}

// checkPtyMaster refuses a descriptor that is not the master of a pty: a
// character device opened through a ptmx (5:2) that answers TIOCGPTN.
func checkPtyMaster(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("the terminal from the launcher: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 5 || unix.Minor(st.Rdev) != 2 {
		return fmt.Errorf("the terminal from the launcher is not a pty master (mode %#o, device %d:%d)", st.Mode&unix.S_IFMT, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	if _, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN); err != nil {
		return fmt.Errorf("the terminal from the launcher is not a pty master: TIOCGPTN: %w", err)
	}
	return nil
}
