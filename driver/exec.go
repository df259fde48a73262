package driver

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/creack/pty"
	"github.com/hashicorp/nomad/plugins/drivers"

	"github.com/bwrap-r/bwrap-r/bwrap"
)

// enter describes cmd run inside the task's sandbox, as the task.
func (d *Driver) enter(h *taskHandle, cmd []string) bwrap.Enter {
	if len(cmd) > 0 {
		cmd = append([]string{inTaskDir(cmd[0])}, cmd[1:]...)
	}
	return bwrap.Enter{
		Launcher: []string{d.shim[0], bwrap.EnterCommand},
		Cgroups:  h.state.Cgroups.Dirs(),
		UID:      h.state.UID,
		GID:      h.state.GID,
		Env:      h.state.Env,
		Dir:      cmp.Or(h.state.Dir, insideLocal),
		Seccomp:  d.seccomp,
		Command:  cmd,
	}
}

// enterCmd builds the process that runs cmd inside the task's sandbox,
// through the enter launcher, in a session of its own: nothing of it keeps
// the plugin's controlling terminal (an agent run in an operator's terminal
// has one), and its process group ends the command with it.
func (d *Driver) enterCmd(h *taskHandle, cmd []string) (*exec.Cmd, error) {
	c, err := h.sandbox.EnterCmd(d.enter(h, cmd))
	if err != nil {
		return nil, err
	}
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return c, nil
}

// startEnter starts an enter launcher and closes the parent's copies of the
// descriptors it was handed.
func startEnter(c *exec.Cmd) error {
	defer bwrap.CloseFiles(c)
	return c.Start()
}

// exitResult reads an ended process's status as Nomad reports it.
func exitResult(ps *os.ProcessState) *drivers.ExitResult {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return &drivers.ExitResult{ExitCode: 128 + int(ws.Signal()), Signal: int(ws.Signal())}
	}
	return &drivers.ExitResult{ExitCode: ps.ExitCode()}
}

func (d *Driver) ExecTask(taskID string, cmd []string, timeout time.Duration) (*drivers.ExecTaskResult, error) {
	h, ok := d.tasks.Get(taskID)
	if !ok {
		return nil, drivers.ErrTaskNotFound
	}
	c, err := d.enterCmd(h, cmd)
	if err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	c.WaitDelay = time.Second
	// The launcher forwards no signal: a timeout ends the command's whole
	// process group, in the sandbox too.
	if err := startEnter(c); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res, err := waitExec(ctx, c)
	if errors.Is(err, context.DeadlineExceeded) {
		// Killed at the timeout: report how it ended, with its output.
		res, err = exitResult(c.ProcessState), nil
	}
	if err != nil {
		return nil, err
	}
	return &drivers.ExecTaskResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitResult: res}, nil
}

func (d *Driver) ExecTaskStreaming(ctx context.Context, taskID string, opts *drivers.ExecOptions) (*drivers.ExitResult, error) {
	h, ok := d.tasks.Get(taskID)
	if !ok {
		return nil, drivers.ErrTaskNotFound
	}
	if len(opts.Command) == 0 {
		return nil, errors.New("exec: no command")
	}
	if opts.Tty {
		return d.execTTY(ctx, h, opts)
	}
	c, err := d.enterCmd(h, opts.Command)
	if err != nil {
		return nil, err
	}
	return execPipes(ctx, c, opts)
}

func execPipes(ctx context.Context, c *exec.Cmd, opts *drivers.ExecOptions) (*drivers.ExitResult, error) {
	c.Stdout, c.Stderr = opts.Stdout, opts.Stderr
	stdin, err := c.StdinPipe()
	if err != nil {
		return nil, err
	}
	// Output still held by a background child is dropped after this.
	c.WaitDelay = 2 * time.Second
	if err := startEnter(c); err != nil {
		return nil, err
	}
	go func() {
		_, _ = io.Copy(stdin, opts.Stdin)
		stdin.Close()
	}()
	return waitExec(ctx, c)
}

// execTTY runs the command on a terminal the launcher made inside the
// sandbox and relays the session to its master, which it checked is a pty's
// master: the plugin holds nothing else of the session's terminal, and the
// command nothing of any terminal outside.
func (d *Driver) execTTY(ctx context.Context, h *taskHandle, opts *drivers.ExecOptions) (*drivers.ExitResult, error) {
	c, ptmx, err := h.sandbox.EnterTerminal(ctx, d.enter(h, opts.Command))
	if err != nil {
		return nil, err
	}
	defer ptmx.Close()
	go func() { _, _ = io.Copy(ptmx, opts.Stdin) }()
	go func() {
		for {
			select {
			case size, ok := <-opts.ResizeCh:
				if !ok {
					return
				}
				// As Nomad's executor: the master's window size, which the
				// kernel tells the terminal's foreground job (SIGWINCH).
				_ = pty.Setsize(ptmx, &pty.Winsize{Rows: uint16(size.Height), Cols: uint16(size.Width)})
			case <-ctx.Done():
				return
			}
		}
	}()
	copied := make(chan struct{})
	go func() {
		_, _ = io.Copy(opts.Stdout, ptmx)
		close(copied)
	}()
	res, err := waitExec(ctx, c)
	// Like `docker exec -t`: only the lead process counts; drain what it
	// wrote, then stop reading (background children may hold the terminal).
	_ = ptmx.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	<-copied
	return res, err
}

func waitExec(ctx context.Context, c *exec.Cmd) (*drivers.ExitResult, error) {
	done := make(chan struct{})
	go func() { _ = c.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		<-done
		return nil, ctx.Err()
	}
	return exitResult(c.ProcessState), nil
}
