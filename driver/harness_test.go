package driver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/helper/uuid"
	"github.com/hashicorp/nomad/plugins/base"
	"github.com/hashicorp/nomad/plugins/drivers"
	"github.com/hashicorp/nomad/plugins/drivers/testutils"
	"golang.org/x/sys/unix"

	"github.com/bwrap-r/bwrap-r/bwrap"
	"github.com/bwrap-r/bwrap-r/internal/nomadcgroups"
	"github.com/bwrap-r/bwrap-r/preflight"
)

func TestMain(m *testing.M) {
	// The driver re-executes this test binary as its launcher shim (which
	// bwrap's shim.c runs before this) and as the other hidden subcommands.
	if len(os.Args) > 1 && os.Args[1] == preflight.ProbeCommand {
		os.Exit(preflight.RunProbe(os.Args[2:]))
	}
	// As the Nomad client does at start: the nomad cgroup tree (on v1 a task
	// cannot join the cpuset partition before this).
	if os.Getuid() == 0 {
		if err := nomadcgroups.Init(); err != nil {
			fmt.Fprintln(os.Stderr, "nomad cgroups:", err)
		}
	}
	code := m.Run()
	// The harness never removes allocations as the client's GC does, so the
	// link guards of its tasks would stay mounted after the tests.
	if os.Getuid() == 0 {
		detachGuardsBelow(os.TempDir())
	}
	os.Exit(code)
}

// detachGuardsBelow detaches every nosymfollow mount below dir.
func detachGuardsBelow(dir string) {
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(info), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && strings.Contains(f[5], "nosymfollow") && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, unescapeMountinfo(f[4]))
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		_ = unix.Unmount(points[i], unix.MNT_DETACH)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("driver tests start sandboxes through the root launcher")
	}
	if _, err := findBwrap(""); err != nil {
		t.Skip(err)
	}
}

// newDriver returns a configured driver whose shim is this test binary.
func newDriver(t *testing.T, conf Config) *Driver {
	t.Helper()
	d := New(hclog.NewNullLogger())
	configure(t, d, conf)
	return d
}

// configure sets d up as the tests need it and applies conf.
func configure(t *testing.T, d *Driver, conf Config) {
	t.Helper()
	d.shim = []string{os.Args[0], bwrap.ShimCommand}
	if conf.StateDir == "" {
		conf.StateDir = stateDir(t)
	}
	if conf.Egress == nil {
		// Tests never probe the real metadata address.
		conf.Egress = &EgressConfig{}
	}
	if conf.TmpSizeMB == 0 {
		conf.TmpSizeMB = 64
	}
	var data []byte
	if err := base.MsgPackEncode(&data, &conf); err != nil {
		t.Fatal(err)
	}
	if err := d.SetConfig(&base.Config{PluginConfig: data}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.cancel)
}

// stateDir is a state dir whose bin/ task UIDs can reach, as in production
// (t.TempDir's parents are private).
func stateDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "bwrap-r-state-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func newHarness(t *testing.T, conf Config) (*testutils.DriverHarness, *Driver) {
	t.Helper()
	needRoot(t)
	d := newDriver(t, conf)
	return testutils.NewDriverHarness(t, d), d
}

// execConformance runs Nomad's exec conformance tests against d's task as
// Nomad's client reaches it. Given the driver itself, the conformance calls
// ExecTaskStreaming in-process and reads what it got as soon as that returns,
// while the last output may still be on its way to it (which lost "hello
// stdout" now and then); Nomad's plugin server instead sends the exit only
// once the output is through. execOrdered does what that server does.
func execConformance(t *testing.T, d *Driver, taskID string) {
	t.Helper()
	testutils.ExecTaskStreamingConformanceTests(t, testutils.NewDriverHarness(t, execOrdered{d}), taskID)
}

// execOrdered is the driver with exec streamed as Nomad's plugin server
// streams it (plugins/drivers/server.go): output through, then the exit.
type execOrdered struct{ *Driver }

func (e execOrdered) ExecTaskStreamingRaw(ctx context.Context, taskID string, command []string, tty bool, stream drivers.ExecTaskStream) error {
	opts, copied := drivers.StreamToExecOptions(ctx, command, tty, stream)
	res, err := e.ExecTaskStreaming(ctx, taskID, opts)
	opts.Stdout.Close()
	opts.Stderr.Close()
	if err != nil {
		return err
	}
	if err := <-copied; err != nil {
		return err
	}
	return stream.Send(drivers.NewExecStreamingResponseExit(res.ExitCode))
}

// newTask makes a task with an alloc dir and log FIFOs read by a real logmon.
func newTask(t *testing.T, h *testutils.DriverHarness, name string, tc TaskConfig) *drivers.TaskConfig {
	return newTaskWith(t, h, name, tc, nil)
}

// nextTaskUID hands out the tasks' dynamic users, above the UIDs tests name
// themselves (80001-80099) and in the default task_uid_range.
var nextTaskUID atomic.Uint32

func init() { nextTaskUID.Store(84000) }

// newTaskWith lets edit change the task before its alloc dir is made.
func newTaskWith(t *testing.T, h *testutils.DriverHarness, name string, tc TaskConfig, edit func(*drivers.TaskConfig)) *drivers.TaskConfig {
	t.Helper()
	task := &drivers.TaskConfig{
		ID:      uuid.Generate(),
		AllocID: uuid.Generate(),
		Name:    name,
		JobName: "job-" + name,
		// As Nomad's client: a dynamic workload user of the task's own.
		User: fmt.Sprintf("nomad-%d", nextTaskUID.Add(1)),
	}
	if edit != nil {
		edit(task)
	}
	if err := task.EncodeConcreteDriverConfig(&tc); err != nil {
		t.Fatal(err)
	}
	// Nomad's logmon only where the plugin leaves the logs to Nomad (the
	// driver's own answer: the harness's plugin server drops that field, as
	// Nomad's does; driver.Serve puts it back).
	caps, err := h.Impl().Capabilities()
	if err != nil {
		t.Fatal(err)
	}
	cleanup := h.MkAllocDir(task, !caps.DisableLogCollection)
	t.Cleanup(cleanup)
	// Nomad's client makes the path to alloc dirs traversable (0711); the
	// harness puts them in a private temp dir.
	if err := os.Chmod(filepath.Dir(task.AllocDir), 0o711); err != nil {
		t.Fatal(err)
	}
	return task
}

func sh(script string) TaskConfig {
	return TaskConfig{Command: "/bin/sh", Args: []string{"-c", script}}
}

func waitExit(t *testing.T, h *testutils.DriverHarness, id string, timeout time.Duration) *drivers.ExitResult {
	t.Helper()
	ch, err := h.WaitTask(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-ch:
		return res
	case <-time.After(timeout):
		t.Fatalf("task %s did not exit within %v", id, timeout)
	}
	return nil
}

// logs reads what the collector (or logmon) wrote for the task's stdout (or
// stderr), once it has stopped growing (both copy in their own time).
func logs(t *testing.T, task *drivers.TaskConfig, stream string) string {
	t.Helper()
	p := filepath.Join(task.TaskDir().LogDir, task.Name+"."+stream+".0")
	var last []byte
	stableSince := time.Now()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(p)
		if string(b) != string(last) {
			last, stableSince = b, time.Now()
		} else if len(b) > 0 && time.Since(stableSince) > 300*time.Millisecond {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return string(last)
}

func waitLog(t *testing.T, task *drivers.TaskConfig, stream, text string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(logs(t, task, stream), text) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never showed %q: %q", stream, text, logs(t, task, stream))
}

func start(t *testing.T, h *testutils.DriverHarness, task *drivers.TaskConfig) {
	t.Helper()
	if _, _, err := h.StartTask(task); err != nil {
		t.Fatal(err)
	}
	// Through the driver itself: the harness's client may be closed by then.
	t.Cleanup(func() { _ = h.Impl().DestroyTask(task.ID, true) })
}

func TestHarnessExitCodes(t *testing.T) {
	h, _ := newHarness(t, Config{})
	for _, c := range []struct {
		script       string
		code, signal int
	}{
		{"exit 0", 0, 0},
		{"exit 3", 3, 0},
		{"kill -KILL $$", 137, 9},
	} {
		task := newTask(t, h, "codes", sh(c.script))
		start(t, h, task)
		res := waitExit(t, h, task.ID, 20*time.Second)
		if res.ExitCode != c.code || res.Signal != c.signal || res.Err != nil {
			t.Errorf("%q: got %+v, want code %d signal %d", c.script, res, c.code, c.signal)
		}
		if res.Successful() != (c.code == 0) {
			t.Errorf("%q: Successful() = %v", c.script, res.Successful())
		}
	}
}

func TestHarnessOutputReachesFIFOs(t *testing.T) {
	h, _ := newHarness(t, Config{})
	task := newTask(t, h, "out", sh("echo to-stdout; echo to-stderr >&2"))
	start(t, h, task)
	waitExit(t, h, task.ID, 20*time.Second)
	if got := logs(t, task, "stdout"); got != "to-stdout\n" {
		t.Errorf("stdout log %q", got)
	}
	if got := logs(t, task, "stderr"); got != "to-stderr\n" {
		t.Errorf("stderr log %q", got)
	}
}

func TestHarnessEnvironmentIsExact(t *testing.T) {
	h, _ := newHarness(t, Config{})
	t.Setenv("BWRAP_R_AGENT_SECRET", "must-not-leak")
	task := newTask(t, h, "env", TaskConfig{Command: "/usr/bin/env"})
	task.Env["JOB_SETTING"] = "from-job"
	start(t, h, task)
	waitExit(t, h, task.ID, 20*time.Second)
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(logs(t, task, "stdout")), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
	want := map[string]string{}
	for k, v := range task.Env {
		want[k] = v
	}
	want["PATH"] = defaultPath
	want["HOME"] = "/local"
	want["TMPDIR"] = "/tmp"
	want["LANG"] = "C.UTF-8"
	want["R_LIBS_USER"] = "/local/R/library"
	// bwrap sets PWD along with --chdir.
	want["PWD"] = "/local"
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q inside, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected variable inside the sandbox: %s", k)
		}
	}
	if got["NOMAD_TASK_DIR"] != "/local" || got["JOB_SETTING"] != "from-job" {
		t.Errorf("Nomad's environment missing: %v", got)
	}
}

func TestHarnessStopHandlesSIGTERM(t *testing.T) {
	h, _ := newHarness(t, Config{})
	task := newTask(t, h, "graceful", sh(`trap "echo bye; exit 5" INT; echo up; while :; do sleep 0.05; done`))
	start(t, h, task)
	if err := h.WaitUntilStarted(task.ID, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitLog(t, task, "stdout", "up")
	ch, _ := h.WaitTask(context.Background(), task.ID)
	// kill_signal = "SIGINT": the task's own handler must run.
	if err := h.StopTask(task.ID, 10*time.Second, "SIGINT"); err != nil {
		t.Fatal(err)
	}
	res := <-ch
	if res.ExitCode != 5 {
		t.Fatalf("exit %+v, want 5 from the INT handler", res)
	}
	waitLog(t, task, "stdout", "bye")
}

// With no kill_signal the task gets SIGINT, as from Nomad's own drivers
// (their executor's default; the client's event says "Sent interrupt").
func TestHarnessStopDefaultsToSIGINT(t *testing.T) {
	h, _ := newHarness(t, Config{})
	task := newTask(t, h, "default-signal", sh(`trap "echo int; exit 6" INT; trap "echo term; exit 7" TERM; echo up; while :; do sleep 0.05; done`))
	start(t, h, task)
	waitLog(t, task, "stdout", "up")
	ch, _ := h.WaitTask(context.Background(), task.ID)
	if err := h.StopTask(task.ID, 10*time.Second, ""); err != nil {
		t.Fatal(err)
	}
	if res := <-ch; res.ExitCode != 6 {
		t.Fatalf("exit %+v, want 6 from the INT handler", res)
	}
}

func TestHarnessStopKillsAfterTimeout(t *testing.T) {
	h, _ := newHarness(t, Config{})
	task := newTask(t, h, "stubborn", sh(`trap "" TERM; echo up; while :; do sleep 0.05; done`))
	start(t, h, task)
	waitLog(t, task, "stdout", "up")
	begin := time.Now()
	if err := h.StopTask(task.ID, 2*time.Second, "SIGTERM"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took < 2*time.Second || took > 15*time.Second {
		t.Fatalf("stop took %v, want the 2s kill_timeout", took)
	}
	res := waitExit(t, h, task.ID, 10*time.Second)
	if res.Successful() {
		t.Fatalf("killed task reported success: %+v", res)
	}
	st, err := h.InspectTask(task.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != drivers.TaskStateExited {
		t.Fatalf("state %s after stop", st.State)
	}
}

func TestHarnessInspectAndDestroy(t *testing.T) {
	h, d := newHarness(t, Config{})
	task := newTask(t, h, "inspect", sh("sleep 60"))
	if _, _, err := h.StartTask(task); err != nil {
		t.Fatal(err)
	}
	st, err := h.InspectTask(task.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != drivers.TaskStateRunning || st.Name != "inspect" || st.StartedAt.IsZero() {
		t.Fatalf("inspect: %+v", st)
	}
	if err := h.DestroyTask(task.ID, false); err == nil {
		t.Fatal("destroying a running task without force succeeded")
	}
	th, _ := d.tasks.Get(task.ID)
	if err := h.DestroyTask(task.ID, true); err != nil {
		t.Fatal(err)
	}
	if th.sandbox.Init.Alive() || th.sandbox.Monitor.Alive() {
		t.Fatal("sandbox processes survived a forced destroy")
	}
	if _, err := os.Stat(th.state.StatusPath); !os.IsNotExist(err) {
		t.Fatalf("status file left behind: %v", err)
	}
	if _, err := h.InspectTask(task.ID); err == nil {
		t.Fatal("destroyed task still known")
	}
}

func TestHarnessCommandNotFound(t *testing.T) {
	h, d := newHarness(t, Config{})
	task := newTask(t, h, "missing", TaskConfig{Command: "no-such-program-xyz"})
	_, _, err := h.StartTask(task)
	if err == nil || !strings.Contains(err.Error(), "no-such-program-xyz") {
		t.Fatalf("want an error naming the command, got %v", err)
	}
	if len(d.tasks.tasks) != 0 {
		t.Fatal("a failed start left a task behind")
	}
}

func TestHarnessRefusesRootAndUnknownUsers(t *testing.T) {
	h, _ := newHarness(t, Config{})
	for _, u := range []string{"root", "no-such-user-xyz", "nomad-0"} {
		task := newTask(t, h, "user", sh("true"))
		task.User = u
		if _, _, err := h.StartTask(task); err == nil {
			t.Errorf("user %q was accepted", u)
		} else if !strings.Contains(err.Error(), u) {
			t.Errorf("user %q: error does not name it: %v", u, err)
		}
	}
}

func TestHarnessRecoverAfterPluginRestart(t *testing.T) {
	needRoot(t)
	state := stateDir(t)
	h1, _ := newHarness(t, Config{StateDir: state})
	task := newTask(t, h1, "survivor", sh(`while [ ! -e /local/go ]; do sleep 0.05; done; exit 9`))
	handle, _, err := h1.StartTask(task)
	if err != nil {
		t.Fatal(err)
	}
	// The plugin goes away; the task must not.
	h1.Kill()
	h2, _ := newHarness(t, Config{StateDir: state})
	if err := h2.RecoverTask(handle); err != nil {
		t.Fatal(err)
	}
	st, err := h2.InspectTask(task.ID)
	if err != nil || st.State != drivers.TaskStateRunning {
		t.Fatalf("recovered task: %+v %v", st, err)
	}
	if err := os.WriteFile(filepath.Join(task.TaskDir().LocalDir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	res := waitExit(t, h2, task.ID, 20*time.Second)
	if res.ExitCode != 9 || res.Err != nil {
		t.Fatalf("recovered exit %+v, want 9", res)
	}
	_ = h2.DestroyTask(task.ID, true)
}

// startAs starts a task as a Nomad dynamic workload user.
func startAs(t *testing.T, h *testutils.DriverHarness, name, user string, tc TaskConfig) *drivers.TaskConfig {
	t.Helper()
	task := newTask(t, h, name, tc)
	task.User = user
	start(t, h, task)
	return task
}

// A relative command runs from the task dir, as under Nomad's exec and
// raw_exec ("local/run.sh", the usual path of an artifact), and work_dir
// sets where it runs.
func TestHarnessRelativeCommandAndWorkDir(t *testing.T) {
	h, _ := newHarness(t, Config{})
	task := newTask(t, h, "relative", TaskConfig{Command: "local/run.sh", WorkDir: "alloc"})
	script := filepath.Join(task.TaskDir().LocalDir, "run.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"ran in $(pwd)\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	start(t, h, task)
	if res := waitExit(t, h, task.ID, 20*time.Second); res.ExitCode != 0 {
		t.Fatalf("exit %+v: %s", res, logs(t, task, "stderr"))
	}
	if out := logs(t, task, "stdout"); out != "ran in /alloc\n" {
		t.Errorf("stdout %q", out)
	}
	for _, dir := range []string{"../etc", "/local/../.."} {
		bad := newTask(t, h, "bad-dir", TaskConfig{Command: "/bin/true", WorkDir: dir})
		if _, _, err := h.StartTask(bad); err == nil || !strings.Contains(err.Error(), "work_dir") {
			t.Errorf("work_dir %q: %v", dir, err)
		}
	}
}

// A command in the task's dir that is a link is the task's: the plugin does
// not resolve it on the host as root (there its target means nothing), the
// sandbox does.
func TestHarnessCommandLinkResolvedInTheSandbox(t *testing.T) {
	h, _ := newHarness(t, Config{})
	task := newTask(t, h, "linked", TaskConfig{Command: "/local/run"})
	local := task.TaskDir().LocalDir
	if err := os.WriteFile(filepath.Join(local, "real.sh"), []byte("#!/bin/sh\necho linked ok\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// An absolute target as the sandbox sees it: no such path on the host.
	if err := os.Symlink("/local/real.sh", filepath.Join(local, "run")); err != nil {
		t.Fatal(err)
	}
	start(t, h, task)
	if res := waitExit(t, h, task.ID, 20*time.Second); res.ExitCode != 0 {
		t.Fatalf("exit %+v: %s", res, logs(t, task, "stderr"))
	}
	if out := logs(t, task, "stdout"); out != "linked ok\n" {
		t.Errorf("stdout %q", out)
	}
}
