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
			t.Logf("%s x%d: running after %v; processes per task %.2f MiB (agent included %.2f); MemAvailable -%.2f MiB a task",
				r.driver, n, took.Round(time.Millisecond), rows[len(rows)-1].perTaskKiB/1024, rows[len(rows)-1].nodeKiB/1024, rows[len(rows)-1].availKiB/1024)
		}
		a.mustNomad(t, "job", "stop", "-purge", job)
		if !eventually(10*time.Minute, time.Second, func() bool { return measureNode(a.cmd.Process.Pid).sleeps == 0 }) {
			t.Fatalf("%s: sleeps still running 10 minutes after the stop", r.driver)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Through one real agent (dev mode), `sleep` tasks (memory 16, cpu 1); load %s at the start, %s at the end.\n\n", load0, loadAvg())
	b.WriteString("| driver | tasks | until all running | host processes a task adds (PSS) | with the agent's growth | MemAvailable drop a task |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d | %.1f s | %.2f MiB | %.2f MiB | %.2f MiB |\n", r.driver, r.n, r.toRunning.Seconds(), r.perTaskKiB/1024, r.nodeKiB/1024, r.availKiB/1024)
	}
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
