package bwrap

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"slices"
	"strconv"
	"strings"
)

// EnterCommand is the hidden subcommand that runs the enter launcher
// (enter.c). It never reaches Go's main: the launcher execs the command or
// exits.
const EnterCommand = "_enter"

// Descriptor numbers the enter launcher reads, after stdin, stdout, stderr.
const (
	enterEnvFD     = 3
	enterSeccompFD = 4
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
	// Tty makes the command the leader of a session of its own inside the
	// sandbox, with its stdin (a terminal) as the controlling terminal.
	Tty     bool
	Command []string
}

// EnterCmd builds the process that enters the sandbox; the caller sets its
// stdio, starts it, and then calls CloseFiles. The launcher returns the
// command's exit status (a signal is raised again on the launcher).
func (s *Sandbox) EnterCmd(e Enter) (*exec.Cmd, error) {
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
	if e.Tty {
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
