package driver

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/nomad/plugins/drivers"

	"github.com/bwrap-r/bwrap-r/internal/jobcontrol"
)

func TestHarnessExecConformance(t *testing.T) {
	h, d := newHarness(t, Config{})
	task := limitedTask(t, h, "execme", 128, sh("sleep 600"))
	task.User = "nomad-80031"
	start(t, h, task)
	if err := h.WaitUntilStarted(task.ID, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	execConformance(t, d, task.ID)
}

func TestHarnessExecRunsAsTheTaskAndSeesOnlyIt(t *testing.T) {
	h, d := newHarness(t, Config{})
	a := startAs(t, h, "a", "nomad-80041", sh("echo a > /local/mine; sleep 600"))
	b := startAs(t, h, "b", "nomad-80042", sh("sleep 600"))
	waitRunning := func(id string) {
		if err := h.WaitUntilStarted(id, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	waitRunning(a.ID)
	waitRunning(b.ID)
	tb, _ := d.tasks.Get(b.ID)
	bcmd, err := tb.sandbox.Command()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	res, err := h.ExecTask(a.ID, []string{"/bin/sh", "-c",
		"id -u; cat /local/mine; grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/self/status; ls -d /proc/[0-9]* | wc -l; kill -0 " + strconv.Itoa(bcmd.Pid) + " 2>/dev/null && echo REACHED-B; hostname; touch /usr/x 2>/dev/null && echo WROTE-USR; exit 3"}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	out := string(res.Stdout)
	if res.ExitResult.ExitCode != 3 {
		t.Fatalf("exit %+v: %s %s", res.ExitResult, out, res.Stderr)
	}
	for _, want := range []string{"80041\n", "a\n", "CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "NoNewPrivs:\t1", "\na\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("exec output lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{"REACHED-B", "WROTE-USR"} {
		if strings.Contains(out, bad) {
			t.Errorf("exec escaped: %s\n%s", bad, out)
		}
	}
}

// A command that outlives ExecTask's timeout is ended inside the sandbox,
// not only its nsenter on the host.
func TestHarnessExecTaskTimeoutEndsTheCommand(t *testing.T) {
	h, _ := newHarness(t, Config{})
	task := startAs(t, h, "timeout", "nomad-80043", sh("sleep 600"))
	if err := h.WaitUntilStarted(task.ID, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	res, err := h.ExecTask(task.ID, []string{"/bin/sh", "-c", "echo $$ > /local/exec.pid; exec sleep 60"}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitResult.Signal != int(syscall.SIGKILL) {
		t.Errorf("exit %+v, want killed at the timeout", res.ExitResult)
	}
	// Killed, it may stay a zombie a while: reparented to the host's init.
	res, err = h.ExecTask(task.ID, []string{"/bin/sh", "-c", `st=$(grep State /proc/$(cat /local/exec.pid)/status 2>/dev/null); case "$st" in *zombie*|"") echo ended ;; *) echo "STILL-RUNNING $st" ;; esac`}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if out := string(res.Stdout); out != "ended\n" {
		t.Errorf("the timed-out command: %q", out)
	}
}

// ttyExec is an `alloc exec -t` session through the driver: the exec stream
// as Nomad's client hands it over (stdin, output, resize events).
type ttyExec struct {
	stdin  *io.PipeWriter
	resize chan drivers.TerminalSize
	mu     sync.Mutex
	out    bytes.Buffer
	done   chan struct{}
	res    *drivers.ExitResult
	err    error
}

func (s *ttyExec) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Write(p)
}

func (s *ttyExec) Close() error { return nil }

func (s *ttyExec) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

func startTTYExec(t *testing.T, d *Driver, taskID string, rows, cols int, command ...string) *ttyExec {
	t.Helper()
	r, w := io.Pipe()
	s := &ttyExec{stdin: w, resize: make(chan drivers.TerminalSize, 4), done: make(chan struct{})}
	s.resize <- drivers.TerminalSize{Height: rows, Width: cols}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	go func() {
		defer close(s.done)
		defer cancel()
		s.res, s.err = d.ExecTaskStreaming(ctx, taskID, &drivers.ExecOptions{
			Command: command, Tty: true, Stdin: r, Stdout: s, Stderr: s, ResizeCh: s.resize,
		})
	}()
	t.Cleanup(func() { w.Close(); cancel(); <-s.done })
	return s
}

func (s *ttyExec) write(t *testing.T, text string) {
	t.Helper()
	if _, err := s.stdin.Write([]byte(text)); err != nil {
		t.Fatal(err)
	}
}

// waitFor waits until the session has shown text; retype, when set, is typed
// again every second meanwhile (^C and ^Z flush what was typed ahead).
func (s *ttyExec) waitFor(t *testing.T, text, retype string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	next := time.Now()
	for time.Now().Before(deadline) {
		if strings.Contains(s.output(), text) {
			return
		}
		select {
		case <-s.done:
			t.Fatalf("the session ended (%+v, %v) before it showed %q: %q", s.res, s.err, text, s.output())
		default:
		}
		if retype != "" && !time.Now().Before(next) {
			s.write(t, retype)
			next = time.Now().Add(time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %q; the session showed %q", text, s.output())
}

func (s *ttyExec) wait(t *testing.T) *drivers.ExitResult {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the session did not end: %q", s.output())
	}
	if s.err != nil {
		t.Fatalf("exec: %v; the session showed %q", s.err, s.output())
	}
	return s.res
}

// `alloc exec -t`: the command's terminal is a device of the sandbox (tty
// names it, it exists there as the task's), a resize from the exec stream
// reaches it, and its exit code passes through.
func TestHarnessExecTTYIsTheSandboxs(t *testing.T) {
	h, d := newHarness(t, Config{})
	task := startAs(t, h, "tty", "nomad-80044", sh("sleep 600"))
	if err := h.WaitUntilStarted(task.ID, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s := startTTYExec(t, d, task.ID, 20, 60, "/bin/sh", "-c",
		`read x; t=$(tty); echo "tty=$t"; test -c "$t" && echo "node=$(stat -c %u "$t")"; echo "size=$(stty size)"; echo ready; read x; echo "size=$(stty size)"; exit 7`)
	s.write(t, "go\n")
	s.waitFor(t, "ready\r\n", "")
	s.resize <- drivers.TerminalSize{Height: 41, Width: 123}
	// The resize is applied by the driver's relay: give it the moment.
	time.Sleep(200 * time.Millisecond)
	s.write(t, "\n")
	res := s.wait(t)
	out := s.output()
	t.Logf("exit %+v: %q", res, out)
	if res.ExitCode != 7 {
		t.Errorf("exit %+v, want 7", res)
	}
	if !regexp.MustCompile(`\r\ntty=/dev/pts/[0-9]+\r\nnode=80044\r\n`).MatchString(out) {
		t.Errorf("tty names no /dev/pts/N of the sandbox owned by the task (80044): %q", out)
	}
	for _, want := range []string{"\r\nsize=20 60\r\n", "\r\nsize=41 123\r\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("the session lacks %q (the exec stream's window size)", want)
		}
	}
}

// Job control in `alloc exec -t ... /bin/sh`: background jobs, jobs, kill
// %1, ^C, ^Z and fg, and the shell's own exit code.
func TestHarnessExecTTYJobControl(t *testing.T) {
	h, d := newHarness(t, Config{})
	task := startAs(t, h, "jobs", "nomad-80045", sh("sleep 600"))
	if err := h.WaitUntilStarted(task.ID, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s := startTTYExec(t, d, task.ID, 24, 80, "/bin/sh", "-i")
	jobcontrol.Run(t, jobcontrol.Terminal{Write: s.write, WaitFor: s.waitFor, EOL: "\n"})
	res := s.wait(t)
	out := s.output()
	t.Logf("exit %+v:\n%s", res, out)
	if res.ExitCode != 3 {
		t.Errorf("exit %+v, want the shell's 3", res)
	}
	jobcontrol.Check(t, out)
}

// The task cannot plant its own /dev/ptmx or /dev/pts (its /dev is
// read-only), and during an exec -t session its processes see no pty: the
// session's devpts instance is in the session's mount namespace alone.
func TestHarnessExecTTYTaskCannotPlantATerminal(t *testing.T) {
	h, d := newHarness(t, Config{})
	task := startAs(t, h, "plant", "nomad-80046", sh(`ln -sf /dev/null /dev/ptmx 2>/local/ptmx.err; mkdir /dev/pts/x 2>/local/pts.err; rmdir /dev/pts 2>>/local/pts.err; echo tried > /local/tried; exec sleep 600`))
	if err := h.WaitUntilStarted(task.ID, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s := startTTYExec(t, d, task.ID, 24, 80, "/bin/sh", "-c", `echo "tty=$(tty)"; echo ready; read x`)
	s.waitFor(t, "ready\r\n", "")
	// The task's own attempts may still be under way (a slow guest): wait
	// for their end.
	res, err := h.ExecTask(task.ID, []string{"/bin/sh", "-c", `while [ ! -e /local/tried ]; do sleep 0.05; done; cat /local/tried /local/ptmx.err /local/pts.err; echo "pts=[$(ls -A /dev/pts)] devpts=$(grep -c devpts /proc/1/mountinfo) ptmx=$(readlink /dev/ptmx)"`}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	out := string(res.Stdout)
	t.Logf("the task's view: %q", out)
	if !strings.HasPrefix(out, "tried\n") || strings.Count(out, "Read-only file system") != 3 {
		t.Errorf("the task changed its /dev (want three refusals, read-only): %q", out)
	}
	if !strings.Contains(out, "pts=[] devpts=0 ptmx=pts/ptmx\n") {
		t.Errorf("the task's /dev during an exec -t session: %q, want an empty /dev/pts and no devpts", out)
	}
	s.write(t, "\n")
	if res := s.wait(t); res.ExitCode != 0 || !regexp.MustCompile(`tty=/dev/pts/[0-9]+\r\n`).MatchString(s.output()) {
		t.Errorf("the session: %+v %q", res, s.output())
	}
}
