package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestRecovery runs the Shiny example and batch jobs in a one-node cluster
// (not dev mode: its state survives the agent), then (a) kills the bwrap-r
// plugin with SIGKILL and (b) stops and restarts the agent. Each time the
// Shiny app must answer throughout, its task must neither restart nor be
// replaced, and a batch task that ended meanwhile must report its real exit
// code.
func TestRecovery(t *testing.T) {
	setup(t)
	stateDir, err := os.MkdirTemp("/tmp", "e2e-state-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(stateDir) })
	start := time.Now()
	a := newAgentOpts(t, agentOpts{server: true, plugin: fmt.Sprintf("    state_dir = %q", stateDir)})
	if err := a.waitDriver(true, time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("one-node cluster ready after %v", time.Since(start).Round(time.Millisecond))

	a.runJob(t, example(t, "shiny.nomad.hcl"), "shiny")
	shiny := a.waitAlloc(t, "shiny", 2*time.Minute, "running", func(al *allocation) bool {
		if terminal(al) {
			t.Fatalf("shiny ended:\n%s", al)
		}
		ts := al.TaskStates["shiny"]
		return al.ClientStatus == "running" && ts != nil && ts.State == "running"
	})
	port, _ := shiny.port("http")
	if port == 0 {
		t.Fatalf("allocation %s has no port labelled http", shiny.ID)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	if !eventually(60*time.Second, 500*time.Millisecond, func() bool { return httpGet(url) == nil }) {
		logs, _ := a.nomad("alloc", "logs", "-stderr", shiny.ID, "shiny")
		t.Fatalf("GET %s: %v after 60s; task stderr:\n%s", url, httpGet(url), logs)
	}
	uid, err := listenerUID(port)
	if err != nil {
		t.Fatal(err)
	}
	rProc, err := processNamed(uid, "R")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("shiny answers on port %d; its R is pid %d (uid %d)", port, rProc.pid, uid)

	// From here on the app must answer every request.
	poll := startPoller(url, 250*time.Millisecond)
	defer poll.stop()

	// shinyUnchanged checks that the Shiny task is the one started above:
	// same allocation, no restart, same R process, answering.
	shinyUnchanged := func(t *testing.T) {
		t.Helper()
		al := a.waitAlloc(t, "shiny", 30*time.Second, "running", func(al *allocation) bool {
			ts := al.TaskStates["shiny"]
			return ts != nil && ts.State == "running"
		})
		if al.ID != shiny.ID {
			t.Errorf("shiny's allocation is %s, was %s", al.ID, shiny.ID)
		}
		ts := al.TaskStates["shiny"]
		if ts.Restarts != 0 {
			t.Errorf("shiny restarted %d time(s)", ts.Restarts)
		}
		for _, typ := range []string{"Restarting", "Terminated", "Killing", "Killed"} {
			if evs := al.events("shiny", typ); len(evs) > 0 {
				t.Errorf("shiny has %s events: %+v", typ, evs)
			}
		}
		if t.Failed() {
			t.Logf("%s", al)
		}
		if !rProc.alive() {
			now, _ := processNamed(uid, "R")
			t.Errorf("shiny's R (pid %d) is gone; uid %d's R now: pid %d", rProc.pid, uid, now.pid)
		}
		n, failures := poll.report()
		if len(failures) > 0 {
			t.Errorf("the app failed %d of %d requests: %s", len(failures), n, strings.Join(failures, "; "))
		} else {
			t.Logf("the app answered all %d requests so far", n)
		}
	}

	t.Run("plugin-killed", func(t *testing.T) {
		const job = "exit7-plugin"
		// The marker names the task's processes (in sh's and bwrap's argv).
		const marker = "e2e-marker-plugin"
		file := writeJob(t, job, shJob(job, "batch", "sleep 8; exit 7 # "+marker, 32))
		a.runJob(t, file, job)
		a.waitRunning(t, job, "t", time.Minute)
		if len(processesWith(marker)) == 0 {
			t.Fatalf("no process of %s on the host", job)
		}
		plugin, err := a.pluginProcess()
		if err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		if err := syscall.Kill(plugin, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		t.Logf("killed the plugin (pid %d) with SIGKILL", plugin)
		var next int
		if !eventually(30*time.Second, 100*time.Millisecond, func() bool {
			next, err = a.pluginProcess()
			return err == nil && next != plugin
		}) {
			t.Fatalf("no new plugin process 30s after the kill: %v", err)
		}
		t.Logf("the agent started a new plugin (pid %d) after %v", next, time.Since(killed).Round(time.Millisecond))
		if len(processesWith(marker)) == 0 {
			t.Logf("%s ended while the plugin was being replaced", job)
		}

		al := a.waitAlloc(t, job, time.Minute, "terminal", terminal)
		t.Logf("%s", al)
		checkExit7(t, al)
		shinyUnchanged(t)
	})

	t.Run("agent-restarted", func(t *testing.T) {
		const job = "exit7-agent"
		const marker = "e2e-marker-agent"
		file := writeJob(t, job, shJob(job, "batch", "sleep 5; exit 7 # "+marker, 32))
		a.runJob(t, file, job)
		a.waitRunning(t, job, "t", time.Minute)
		if len(processesWith(marker)) == 0 {
			t.Fatalf("no process of %s on the host", job)
		}
		stopped := time.Now()
		if !a.interrupt() {
			t.Fatal("the agent ignored SIGINT")
		}
		t.Logf("agent stopped by SIGINT in %v (exit: %v)", time.Since(stopped).Round(time.Millisecond), a.cmd.ProcessState)
		if !rProc.alive() {
			t.Fatalf("shiny's R (pid %d) died with the agent", rProc.pid)
		}
		// The batch task ends while no agent runs.
		var left []string
		if !eventually(30*time.Second, 250*time.Millisecond, func() bool {
			left = processesWith(marker)
			return len(left) == 0
		}) {
			t.Fatalf("%s's processes still run 30s after the agent stopped: %v", job, left)
		}
		if !rProc.alive() {
			t.Fatalf("shiny's R (pid %d) died while the agent was down", rProc.pid)
		}
		t.Logf("%s ended while the agent was down; restarting the agent", job)

		restarted := time.Now()
		if err := a.launch(); err != nil {
			t.Fatal(err)
		}
		if err := a.waitDriver(true, 2*time.Minute); err != nil {
			t.Fatal(err)
		}
		t.Logf("agent back with a healthy bwrap-r after %v", time.Since(restarted).Round(time.Millisecond))
		// The client reports the task's end once it has re-registered with
		// the restarted server, which may take half a minute.
		al := a.waitAlloc(t, job, 2*time.Minute, "terminal", terminal)
		t.Logf("%s terminal %v after the restart:\n%s", job, time.Since(restarted).Round(time.Millisecond), al)
		checkExit7(t, al)
		shinyUnchanged(t)
	})
}

// checkExit7 checks that a batch task "t" that exited with code 7 shows so.
func checkExit7(t *testing.T, al *allocation) {
	t.Helper()
	if al.ClientStatus != "failed" {
		t.Errorf("want the allocation failed (exit code 7, no restarts), got %s", al.ClientStatus)
	}
	term := al.events("t", "Terminated")
	if len(term) != 1 || term[0].ExitCode != 7 || term[0].Details["exit_code"] != "7" {
		t.Errorf("want one Terminated event with exit code 7, got %+v", term)
	}
	if ts := al.TaskStates["t"]; ts == nil || ts.Restarts != 0 {
		t.Errorf("the batch task restarted: %+v", ts)
	}
}

// pluginProcess returns the pid of the agent's bwrap-r plugin: the child of
// the agent whose executable is the plugin built for this run.
func (a *agent) pluginProcess() (int, error) {
	bin, err := filepath.EvalSymlinks(filepath.Join(pluginDir, "bwrap-r"))
	if err != nil {
		return 0, err
	}
	var pids []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		exe, err := os.Readlink(filepath.Join(d, "exe"))
		if err != nil || exe != bin {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(d))
		if ppid, state := procParent(pid); ppid == a.cmd.Process.Pid && state != "Z" {
			pids = append(pids, pid)
		}
	}
	if len(pids) != 1 {
		return 0, fmt.Errorf("want one bwrap-r plugin process under the agent (pid %d), found %v", a.cmd.Process.Pid, pids)
	}
	return pids[0], nil
}

// procParent returns a process's parent pid and state.
func procParent(pid int) (int, string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	i := bytes.LastIndexByte(b, ')')
	if err != nil || i < 0 {
		return 0, ""
	}
	fs := strings.Fields(string(b[i+1:]))
	if len(fs) < 2 {
		return 0, ""
	}
	ppid, _ := strconv.Atoi(fs[1])
	return ppid, fs[0]
}

// proc is a process by pid and start time.
type proc struct {
	pid   int
	start string
}

func procStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	i := bytes.LastIndexByte(b, ')')
	if err != nil || i < 0 {
		return ""
	}
	fs := strings.Fields(string(b[i+1:]))
	if len(fs) < 20 || fs[0] == "Z" {
		return ""
	}
	return fs[19] // field 22, starttime
}

func (p proc) alive() bool { return p.pid > 0 && procStart(p.pid) == p.start }

// processNamed returns the one process of uid with the given name.
func processNamed(uid int, name string) (proc, error) {
	var found []proc
	for _, p := range procsOfUID(uid) {
		pid, pname, _ := strings.Cut(p, " ")
		if pname == name {
			n, _ := strconv.Atoi(pid)
			if s := procStart(n); s != "" {
				found = append(found, proc{n, s})
			}
		}
	}
	if len(found) != 1 {
		return proc{}, fmt.Errorf("want one process %q of uid %d, found %v (all: %v)", name, uid, found, procsOfUID(uid))
	}
	return found[0], nil
}

// processesWith lists the live processes whose command line contains s.
func processesWith(s string) []string {
	var procs []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	self := strconv.Itoa(os.Getpid())
	for _, d := range dirs {
		if filepath.Base(d) == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || !bytes.Contains(b, []byte(s)) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(d))
		if _, state := procParent(pid); state != "Z" && state != "" {
			procs = append(procs, filepath.Base(d)+" "+strings.ReplaceAll(string(bytes.TrimRight(b, "\x00")), "\x00", " "))
		}
	}
	return procs
}

// httpGet fetches url and wants 200.
func httpGet(url string) error {
	// Generous: a loaded machine must not pass for an app that stopped.
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// poller fetches a URL at an interval and keeps the failures.
type poller struct {
	mu       sync.Mutex
	n        int
	failures []string
	done     chan struct{}
	stopped  chan struct{}
	once     sync.Once
}

func startPoller(url string, interval time.Duration) *poller {
	p := &poller{done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(p.stopped)
		for {
			err := httpGet(url)
			p.mu.Lock()
			p.n++
			if err != nil {
				p.failures = append(p.failures, time.Now().Format("15:04:05.000")+" "+err.Error())
			}
			p.mu.Unlock()
			select {
			case <-p.done:
				return
			case <-time.After(interval):
			}
		}
	}()
	return p
}

func (p *poller) report() (int, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n, append([]string(nil), p.failures...)
}

func (p *poller) stop() {
	p.once.Do(func() { close(p.done) })
	<-p.stopped
}
