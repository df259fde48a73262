package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bwrap-r/bwrap-r/internal/nodeload"
)

// The node's cost of a running task through a real agent: a benchmark, run
// by `make bench` (BWRAP_R_NODE_BENCH=1), never by `make test`. It measures
// and prints; it asserts nothing about the figures.

const sleepToken = "86400.123"

func sleepersJob(id, driver string, count int) string {
	return fmt.Sprintf(`job %q {
  type = "service"
  group "g" {
    count = %d
    ephemeral_disk {
      size = 10
    }
    restart {
      attempts = 0
      mode     = "fail"
    }
    task "t" {
      driver = %q
      config {
        command = "/bin/sleep"
        args    = [%q]
      }
      logs {
        max_files     = 1
        max_file_size = 1
      }
      resources {
        cpu    = 1
        memory = 16
      }
    }
  }
}
`, id, count, driver, sleepToken)
}

// pss reads a process's PSS in KiB.
func pss(pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "Pss:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// nodeMem is the host's processes' PSS, in KiB: the agent's, the workload's
// (the sleeps) and everything else but this test binary.
type nodeMem struct {
	agent, workload, rest int
	sleeps                int
	memAvailable          int
}

func measureNode(agentPid int) nodeMem {
	var m nodeMem
	self := os.Getpid()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, _ := strconv.Atoi(filepath.Base(d))
		if pid == self {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || len(cmd) == 0 {
			continue // a kernel thread
		}
		p := pss(pid)
		switch {
		case pid == agentPid:
			m.agent += p
		case bytes.HasSuffix(bytes.TrimRight(cmd, "\x00"), []byte("\x00"+sleepToken)):
			m.workload += p
			m.sleeps++
		default:
			m.rest += p
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemAvailable:" {
				m.memAvailable, _ = strconv.Atoi(f[1])
			}
		}
	}
	return m
}

// settle waits until the node's memory stops moving (page cache, lazy
// frees), at most a while.
func settle() {
	time.Sleep(5 * time.Second)
}

func (a *agent) runningCount(jobID string) int {
	var allocs []struct {
		ClientStatus string
	}
	if err := a.get("/v1/job/"+jobID+"/allocations", &allocs); err != nil {
		return 0
	}
	n := 0
	for _, al := range allocs {
		if al.ClientStatus == "running" {
			n++
		}
	}
	return n
}

func TestNodeCostPerTask(t *testing.T) {
	if os.Getenv("BWRAP_R_NODE_BENCH") == "" {
		t.Skip("a benchmark: make bench runs it (BWRAP_R_NODE_BENCH=1)")
	}
	setup(t)
	stateDir, err := os.MkdirTemp("/tmp", "e2e-cost-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(stateDir) })
	a := newAgentOpts(t, agentOpts{plugin: fmt.Sprintf("    state_dir = %q", stateDir), extra: `plugin "raw_exec" {
  config {
    enabled = true
  }
}
`})
	if err := a.waitDriver(true, time.Minute); err != nil {
		t.Fatal(err)
	}
	counts := func(name string, def []int) []int {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		var out []int
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n <= 0 {
				t.Fatalf("%s=%q", name, v)
			}
			out = append(out, n)
		}
		return out
	}
	runs := []struct {
		driver string
		counts []int
	}{
		{"bwrap-r", counts("BWRAP_R_NODE_BENCH_BWRAP", []int{40, 500, 1000})},
		{"raw_exec", counts("BWRAP_R_NODE_BENCH_RAW", []int{40, 200})},
		{"exec", counts("BWRAP_R_NODE_BENCH_EXEC", []int{40})},
	}
	type row struct {
		driver              string
		n                   int
		toRunning           time.Duration
		perTaskKiB, nodeKiB float64
		availKiB            float64
	}
	var rows []row
	// make bench runs this right after the harness bench's burst.
	calm := nodeload.Calm(3 * time.Minute)
	load0 := loadAvg()
	for _, r := range runs {
		settle()
		base := measureNode(a.cmd.Process.Pid)
		job := "cost-" + strings.ReplaceAll(r.driver, "_", "-")
		for _, n := range r.counts {
			t0 := time.Now()
			a.runJob(t, writeJob(t, job, sleepersJob(job, r.driver, n)), job)
			if !eventually(20*time.Minute, 200*time.Millisecond, func() bool { return a.runningCount(job) >= n }) {
				t.Fatalf("%s: %d of %d allocations running after 20 minutes", r.driver, a.runningCount(job), n)
			}
			took := time.Since(t0)
			settle()
			m := measureNode(a.cmd.Process.Pid)
			if m.sleeps < n {
				t.Fatalf("%s: %d allocations running but %d sleeps on the host", r.driver, n, m.sleeps)
			}
			rows = append(rows, row{
				driver: r.driver, n: n, toRunning: took,
				perTaskKiB: float64(m.rest-base.rest) / float64(n),
				nodeKiB:    float64((m.rest+m.agent)-(base.rest+base.agent)) / float64(n),
				availKiB:   float64(base.memAvailable-m.memAvailable) / float64(n),
			})
			t.Logf("%s x%d: running after %v; processes per task %.2f MiB (agent included %.2f); MemAvailable drop %.2f MiB a task",
				r.driver, n, took.Round(time.Millisecond), rows[len(rows)-1].perTaskKiB/1024, rows[len(rows)-1].nodeKiB/1024, rows[len(rows)-1].availKiB/1024)
		}
		a.mustNomad(t, "job", "stop", "-purge", job)
		if !eventually(10*time.Minute, time.Second, func() bool { return measureNode(a.cmd.Process.Pid).sleeps == 0 }) {
			t.Fatalf("%s: sleeps still running 10 minutes after the stop", r.driver)
		}
	}
	var b strings.Builder
	b.WriteString("# What a node pays per task, through a real agent\n\nWritten by `make bench-node` (part of `make bench`): e2e's TestNodeCostPerTask and TestLogThroughput.\n\n")
	calmNote := "the node calm before it (no more runnable processes than cores, none blocked, for a second)"
	if !calm {
		calmNote = "**the node was not calm before it** (3 minutes' wait)"
	}
	fmt.Fprintf(&b, "Through one real agent (dev mode), `sleep` tasks (memory 16, cpu 1), %s; load %s at the start, %s at the end.\n\n", calmNote, load0, loadAvg())
	b.WriteString("| driver | tasks | until all running | host processes a task adds (PSS) | with the agent's growth | MemAvailable drop a task |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d | %.1f s | %.2f MiB | %.2f MiB | %.2f MiB |\n", r.driver, r.n, r.toRunning.Seconds(), r.perTaskKiB/1024, r.nodeKiB/1024, r.availKiB/1024)
	}
	b.WriteString("\n\"Host processes a task adds\" is every host process but the agent and the tasks' own commands, PSS\n" +
		"summed, less the same before the job, divided by the tasks: for bwrap-r bwrap's two processes a task\n" +
		"and a share of the node's one log collector; for raw_exec and exec the executor and Nomad's logmon a\n" +
		"task. \"With the agent's growth\" adds what the agent grew by. The MemAvailable drop counts everything\n" +
		"the tasks cost the node (the sleeps, kernel objects, the agent); at 40 tasks it is within the node's\n" +
		"noise and can come out negative. Each count is a job update of the one job, so its row is the node\n" +
		"with that many tasks running.\n")
	fmt.Println(b.String())
	if out := os.Getenv("BWRAP_R_NODE_BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// floodJob writes about 50 MB/s of lines to stdout for 30 s: 50 copies of a
// 1 MiB chunk of lines, then a second's pause.
func floodJob(id, driver, logs string) string {
	return fmt.Sprintf(`job %q {
  type = "batch"
  group "g" {
    ephemeral_disk {
      size = 2100
    }
`+runOnce+`    task "t" {
      driver = %q
      config {
        command = "/bin/sh"
        args    = ["-c", "yes 'a line of log output, as an app writes it' | head -c 1048576 > ${NOMAD_TASK_DIR}/chunk; for s in $(seq 30); do for j in $(seq 50); do cat ${NOMAD_TASK_DIR}/chunk; done; sleep 1; done"]
%s      }
      logs {
        max_files     = 200
        max_file_size = 10
      }
      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
`, id, driver, logs)
}

func logBytes(dir, task, stream string) int64 {
	var n int64
	files, _ := filepath.Glob(filepath.Join(dir, task+"."+stream+".*"))
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && !strings.HasSuffix(f, ".fifo") {
			n += fi.Size()
		}
	}
	return n
}

// TestLogThroughput: 1500 MiB at 50 MB/s from one task, through the node's
// collector and through raw_exec's logmon; every byte arrives, and the CPU
// each spends per MB. Then 100 tasks writing counters at once lose nothing.
func TestLogThroughput(t *testing.T) {
	if os.Getenv("BWRAP_R_NODE_BENCH") == "" {
		t.Skip("a benchmark: make bench runs it (BWRAP_R_NODE_BENCH=1)")
	}
	setup(t)
	stateDir, err := os.MkdirTemp("/tmp", "e2e-flood-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(stateDir) })
	a := newAgentOpts(t, agentOpts{plugin: fmt.Sprintf("    state_dir = %q\n    logs {\n      max_files = 200\n    }", stateDir), extra: `plugin "raw_exec" {
  config {
    enabled = true
  }
}
`})
	if err := a.waitDriver(true, time.Minute); err != nil {
		t.Fatal(err)
	}
	const want = 1500 << 20
	var b strings.Builder
	b.WriteString("| collector | MiB written | MiB in the files | CPU | CPU per MB |\n|---|---|---|---|---|\n")
	for _, c := range []struct{ name, driver, logs string }{
		{"bwrap-r's collector", "bwrap-r", "        logs {\n          max_files     = 200\n          max_file_size = 10\n        }\n"},
		{"Nomad's logmon (raw_exec)", "raw_exec", ""},
	} {
		job := "flood-" + strings.ReplaceAll(c.driver, "_", "-")
		a.runJob(t, writeJob(t, job, floodJob(job, c.driver, c.logs)), job)
		al := a.waitRunning(t, job, "t", time.Minute)
		var pid int
		if !eventually(30*time.Second, 100*time.Millisecond, func() bool {
			if c.driver == "bwrap-r" {
				pid = collectorProcess(stateDir)
			} else if ps := processesWith("logmon"); len(ps) == 1 {
				pid, _ = strconv.Atoi(strings.Fields(ps[0])[0])
				t.Logf("logmon: %s", ps[0])
			}
			return pid != 0
		}) {
			t.Fatalf("%s: no collector process found", c.name)
		}
		// The collector's CPU time, sampled while the task runs (logmon
		// exits with its task).
		cpuNow := func() time.Duration { d, _ := readProcCPU(pid); return d }
		cpu0 := cpuNow()
		var cpu time.Duration
		sampling := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				if now := cpuNow(); now-cpu0 > cpu {
					cpu = now - cpu0
				}
				select {
				case <-sampling:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
		done := a.waitAlloc(t, job, 5*time.Minute, "complete", terminal)
		close(sampling)
		<-sampled
		if done.ClientStatus != "complete" {
			t.Fatalf("%s: %s", c.name, done)
		}
		logDir := allocLogsDir(a, al.ID)
		var got int64
		eventually(30*time.Second, 200*time.Millisecond, func() bool {
			got = logBytes(logDir, "t", "stdout")
			return got >= want
		})
		t.Logf("%s: logs in %q", c.name, logDir)
		if c.driver == "bwrap-r" && got != want {
			t.Errorf("%s: %d bytes in the files, %d written", c.name, got, want)
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %.2f s | %.2f ms |\n", c.name, want>>20, got>>20, cpu.Seconds(), cpu.Seconds()*1000/float64(want>>20))
		a.mustNomad(t, "job", "stop", "-purge", job)
	}

	// 100 tasks at once, each 20000 counter lines; they stay running, as
	// the client collects finished allocations beyond its gc_max_allocs.
	const job, tasks, lines = "counters", 100, 20000
	a.runJob(t, writeJob(t, job, fmt.Sprintf(`job %q {
  group "g" {
    count = %d
`+runOnce+`    task "t" {
      driver = "bwrap-r"
      config {
        command = "/bin/sh"
        args    = ["-c", "seq 0 %d; exec sleep 3600"]
      }
      resources {
        cpu    = 1
        memory = 16
      }
    }
  }
}
`, job, tasks, lines-1)), job)
	if !eventually(10*time.Minute, time.Second, func() bool { return a.runningCount(job) >= tasks }) {
		t.Fatalf("%d counter tasks did not all start", tasks)
	}
	var allocs []struct{ ID string }
	if err := a.get("/v1/job/"+job+"/allocations", &allocs); err != nil {
		t.Fatal(err)
	}
	counted := seqOutput(lines)
	complete := 0
	eventually(2*time.Minute, time.Second, func() bool {
		complete = 0
		for _, al := range allocs {
			if b, err := os.ReadFile(filepath.Join(allocLogsDir(a, al.ID), "t.stdout.0")); err == nil && string(b) == counted {
				complete++
			}
		}
		return complete == len(allocs)
	})
	fmt.Fprintf(&b, "\n%d tasks writing %d lines each at once: %d with every line, in order.\n", len(allocs), lines, complete)
	if complete != len(allocs) {
		t.Errorf("%d of %d counter tasks' logs are complete", complete, len(allocs))
	}
	a.mustNomad(t, "job", "stop", "-purge", job)
	// A dev agent stopped now would leave the tasks running.
	if !eventually(5*time.Minute, time.Second, func() bool { return len(processesWith("exec sleep 3600")) == 0 }) {
		t.Errorf("counter tasks still run 5 minutes after the stop")
	}
	fmt.Println(b.String())
	if out := os.Getenv("BWRAP_R_NODE_BENCH_OUT"); out != "" {
		f, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err == nil {
			f.WriteString("\n" + b.String())
			f.Close()
		}
	}
}

func seqOutput(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(strconv.Itoa(i))
		b.WriteByte('\n')
	}
	return b.String()
}

// allocLogsDir finds an allocation's alloc/logs below the agent's dir (a dev
// agent keeps its alloc dir in a temp dir of its own there).
func allocLogsDir(a *agent, allocID string) string {
	found := ""
	filepath.WalkDir(a.dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || found != "" {
			return filepath.SkipDir
		}
		if d.IsDir() && d.Name() == allocID {
			found = filepath.Join(p, "alloc", "logs")
			return filepath.SkipAll
		}
		return nil
	})
	return found
}

func allocLogFiles(a *agent, allocID string) []string {
	dir := allocLogsDir(a, allocID)
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		fi, _ := e.Info()
		out = append(out, fmt.Sprintf("%s:%d", e.Name(), fi.Size()))
	}
	return out
}
