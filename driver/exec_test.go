package driver

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/nomad/plugins/drivers/testutils"
)

func TestHarnessExecConformance(t *testing.T) {
	h, _ := newHarness(t, Config{})
	task := limitedTask(t, h, "execme", 128, sh("sleep 600"))
	task.User = "nomad-80031"
	start(t, h, task)
	if err := h.WaitUntilStarted(task.ID, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	testutils.ExecTaskStreamingConformanceTests(t, h, task.ID)
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
