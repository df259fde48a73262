package driver

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/nomad/plugins/drivers"
	"github.com/hashicorp/nomad/plugins/drivers/proto"
	"google.golang.org/grpc"

	"github.com/bwrap-r/bwrap-r/logcollect"
)

// collectorPid is the pid of the collector serving d's state dir.
func collectorPid(t *testing.T, state string) int {
	t.Helper()
	cl, err := logcollect.Dial(filepath.Join(state, "logd.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pid, err := cl.PeerPid()
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// counterLines checks that out holds 0..n-1, one per line, each once.
func counterLines(t *testing.T, out string, n int) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("%d lines, want %d (last %q)", len(lines), n, lines[len(lines)-1])
	}
	for i, l := range lines {
		if l != strconv.Itoa(i) {
			t.Fatalf("line %d is %q", i, l)
		}
	}
}

// allLogs concatenates a stream's files in order.
func allLogs(t *testing.T, task *drivers.TaskConfig, stream string) string {
	t.Helper()
	dir := task.TaskDir().LogDir
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var idxs []int
	prefix := task.Name + "." + stream + "."
	for _, e := range entries {
		if s, ok := strings.CutPrefix(e.Name(), prefix); ok {
			if i, err := strconv.Atoi(s); err == nil {
				idxs = append(idxs, i)
			}
		}
	}
	slices.Sort(idxs)
	var b strings.Builder
	for _, i := range idxs {
		data, err := os.ReadFile(filepath.Join(dir, prefix+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
	}
	return b.String()
}

// The plugin asks Nomad for no logmon, and one collector process writes
// every task's logs where logmon would.
func TestHarnessOneCollectorForEveryTask(t *testing.T) {
	state := stateDir(t)
	h, _ := newHarness(t, Config{StateDir: state})
	caps, err := h.Impl().Capabilities()
	if err != nil {
		t.Fatal(err)
	}
	if !caps.DisableLogCollection {
		t.Fatal("the plugin leaves log collection to Nomad's logmon")
	}
	var tasks []*drivers.TaskConfig
	var pids []int
	for i := 0; i < 3; i++ {
		task := newTask(t, h, "many"+strconv.Itoa(i), sh("echo out"+strconv.Itoa(i)+"; echo err"+strconv.Itoa(i)+" >&2"))
		start(t, h, task)
		tasks = append(tasks, task)
		pids = append(pids, collectorPid(t, state))
	}
	for i, task := range tasks {
		waitExit(t, h, task.ID, 20*time.Second)
		if got := logs(t, task, "stdout"); got != "out"+strconv.Itoa(i)+"\n" {
			t.Errorf("%s stdout %q", task.Name, got)
		}
		if got := logs(t, task, "stderr"); got != "err"+strconv.Itoa(i)+"\n" {
			t.Errorf("%s stderr %q", task.Name, got)
		}
	}
	if pids[0] != pids[1] || pids[1] != pids[2] {
		t.Fatalf("collector pids %v: want one for the node", pids)
	}
}

// A collector that cannot be reached fails the start with a clear error, and
// the registration, which runs alongside the start's other steps, is settled
// before the launch: the command never runs with nowhere for its output to go.
func TestHarnessNoCollectorNoCommand(t *testing.T) {
	state := stateDir(t)
	h, d := newHarness(t, Config{StateDir: state})
	// A collector that takes a second to fail: long enough for a command
	// launched before the answer to run.
	slow := filepath.Join(t.TempDir(), "failing-collector")
	if err := os.WriteFile(slow, []byte("#!/bin/sh\nsleep 1\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	d.collector().exe = slow
	task := newTask(t, h, "nocollector", sh("touch /alloc/data/ran"))
	_, _, err := h.StartTask(task)
	if err == nil || !strings.Contains(err.Error(), "log collector") {
		t.Fatalf("StartTask without a collector: %v", err)
	}
	// Give a command that did start the time to show itself.
	time.Sleep(500 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(task.AllocDir, "alloc", "data", "ran")); !os.IsNotExist(err) {
		t.Fatalf("the command ran though its output had nowhere to go: %v", err)
	}
	if _, ok := d.tasks.Get(task.ID); ok {
		t.Fatal("the failed start left a task behind")
	}
	d.collector().mu.Lock()
	n := len(d.collector().tasks)
	d.collector().mu.Unlock()
	if n != 0 {
		t.Fatalf("the plugin keeps %d tasks' pipes after a failed start", n)
	}
}

// When Nomad hears of a task's exit its last line is in its log, and the
// plugin knows that from the collector's word on the watch connection, with
// no round trip of its own: with the socket gone, asking would wait out its
// 5 s, and the task's exit would not be reported before that.
func TestHarnessExitHeardFromTheCollector(t *testing.T) {
	state := stateDir(t)
	h, d := newHarness(t, Config{StateDir: state})
	task := newTask(t, h, "heard", sh("read _ < /local/go; echo last line"))
	fifo := filepath.Join(task.TaskDir().LocalDir, "go")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	start(t, h, task)
	// No new connection to the collector from here on; the plugin's own
	// stay open.
	if err := os.Remove(filepath.Join(state, "logd.sock")); err != nil {
		t.Fatal(err)
	}
	ch, err := h.WaitTask(context.Background(), task.ID)
	if err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString("go\n")
	w.Close()
	exited := time.Now()
	var res *drivers.ExitResult
	select {
	case res = <-ch:
	case <-time.After(20 * time.Second):
		t.Fatal("no exit")
	}
	if took := time.Since(exited); took >= 4*time.Second {
		t.Fatalf("the exit was reported %v after it: the plugin asked the collector instead of taking its word", took)
	}
	if !res.Successful() {
		t.Fatalf("exit: %+v", res)
	}
	b, _ := os.ReadFile(filepath.Join(task.TaskDir().LogDir, task.Name+".stdout.0"))
	if string(b) != "last line\n" {
		t.Fatalf("stdout holds %q when Nomad hears of the exit", b)
	}
	d.collector().mu.Lock()
	tl, ok := d.collector().tasks[task.ID]
	heard := ok && tl.heard()
	d.collector().mu.Unlock()
	if !heard {
		t.Fatal("the plugin has no word of the task's end from the collector")
	}
}

// A name the collector would refuse for the task's log files fails the
// start before anything is made; a request the collector refuses keeps the
// plugin's connection, and with it the word of every other task's end.
func TestHarnessCollectorRefusalKeepsTheWord(t *testing.T) {
	state := stateDir(t)
	h, d := newHarness(t, Config{StateDir: state})
	long := newTask(t, h, strings.Repeat("n", 195), sh("true"))
	if _, _, err := h.StartTask(long); err == nil || !strings.Contains(err.Error(), "task name") {
		t.Fatalf("a task name too long for its log files: %v", err)
	}
	task := newTask(t, h, "word", sh("read _ < /local/go; echo done"))
	fifo := filepath.Join(task.TaskDir().LocalDir, "go")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	start(t, h, task)
	// A registration the collector refuses (a slash in a log file's name).
	dir, err := os.Open(task.TaskDir().LogDir)
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	c := d.collector()
	bad := newTaskLogs(dir, logcollect.Limits{MaxFiles: 1, FileSize: 1 << 20})
	bad.names, bad.pipes = []string{"a/b"}, []*os.File{r}
	if err := c.add("refused", bad); err == nil {
		t.Fatal("the collector took a log file name with a slash")
	}
	bad.close()
	c.mu.Lock()
	kept := c.client != nil && c.subscribed
	c.mu.Unlock()
	if !kept {
		t.Fatal("a refused request dropped the plugin's connection to the collector")
	}
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("go\n")
	f.Close()
	if res := waitExit(t, h, task.ID, 20*time.Second); !res.Successful() {
		t.Fatalf("exit: %+v", res)
	}
	c.mu.Lock()
	tl, ok := c.tasks[task.ID]
	heard := ok && tl.heard()
	c.mu.Unlock()
	if !heard {
		t.Fatal("no word of the task's end after the refusal")
	}
}

// A task's logs block sets its rotation within the plugin's limits; one
// asking for more than the plugin allows does not start.
func TestHarnessTaskLogLimits(t *testing.T) {
	h, _ := newHarness(t, Config{Logs: &LogsConfig{MaxFiles: 5, MaxFileSizeMB: 2}})
	tc := sh(`i=0; while [ $i -lt 5 ]; do head -c 1048576 /dev/zero | tr '\0' x; echo; i=$((i+1)); done`)
	tc.Logs = &TaskLogs{MaxFiles: 2, MaxFileSizeMB: 1}
	task := newTask(t, h, "limits", tc)
	start(t, h, task)
	waitExit(t, h, task.ID, 60*time.Second)
	if err := h.DestroyTask(task.ID, true); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(task.TaskDir().LogDir)
	var files []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "limits.stdout.") {
			fi, _ := e.Info()
			if fi.Size() > 1<<20 {
				t.Errorf("%s holds %d bytes, over 1 MiB", e.Name(), fi.Size())
			}
			files = append(files, e.Name())
		}
	}
	if len(files) != 2 {
		t.Fatalf("files kept %v, want 2", files)
	}

	over := sh("true")
	over.Logs = &TaskLogs{MaxFiles: 6}
	task = newTask(t, h, "over", over)
	_, _, err := h.StartTask(task)
	if err == nil || !strings.Contains(err.Error(), "at most 5") {
		t.Fatalf("a task asking for more files than the plugin allows: %v", err)
	}
}

// logs { disabled = true }: Nomad hands /dev/null, and nothing is written.
func TestHarnessLogsDisabled(t *testing.T) {
	h, _ := newHarness(t, Config{})
	task := newTaskWith(t, h, "quiet", sh("echo should-vanish; echo also >&2"), func(c *drivers.TaskConfig) {
		c.StdoutPath, c.StderrPath = os.DevNull, os.DevNull
	})
	start(t, h, task)
	if res := waitExit(t, h, task.ID, 20*time.Second); res.ExitCode != 0 {
		t.Fatalf("exit %+v", res)
	}
	entries, _ := os.ReadDir(task.TaskDir().LogDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "quiet.") {
			t.Fatalf("logs disabled, yet %s was written", e.Name())
		}
	}
}

// The collector killed with -9 while a task writes: the plugin starts
// another, and no line is missing or written twice.
func TestHarnessCollectorKilledMidStream(t *testing.T) {
	state := stateDir(t)
	h, _ := newHarness(t, Config{StateDir: state})
	const n = 200000
	task := newTask(t, h, "counter", sh(`seq 0 `+strconv.Itoa(n-1)+`; sleep 0.5; seq 0 `+strconv.Itoa(n-1)+` >&2`))
	start(t, h, task)
	for i := 0; i < 3; i++ {
		pid := collectorPid(t, state)
		time.Sleep(100 * time.Millisecond)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitNewCollector(t, state, pid)
	}
	if res := waitExit(t, h, task.ID, 60*time.Second); res.ExitCode != 0 {
		t.Fatalf("the task saw its output fail: %+v", res)
	}
	if err := h.DestroyTask(task.ID, true); err != nil {
		t.Fatal(err)
	}
	counterLines(t, allLogs(t, task, "stdout"), n)
	counterLines(t, allLogs(t, task, "stderr"), n)
}

func waitNewCollector(t *testing.T, state string, old int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		// One connection for the question: between two, the old collector
		// may die and the new one not listen yet.
		if cl, err := logcollect.Dial(filepath.Join(state, "logd.sock")); err == nil {
			pid, err := cl.PeerPid()
			cl.Close()
			if err == nil && pid != old {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no collector came back")
}

// The plugin killed while a task writes: the collector goes on, the next
// plugin takes the task's pipes back, and nothing is lost; then the
// collector is killed too, and the recovered plugin starts another.
func TestHarnessLogsAcrossPluginRestart(t *testing.T) {
	state := stateDir(t)
	h1, _ := newHarness(t, Config{StateDir: state})
	const n = 100000
	task := newTask(t, h1, "survivor", sh(`seq 0 49999; while [ ! -e /local/go ]; do sleep 0.05; done; seq 50000 `+strconv.Itoa(n-1)))
	handle, _, err := h1.StartTask(task)
	if err != nil {
		t.Fatal(err)
	}
	h1.Kill()
	pid := collectorPid(t, state)

	h2, _ := newHarness(t, Config{StateDir: state})
	if err := h2.RecoverTask(handle); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h2.Impl().DestroyTask(task.ID, true) })
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitNewCollector(t, state, pid)
	if err := os.WriteFile(filepath.Join(task.TaskDir().LocalDir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if res := waitExit(t, h2, task.ID, 60*time.Second); res.ExitCode != 0 {
		t.Fatalf("exit %+v", res)
	}
	if err := h2.DestroyTask(task.ID, true); err != nil {
		t.Fatal(err)
	}
	counterLines(t, allLogs(t, task, "stdout"), n)
}

// collector = "logmon" leaves the logs to Nomad, as before.
func TestHarnessLogmonStillAvailable(t *testing.T) {
	h, _ := newHarness(t, Config{Logs: &LogsConfig{Collector: "logmon"}})
	caps, err := h.Impl().Capabilities()
	if err != nil {
		t.Fatal(err)
	}
	if caps.DisableLogCollection {
		t.Fatal("collector logmon, yet Nomad is told not to collect")
	}
	task := newTask(t, h, "viamon", sh("echo through-logmon"))
	start(t, h, task)
	waitExit(t, h, task.ID, 20*time.Second)
	if got := logs(t, task, "stdout"); got != "through-logmon\n" {
		t.Fatalf("stdout %q", got)
	}
}

func TestLogsConfigRefusals(t *testing.T) {
	for _, c := range []LogsConfig{{Collector: "syslog"}, {MaxFiles: -1}, {MaxFileSizeMB: -3}} {
		if err := c.normalize(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// Nomad's plugin server drops DisableLogCollection from the capabilities it
// sends; the interceptor driver.Serve installs puts it in.
func TestCapabilitiesInterceptorCarriesLogCollection(t *testing.T) {
	for _, collector := range []string{collectorBwrapR, collectorLogmon} {
		d := newDriver(t, Config{Logs: &LogsConfig{Collector: collector}})
		sent := &proto.CapabilitiesResponse{Capabilities: &proto.DriverCapabilities{SendSignals: true}}
		got, err := d.capabilitiesInterceptor(context.Background(), &proto.CapabilitiesRequest{},
			&grpc.UnaryServerInfo{FullMethod: capabilitiesMethod},
			func(context.Context, any) (any, error) { return sent, nil })
		if err != nil {
			t.Fatal(err)
		}
		caps := got.(*proto.CapabilitiesResponse).Capabilities
		if caps.DisableLogCollection != (collector == collectorBwrapR) || !caps.SendSignals {
			t.Errorf("collector %s: sent %+v", collector, caps)
		}
	}
}

// plantLogsLink puts a link where the allocation's logs dir was, as a task of
// another driver in the allocation could.
func plantLogsLink(t *testing.T, task *drivers.TaskConfig) {
	t.Helper()
	dir := task.TaskDir().LogDir
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), dir); err != nil {
		t.Fatal(err)
	}
}

// A logs dir replaced by a link is refused, never followed: the collector
// writes as root.
func TestHarnessLogsDirLinkRefused(t *testing.T) {
	h, _ := newHarness(t, Config{})
	task := newTask(t, h, "linked", sh("echo x"))
	plantLogsLink(t, task)
	_, _, err := h.StartTask(task)
	if err == nil || !strings.Contains(err.Error(), "logs dir") {
		t.Fatalf("a link for the logs dir: %v", err)
	}
	target, _ := os.Readlink(task.TaskDir().LogDir)
	if entries, _ := os.ReadDir(target); len(entries) != 0 {
		t.Fatalf("written through the link: %v", entries)
	}
}
