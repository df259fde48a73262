package driver

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/nomad/plugins/drivers"

	"github.com/bwrap-r/bwrap-r/bwrap"
)

// Five tasks outlive their driver: a new driver recovers each; some are
// stopped through it (kill_signal and kill_timeout still honoured), others
// exited on their own while no driver ran, and every exit code is exact.
func TestHarnessRecoverFiveTasks(t *testing.T) {
	needRoot(t)
	state := stateDir(t)
	h1, _ := newHarness(t, Config{StateDir: state})
	type job struct {
		task   *drivers.TaskConfig
		handle *drivers.TaskHandle
		code   int
	}
	var jobs []*job
	for i := 0; i < 5; i++ {
		code := 10 + i
		// Tasks 0-2 wait for a go file, then exit with their code; 3 and 4
		// run until stopped and exit with their code from a TERM handler.
		script := `while [ ! -e /local/go ]; do sleep 0.05; done; exit ` + strconv.Itoa(code)
		if i >= 3 {
			script = `trap "exit ` + strconv.Itoa(code) + `" TERM; : >/local/ready; while :; do sleep 0.05; done`
		}
		task := newTask(t, h1, "five"+strconv.Itoa(i), sh(script))
		handle, _, err := h1.StartTask(task)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, &job{task: task, handle: handle, code: code})
	}
	h1.Kill()

	// While no driver runs, tasks 0-2 exit.
	for _, j := range jobs[:3] {
		if err := os.WriteFile(filepath.Join(j.task.TaskDir().LocalDir, "go"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, j := range jobs[:3] {
		var st TaskState
		if err := j.handle.GetDriverState(&st); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for st.Monitor.Alive() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if st.Monitor.Alive() {
			t.Fatalf("%s did not exit", j.task.Name)
		}
	}

	h2, _ := newHarness(t, Config{StateDir: state})
	for _, j := range jobs {
		if err := h2.RecoverTask(j.handle); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h2.Impl().DestroyTask(j.task.ID, true) })
	}
	for _, j := range jobs[3:] {
		// The TERM handler must be in place before the stop, however slow
		// the machine is to start five shells.
		ready := filepath.Join(j.task.TaskDir().LocalDir, "ready")
		deadline := time.Now().Add(20 * time.Second)
		for _, err := os.Stat(ready); err != nil; _, err = os.Stat(ready) {
			if time.Now().After(deadline) {
				t.Fatalf("%s never installed its TERM handler", j.task.Name)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := h2.StopTask(j.task.ID, 5*time.Second, "SIGTERM"); err != nil {
			t.Fatal(err)
		}
	}
	for _, j := range jobs {
		res := waitExit(t, h2, j.task.ID, 20*time.Second)
		if res.ExitCode != j.code || res.Err != nil {
			t.Errorf("%s: exit %+v, want %d", j.task.Name, res, j.code)
		}
	}
}

// After a restart, a handle whose pid now names another process (its start
// time differs) is never signalled.
func TestHarnessRecoverReusedPid(t *testing.T) {
	needRoot(t)
	h, _ := newHarness(t, Config{})
	bystander := newTaskWith(t, h, "bystander", sh("true"), nil)
	victim := exec.Command("sleep", "30")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	defer victim.Process.Kill()
	p, err := bwrap.ProcOf(victim.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	stale := bwrap.Proc{Pid: p.Pid, StartTime: p.StartTime + 1}
	handle := drivers.NewTaskHandle(taskHandleVersion)
	handle.Config = bystander
	handle.State = drivers.TaskStateRunning
	if err := handle.SetDriverState(&TaskState{
		TaskConfig: bystander, Monitor: stale, Init: stale,
		StatusPath: filepath.Join(stateDir(t), "gone.status"), UID: 65534, GID: 65534,
	}); err != nil {
		t.Fatal(err)
	}
	if err := h.RecoverTask(handle); err != nil {
		t.Fatal(err)
	}
	_ = h.SignalTask(bystander.ID, "SIGKILL")
	_ = h.StopTask(bystander.ID, time.Second, "SIGKILL")
	_ = h.DestroyTask(bystander.ID, true)
	time.Sleep(100 * time.Millisecond)
	if err := victim.Process.Signal(syscall.Signal(0)); err != nil || !p.Alive() {
		t.Fatal("a process that merely reused the pid was killed")
	}
}
