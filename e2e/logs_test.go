package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// counterJob prints a counter to stdout and stderr, paced, until /local/stop
// exists, then END.
func counterJob(id string) string {
	return shJob(id, "batch", `i=0
while [ ! -e /local/stop ]; do
  echo $i; echo $i >&2
  i=$((i+1))
  [ $((i % 50)) -eq 0 ] && sleep 0.02
done
echo END; echo END >&2`, 64)
}

// checkCounter wants 0..k-1 then END, each once, at least min lines.
func checkCounter(t *testing.T, what, out string, min int) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) < min+1 || lines[len(lines)-1] != "END" {
		t.Fatalf("%s: %d lines, ending %q; want at least %d numbers then END", what, len(lines), lines[len(lines)-1], min)
	}
	for i, l := range lines[:len(lines)-1] {
		if l != strconv.Itoa(i) {
			t.Fatalf("%s: line %d is %q (a number missing or twice)", what, i, l)
		}
	}
	t.Logf("%s: %d numbers in order, none missing, none twice", what, len(lines)-1)
}

// collectorProcess is the pid of the log collector serving stateDir.
func collectorProcess(stateDir string) int {
	for _, p := range processesWith(filepath.Join(stateDir, "logd.sock")) {
		pid, _ := strconv.Atoi(strings.Fields(p)[0])
		return pid
	}
	return 0
}

// TestLogsAcrossRestarts: a task printing a counter on a client (not dev
// mode) while the plugin is killed with -9, the collector is killed with -9
// and the agent restarts. No logmon runs for it; `nomad alloc logs` (-f,
// -tail, -n, -stderr) reads every number once, in order.
func TestLogsAcrossRestarts(t *testing.T) {
	setup(t)
	stateDir, err := os.MkdirTemp("/tmp", "e2e-logs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(stateDir) })
	a := newAgentOpts(t, agentOpts{server: true, plugin: fmt.Sprintf("    state_dir = %q", stateDir)})
	if err := a.waitDriver(true, time.Minute); err != nil {
		t.Fatal(err)
	}
	const job = "counter"
	a.runJob(t, writeJob(t, job, counterJob(job)), job)
	al := a.waitRunning(t, job, "t", time.Minute)
	if mons := processesWith("logmon"); len(mons) > 0 {
		t.Fatalf("Nomad started logmon for a bwrap-r task: %v", mons)
	}
	collector := collectorProcess(stateDir)
	if collector == 0 {
		t.Fatal("no log collector runs for the task")
	}

	// -f follows the running task.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	follow := exec.CommandContext(ctx, nomadBin, "alloc", "logs", "-address", a.addr, "-f", al.ID, "t")
	follow.Env = cleanEnv()
	followed, _ := follow.Output()
	cancel()
	if n := strings.Count(string(followed), "\n"); n < 10 {
		t.Fatalf("alloc logs -f printed %d lines in 3s: %q", n, followed)
	}

	time.Sleep(time.Second)
	plugin, err := a.pluginProcess()
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(plugin, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !eventually(30*time.Second, 100*time.Millisecond, func() bool {
		next, err := a.pluginProcess()
		return err == nil && next != plugin
	}) {
		t.Fatal("no new plugin after kill -9")
	}
	t.Logf("plugin %d killed with -9; the agent started another", plugin)
	if now := collectorProcess(stateDir); now != collector {
		t.Fatalf("the collector changed with the plugin: %d, was %d", now, collector)
	}
	// The new plugin recovers the task and with it the task's pipes.
	time.Sleep(2 * time.Second)

	if err := syscall.Kill(collector, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var next int
	if !eventually(30*time.Second, 50*time.Millisecond, func() bool {
		next = collectorProcess(stateDir)
		return next != 0 && next != collector
	}) {
		t.Fatal("no collector came back after kill -9")
	}
	t.Logf("collector %d killed with -9; the plugin started %d", collector, next)
	time.Sleep(time.Second)

	if !a.interrupt() {
		t.Fatal("the agent ignored SIGINT")
	}
	time.Sleep(2 * time.Second) // the task writes on with no agent
	if err := a.launch(); err != nil {
		t.Fatal(err)
	}
	if err := a.waitDriver(true, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Log("agent restarted")
	time.Sleep(2 * time.Second)

	local := filepath.Join(a.dir, "data", "alloc", al.ID, "t", "local", "stop")
	if err := os.WriteFile(local, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	done := a.waitAlloc(t, job, 2*time.Minute, "complete", terminal)
	if ts := done.TaskStates["t"]; done.ClientStatus != "complete" || ts == nil || ts.Failed {
		t.Fatalf("the counter did not complete:\n%s", done)
	}
	stdout := a.mustNomad(t, "alloc", "logs", al.ID, "t")
	checkCounter(t, "stdout", stdout, 1000)
	checkCounter(t, "stderr", a.mustNomad(t, "alloc", "logs", "-stderr", al.ID, "t"), 1000)
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	tail := a.mustNomad(t, "alloc", "logs", "-tail", "-n", "3", al.ID, "t")
	if want := strings.Join(lines[len(lines)-3:], "\n") + "\n"; tail != want {
		t.Fatalf("alloc logs -tail -n 3: %q, want %q", tail, want)
	}
	fsList := a.mustNomad(t, "alloc", "fs", al.ID, "alloc/logs")
	if !strings.Contains(fsList, "t.stdout.0") || strings.Contains(fsList, "fifo") {
		t.Fatalf("alloc fs alloc/logs:\n%s", fsList)
	}
}

// TestTaskNameTooLongForItsLogs: a job names its task so that its log files'
// names would pass the collector's limit. The start fails before anything
// is made, with an event that says why, and a job beside it, on the same
// collector, runs and has its last line in its log when Nomad hears of its
// exit.
func TestTaskNameTooLongForItsLogs(t *testing.T) {
	a := sharedAgent(t)
	long := strings.Repeat("n", 195)
	const longJob, okJob = "longname", "longname-neighbour"
	hcl := strings.Replace(batchJob(longJob, "", `        command = "/bin/sh"
        args    = ["-c", "echo ran"]`), `task "t"`, fmt.Sprintf("task %q", long), 1)
	a.runJob(t, writeJob(t, longJob, hcl), longJob)
	al := a.waitAlloc(t, longJob, 2*time.Minute, "terminal", terminal)
	events := al.allEvents(long)
	if al.ClientStatus != "failed" || !strings.Contains(events, "task name") || !strings.Contains(events, "200 bytes") {
		t.Fatalf("a task name too long for its log files: want failed with an event naming the limit, got %s; events: %s", al.ClientStatus, events)
	}
	if started := al.events(long, "Started"); len(started) != 0 {
		t.Errorf("the task started: %s", events)
	}

	a.runJob(t, writeJob(t, okJob, batchJob(okJob, "", `        command = "/bin/sh"
        args    = ["-c", "echo first; echo last line"]`)), okJob)
	al = a.waitAlloc(t, okJob, 2*time.Minute, "terminal", terminal)
	logs := a.mustNomad(t, "alloc", "logs", al.ID, "t")
	if al.ClientStatus != "complete" || logs != "first\nlast line\n" {
		t.Fatalf("the job beside it: want complete with both lines, got %s, logs %q", al.ClientStatus, logs)
	}
}
