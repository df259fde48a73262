package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/bwrap-r/bwrap-r/internal/jobcontrol"
)

// nomadIO runs the CLI against the agent with the given stdin and returns
// its stdout, stderr and exit code.
func (a *agent) nomadIO(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nomadBin, args...)
	cmd.Env = append(cleanEnv(), "NOMAD_ADDR="+a.addr)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return stdout.String(), stderr.String(), ee.ExitCode()
	case err != nil:
		t.Fatalf("nomad %s: %v", strings.Join(args, " "), err)
	}
	return stdout.String(), stderr.String(), 0
}

// execJob is a service task that writes /local/f and sleeps, with a
// template whose change_mode "script" runs a command in the sandbox when
// the variable nomad/jobs/<job> changes.
const execJob = `job "exec" {
  type = "service"
  group "g" {
` + runOnce + `    task "t" {
      driver = "bwrap-r"
      config {
        command = "/bin/sh"
        args    = ["-c", "id -u; echo mine > /local/f; exec sleep 300"]
      }
      template {
        destination = "local/conf"
        data        = "{{ with nomadVar \"nomad/jobs/exec\" }}{{ .v }}{{ end }}"
        change_mode = "script"
        change_script {
          command       = "/bin/sh"
          args          = ["-c", "echo \"$(id -u) $(cat /local/conf) $(grep NoNewPrivs /proc/self/status | tr -d '\\t')\" > /local/changed"]
          timeout       = "20s"
          fail_on_error = true
        }
      }
      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
`

// TestExec runs commands in a running task with nomad alloc exec: they run
// in its sandbox (its UID, files and pid namespace, no_new_privs, its
// cgroups), their exit code and stdin pass through. A template's change
// script (Nomad's ExecTask, the path script checks take) runs there too.
func TestExec(t *testing.T) {
	a := sharedAgent(t)
	const job = "exec"
	if out, err := a.nomad("var", "put", "-force", "nomad/jobs/"+job, "v=1"); err != nil {
		t.Fatalf("nomad var put: %v\n%s", err, out)
	}
	t.Cleanup(func() { a.nomad("var", "purge", "nomad/jobs/"+job) })
	a.runJob(t, writeJob(t, job, execJob), job)
	al := a.waitRunning(t, job, "t", time.Minute)
	var logs string
	eventually(30*time.Second, 250*time.Millisecond, func() bool {
		logs, _ = a.nomad("alloc", "logs", al.ID, "t")
		return strings.TrimSpace(logs) != ""
	})
	uid, err := strconv.Atoi(strings.TrimSpace(logs))
	if err != nil {
		t.Fatalf("the task printed %q, want its uid", logs)
	}
	if uid < 80000 || uid > 89999 {
		t.Errorf("the task runs as uid %d, want a dynamic workload uid", uid)
	}
	// /local/f exists once the task's shell has run.
	eventually(10*time.Second, 250*time.Millisecond, func() bool {
		_, _, code := a.nomadIO(t, "", "alloc", "exec", "-task", "t", al.ID, "/bin/sh", "-c", "test -s /local/f")
		return code == 0
	})

	t.Run("sandbox", func(t *testing.T) {
		stdout, stderr, code := a.nomadIO(t, "", "alloc", "exec", "-task", "t", al.ID,
			"/bin/sh", "-c", "id -u; cat /local/f; grep NoNewPrivs /proc/self/status; ls /proc")
		t.Logf("exit %d, stdout:\n%s\nstderr: %s", code, stdout, stderr)
		if code != 0 {
			t.Fatalf("nomad alloc exec: exit %d", code)
		}
		lines := strings.Split(stdout, "\n")
		if len(lines) < 3 {
			t.Fatalf("want id, file and NoNewPrivs lines, got %q", stdout)
		}
		if lines[0] != strconv.Itoa(uid) {
			t.Errorf("exec runs as uid %q, want the task's %d", lines[0], uid)
		}
		if lines[1] != "mine" {
			t.Errorf("cat /local/f: %q, want the task's file (mine)", lines[1])
		}
		if f := strings.Fields(lines[2]); len(f) != 2 || f[0] != "NoNewPrivs:" || f[1] != "1" {
			t.Errorf("%q, want NoNewPrivs: 1", lines[2])
		}
		var pids []string
		for _, l := range lines[3:] {
			for _, f := range strings.Fields(l) {
				if _, err := strconv.Atoi(f); err == nil {
					pids = append(pids, f)
				}
			}
		}
		t.Logf("pids in the exec's /proc: %v", pids)
		// The sandbox's pid 1, the task's sleep, the exec's sh and ls.
		hasInit := false
		for _, p := range pids {
			hasInit = hasInit || p == "1"
		}
		if !hasInit || len(pids) > 6 {
			t.Errorf("exec sees pids %v, want only the sandbox's few (1, sleep, sh, ls)", pids)
		}
	})

	t.Run("cgroups", func(t *testing.T) {
		stdout, stderr, code := a.nomadIO(t, "", "alloc", "exec", "-task", "t", al.ID, "/bin/cat", "/proc/self/cgroup")
		if code != 0 {
			t.Fatalf("nomad alloc exec cat /proc/self/cgroup: exit %d: %s", code, stderr)
		}
		sleep, err := processNamed(uid, "sleep")
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(sleep.pid) + "/cgroup")
		if err != nil {
			t.Fatal(err)
		}
		// No cgroup namespace: both show host paths. Compare the memory,
		// cpu and pids hierarchies (v1) or the unified one (v2).
		want := cgroupLines(string(b))
		got := cgroupLines(stdout)
		if len(want) == 0 {
			t.Fatalf("no cgroup lines for the task's sleep: %q", b)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("cgroup %s: exec in %q, the task in %q", k, got[k], v)
			}
		}
		t.Logf("exec and task share cgroups %v", want)
	})

	t.Run("exit-code", func(t *testing.T) {
		_, stderr, code := a.nomadIO(t, "", "alloc", "exec", "-task", "t", al.ID, "/bin/sh", "-c", "exit 7")
		if code != 7 {
			t.Errorf("nomad alloc exec sh -c 'exit 7': exit %d, want 7 (stderr %q)", code, stderr)
		}
	})

	t.Run("no-stdin-no-tty", func(t *testing.T) {
		stdout, stderr, code := a.nomadIO(t, "", "alloc", "exec", "-i=false", "-t=false", "-task", "t", al.ID, "/bin/sh", "-c", "cat /local/f; echo err >&2")
		if code != 0 || stdout != "mine\n" || stderr != "err\n" {
			t.Errorf("nomad alloc exec -i=false -t=false: exit %d, stdout %q, stderr %q; want 0, mine, err", code, stdout, stderr)
		}
	})

	t.Run("stdin", func(t *testing.T) {
		stdout, stderr, code := a.nomadIO(t, "hello\nworld\n", "alloc", "exec", "-i", "-t=false", "-task", "t", al.ID, "/bin/sh", "-c", "wc -l; id -u")
		if f := strings.Fields(stdout); code != 0 || len(f) != 2 || f[0] != "2" || f[1] != strconv.Itoa(uid) {
			t.Errorf("nomad alloc exec -i with 2 lines on stdin: exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
	})

	t.Run("tty", func(t *testing.T) {
		script, err := exec.LookPath("script")
		if err != nil {
			t.Skip("no script(1) to give nomad alloc exec -t a terminal")
		}
		// script(1) runs the CLI on a terminal of its own; -e: its exit
		// status is the CLI's.
		line := nomadBin + " alloc exec -t -task t " + al.ID + ` /bin/sh -c 'test -t 0 && test -t 1 && echo "tty ok"; id -u; exit 5'`
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, script, "-q", "-e", "-c", line, "/dev/null")
		cmd.Env = append(cleanEnv(), "NOMAD_ADDR="+a.addr, "TERM=dumb")
		out, err := cmd.CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("script: %v", err)
		}
		t.Logf("exit %d: %q", code, out)
		if code != 5 {
			t.Errorf("nomad alloc exec -t: exit %d, want 5", code)
		}
		if !strings.Contains(string(out), "tty ok") {
			t.Errorf("nomad alloc exec -t: the command's stdin and stdout are not a terminal")
		}
		if !strings.Contains(string(out), strconv.Itoa(uid)) {
			t.Errorf("nomad alloc exec -t: the command does not run as the task's uid %d", uid)
		}
	})

	// The command's terminal is one of the sandbox's: tty names a
	// /dev/pts/N that exists there, as the task's; a resize of the
	// operator's terminal reaches it; its exit code passes through.
	t.Run("tty-in-sandbox", func(t *testing.T) {
		c := a.execUnderPty(t, 20, 60, "alloc", "exec", "-i", "-t", "-task", "t", al.ID, "/bin/sh", "-c",
			`read x; t=$(tty); echo "tty=$t"; test -c "$t" && echo "node=$(stat -c %u "$t")"; echo "size=$(stty size)"; echo ready; read x; echo "size=$(stty size)"; exit 7`)
		c.write(t, "go\r")
		c.waitFor(t, "ready\r\n", "")
		if err := pty.Setsize(c.f, &pty.Winsize{Rows: 41, Cols: 123}); err != nil {
			t.Fatal(err)
		}
		// The CLI sends the new size on SIGWINCH, before what is typed next.
		time.Sleep(500 * time.Millisecond)
		c.write(t, "\r")
		code, out := c.wait(t)
		t.Logf("exit %d: %q", code, out)
		if code != 7 {
			t.Errorf("nomad alloc exec -t sh -c '... exit 7': exit %d, want 7", code)
		}
		if !regexp.MustCompile(`\r\ntty=/dev/pts/[0-9]+\r\nnode=` + strconv.Itoa(uid) + `\r\n`).MatchString(out) {
			t.Errorf("tty names no /dev/pts/N of the sandbox owned by the task (%d)", uid)
		}
		for _, want := range []string{"\r\nsize=20 60\r\n", "\r\nsize=41 123\r\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("the command's terminal lacks %q (the operator's window size)", want)
			}
		}
	})

	// Job control in an interactive shell: background jobs, jobs, kill %1,
	// ^C, ^Z and fg; the shell's exit code is the CLI's.
	t.Run("tty-job-control", func(t *testing.T) {
		c := a.execUnderPty(t, 24, 80, "alloc", "exec", "-i", "-t", "-task", "t", al.ID, "/bin/sh", "-i")
		jobcontrol.Run(t, jobcontrol.Terminal{Write: c.write, WaitFor: c.waitFor, EOL: "\r"})
		code, out := c.wait(t)
		t.Logf("exit %d:\n%s", code, out)
		if code != 3 {
			t.Errorf("nomad alloc exec -t /bin/sh, then exit 3: exit %d, want 3", code)
		}
		jobcontrol.Check(t, out)
	})

	t.Run("change-script", func(t *testing.T) {
		if out, err := a.nomad("var", "put", "-force", "nomad/jobs/"+job, "v=2"); err != nil {
			t.Fatalf("nomad var put: %v\n%s", err, out)
		}
		var out string
		var code int
		if !eventually(30*time.Second, 500*time.Millisecond, func() bool {
			out, _, code = a.nomadIO(t, "", "alloc", "exec", "-task", "t", al.ID, "/bin/cat", "/local/changed")
			return code == 0
		}) {
			var cur allocation
			a.get("/v1/allocation/"+al.ID, &cur)
			t.Fatalf("the change script wrote no /local/changed 30s after the variable changed:\n%s", cur.String())
		}
		t.Logf("/local/changed: %q", out)
		want := strconv.Itoa(uid) + " 2 NoNewPrivs:1"
		if strings.TrimSpace(out) != want {
			t.Errorf("change script wrote %q, want %q (the task's uid, the new value, no_new_privs)", out, want)
		}
	})
}

// cgroupLines maps a /proc/PID/cgroup's controllers to paths, for the
// hierarchies that hold a task (v1: memory, cpu, pids; v2: "").
func cgroupLines(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			switch c {
			case "memory", "cpu", "pids", "":
				m[c] = f[2]
			}
		}
	}
	return m
}

// cliTerm is the CLI run on a terminal of the test's own, and what that
// terminal showed.
type cliTerm struct {
	cmd  *exec.Cmd
	f    *os.File
	mu   sync.Mutex
	out  bytes.Buffer
	read chan struct{}
}

func (a *agent) execUnderPty(t *testing.T, rows, cols uint16, args ...string) *cliTerm {
	t.Helper()
	cmd := exec.Command(nomadBin, args...)
	cmd.Env = append(cleanEnv(), "NOMAD_ADDR="+a.addr, "TERM=dumb")
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: rows, Cols: cols})
	if err != nil {
		t.Fatalf("nomad %s under a pty: %v", strings.Join(args, " "), err)
	}
	c := &cliTerm{cmd: cmd, f: f, read: make(chan struct{})}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			c.mu.Lock()
			c.out.Write(buf[:n])
			c.mu.Unlock()
			if err != nil {
				close(c.read)
				return
			}
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		f.Close()
	})
	return c
}

func (c *cliTerm) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

func (c *cliTerm) write(t *testing.T, text string) {
	t.Helper()
	if _, err := c.f.Write([]byte(text)); err != nil {
		t.Fatal(err)
	}
}

// waitFor waits until the terminal has shown text; retype, when set, is
// typed again every second meanwhile (^C and ^Z flush what was typed ahead).
func (c *cliTerm) waitFor(t *testing.T, text, retype string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	next := time.Now()
	for time.Now().Before(deadline) {
		if strings.Contains(c.output(), text) {
			return
		}
		if retype != "" && !time.Now().Before(next) {
			c.write(t, retype)
			next = time.Now().Add(time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %q; the terminal showed %q", text, c.output())
}

// wait waits for the CLI (killed after a minute) and returns its exit code
// and what its terminal showed.
func (c *cliTerm) wait(t *testing.T) (int, string) {
	t.Helper()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		c.cmd.Process.Kill()
		<-done
		t.Errorf("the CLI did not end; the terminal showed %q", c.output())
	}
	select {
	case <-c.read:
	case <-time.After(2 * time.Second):
	}
	return c.cmd.ProcessState.ExitCode(), c.output()
}

// An agent run in an operator's terminal has it as its controlling terminal,
// and so has the plugin it starts. Nothing in a sandbox may reach it: not
// the task, not a command of `nomad alloc exec` with or without -t (which
// could read what the operator types and write to the screen).
func TestExecLeavesTheAgentsTerminal(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var mu sync.Mutex
	var seen bytes.Buffer
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			mu.Lock()
			seen.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	a := newAgentOpts(t, agentOpts{tty: tty})
	tty.Close()
	if err := a.waitDriver(true, time.Minute); err != nil {
		t.Fatal(err)
	}
	const job = "exec-agent-tty"
	probe := `if (echo "reached-by-$0" > /dev/tty) 2>/dev/null; then echo OPENED; else echo refused; fi`
	a.runJob(t, writeJob(t, job, fmt.Sprintf(`job %q {
  type = "service"
  group "g" {
`+runOnce+`    task "t" {
      driver = "bwrap-r"
      config {
        command = "/bin/sh"
        args    = ["-c", %q]
      }
      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
`, job, `sh -c '`+probe+`' task; exec sleep 300`)), job)
	al := a.waitRunning(t, job, "t", time.Minute)
	var logs string
	eventually(30*time.Second, 250*time.Millisecond, func() bool {
		logs, _ = a.nomad("alloc", "logs", al.ID, "t")
		return strings.TrimSpace(logs) != ""
	})
	if strings.TrimSpace(logs) != "refused" {
		t.Errorf("the task's own /dev/tty: %q, want refused", logs)
	}
	stdout, stderr, code := a.nomadIO(t, "", "alloc", "exec", "-i=false", "-t=false", "-task", "t", al.ID, "/bin/sh", "-c", probe, "exec")
	if strings.TrimSpace(stdout) != "refused" {
		t.Errorf("nomad alloc exec (no -t): /dev/tty %q (exit %d, %q), want refused", stdout, code, stderr)
	}
	// With -t, /dev/tty is the session's own terminal: what is written
	// there shows in the CLI's.
	c := a.execUnderPty(t, 24, 80, "alloc", "exec", "-i", "-t", "-task", "t", al.ID, "/bin/sh", "-c",
		`echo "reached-by-exec-t" > /dev/tty; echo "tty=$(tty)"`)
	_, out := c.wait(t)
	if !regexp.MustCompile(`reached-by-exec-t\r\ntty=/dev/pts/[0-9]+\r\n`).MatchString(out) {
		t.Errorf("nomad alloc exec -t: /dev/tty is not the session's own terminal: %q", out)
	}
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(seen.String(), "reached-by-") {
		t.Errorf("a command in the sandbox wrote to the agent's terminal: %q", seen.String())
	}
}
