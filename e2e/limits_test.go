package e2e

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// shJob is a job of one bwrap-r task running /bin/sh -c script, neither
// restarted nor rescheduled.
func shJob(id, typ, script string, memoryMB int) string {
	return fmt.Sprintf(`job %q {
  type = %q
  group "g" {
`+runOnce+`    task "t" {
      driver = "bwrap-r"
      config {
        command = "/bin/sh"
        args    = ["-c", %q]
      }
      resources {
        cpu    = 100
        memory = %d
      }
    }
  }
}
`, id, typ, script, memoryMB)
}

// TestOOMKilled runs a task that outgrows resources.memory = 64: the kernel
// kills it in its cgroup, and Nomad's task events say it was OOM-killed.
func TestOOMKilled(t *testing.T) {
	a := sharedAgent(t)
	const job = "oom"
	// tail keeps the whole newline-free stream in memory; the pipeline's
	// status is tail's.
	file := writeJob(t, job, shJob(job, "batch", "head -c 200M /dev/zero | tail > /dev/null", 64))
	a.runJob(t, file, job)
	al := a.waitAlloc(t, job, 2*time.Minute, "terminal", terminal)
	t.Logf("%s", al)
	if al.ClientStatus != "failed" {
		t.Errorf("want the allocation failed, got %s", al.ClientStatus)
	}
	var pluginEvent, flag bool
	for _, e := range al.TaskStates["t"].Events {
		if e.Type == "Driver" && strings.Contains(e.DisplayMessage, "OOM") {
			pluginEvent = true
		}
		if e.Type == "Terminated" && e.Details["oom_killed"] == "true" {
			flag = true
		}
	}
	t.Logf("the plugin's OOM event: %v; Terminated event with oom_killed: %v", pluginEvent, flag)
	if !pluginEvent && !flag {
		t.Errorf("neither a Driver event mentioning OOM nor a Terminated event with oom_killed=true")
	}
	term := al.events("t", "Terminated")
	if len(term) != 1 || term[0].ExitCode != 128+9 {
		t.Errorf("want one Terminated event with exit code 137 (tail's SIGKILL), got %+v", term)
	}
}

// TestStatsOfBusyTask runs a busy loop and reads its resource usage through
// the client's allocation stats API and `nomad alloc status -stats`.
func TestStatsOfBusyTask(t *testing.T) {
	a := sharedAgent(t)
	const job = "busy"
	file := writeJob(t, job, shJob(job, "batch", "while :; do :; done", 64))
	a.runJob(t, file, job)
	al := a.waitRunning(t, job, "t", time.Minute)

	type usage struct {
		ResourceUsage struct {
			CpuStats struct {
				Percent, TotalTicks, UserMode, SystemMode float64
				Measured                                  []string
			}
			MemoryStats struct {
				RSS, Usage uint64
				Measured   []string
			}
		}
	}
	var stats struct {
		Tasks map[string]usage
	}
	var last string
	ok := eventually(30*time.Second, time.Second, func() bool {
		if err := a.get("/v1/client/allocation/"+al.ID+"/stats", &stats); err != nil {
			last = err.Error()
			return false
		}
		u, found := stats.Tasks["t"]
		last = fmt.Sprintf("%+v", stats)
		return found && u.ResourceUsage.CpuStats.Percent > 0 && u.ResourceUsage.MemoryStats.RSS > 0
	})
	if !ok {
		t.Fatalf("no non-zero CPU percent and RSS for task t after 30s; last: %s", last)
	}
	u := stats.Tasks["t"].ResourceUsage
	t.Logf("task t: cpu %.1f%% (%.0f ticks), rss %d, usage %d; measured %v / %v",
		u.CpuStats.Percent, u.CpuStats.TotalTicks, u.MemoryStats.RSS, u.MemoryStats.Usage, u.CpuStats.Measured, u.MemoryStats.Measured)
	// A busy loop takes a core; allow for sampling and a loaded machine.
	if u.CpuStats.Percent < 20 {
		t.Errorf("a busy loop uses %.1f%% CPU", u.CpuStats.Percent)
	}
	// TotalTicks is the MHz used, what Nomad's CLI and UI show: a driver
	// computes it from Percent and the node's compute (Nomad's own drivers
	// use cpustats.Tracker.TicksConsumed).
	if u.CpuStats.TotalTicks <= 0 {
		t.Errorf("CpuStats.TotalTicks = %.0f at %.1f%% CPU: the driver does not report the MHz used", u.CpuStats.TotalTicks, u.CpuStats.Percent)
	}

	// Percent of a core, as from Nomad's executor: not nanoseconds.
	c := u.CpuStats
	if c.UserMode < 20 || c.UserMode > 250 || c.SystemMode < 0 || c.SystemMode > 250 || c.Percent < c.UserMode {
		t.Errorf("User Mode %.2f, System Mode %.2f, Percent %.2f: want percents of a core", c.UserMode, c.SystemMode, c.Percent)
	}
	if slices.Contains(c.Measured, "Total Ticks") {
		t.Errorf("Measured %v names Total Ticks, which the CLI has no column for", c.Measured)
	}

	out := a.mustNomad(t, "alloc", "status", "-stats", al.ID)
	// The detailed table: one column per Measured name, each a percent.
	if i := strings.Index(out, "User Mode"); i < 0 {
		t.Errorf("no User Mode column in nomad alloc status -stats:\n%s", out)
	} else {
		t.Logf("detailed stats:\n%s", out[max(0, strings.LastIndex(out[:i], "\n\n")):])
		for _, f := range strings.Fields(strings.SplitN(out[i:], "\n", 3)[1]) {
			if v, err := strconv.ParseFloat(strings.TrimSuffix(f, "%"), 64); err == nil && strings.HasSuffix(f, "%") && v > 1000 {
				t.Errorf("nomad alloc status -stats shows %s", f)
			}
		}
	}
	i := strings.Index(out, "Task Resources:")
	if i < 0 {
		t.Fatalf("nomad alloc status -stats shows no task resources:\n%s", out)
	}
	res := out[i:]
	if j := strings.Index(res, "\n\n"); j > 0 {
		res = res[:j]
	}
	t.Logf("nomad alloc status -stats:\n%s", res)
	// CPU        Memory          Disk     Addresses
	// 97/100 MHz  328 KiB/64 MiB  300 MiB
	lines := strings.Split(res, "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[1], "CPU") {
		t.Fatalf("unexpected task resources table")
	}
	fs := strings.Fields(lines[2])
	var mhz, ofMHz int
	if _, err := fmt.Sscanf(fs[0], "%d/%d", &mhz, &ofMHz); err != nil || len(fs) < 5 || fs[1] != "MHz" {
		t.Fatalf("unexpected task resources row %q", lines[2])
	}
	if mhz <= 0 {
		t.Errorf("nomad alloc status -stats shows %d MHz of CPU for a busy loop (the CLI shows CpuStats.TotalTicks)", mhz)
	}
	if used := fs[2]; strings.HasPrefix(used, "0 ") || used == "0" {
		t.Errorf("nomad alloc status -stats shows no memory used: %q", lines[2])
	}
}

// TestStatsSideBySideRawExec runs the same busy loop under bwrap-r and under
// Nomad's raw_exec in one agent: the CPU figures are in the same units and
// columns, and agree within a factor of two (the two loops share the node's
// cores, so load moves both alike).
func TestStatsSideBySideRawExec(t *testing.T) {
	setup(t)
	a := newAgentOpts(t, agentOpts{extra: "\nplugin \"raw_exec\" {\n  config {\n    enabled = true\n  }\n}\n"})
	type cpuStats struct {
		Percent, UserMode, SystemMode float64
		Measured                      []string
	}
	stats := map[string]cpuStats{}
	for _, driver := range []string{"bwrap-r", "raw_exec"} {
		job := "busy-" + strings.ReplaceAll(driver, "_", "-")
		spec := strings.Replace(shJob(job, "batch", "while :; do :; done", 64), `driver = "bwrap-r"`, fmt.Sprintf("driver = %q", driver), 1)
		a.runJob(t, writeJob(t, job, spec), job)
	}
	for _, driver := range []string{"bwrap-r", "raw_exec"} {
		job := "busy-" + strings.ReplaceAll(driver, "_", "-")
		al := a.waitRunning(t, job, "t", time.Minute)
		var s struct {
			Tasks map[string]struct{ ResourceUsage struct{ CpuStats cpuStats } }
		}
		// A few seconds in, the loop's rate is steady.
		var c cpuStats
		if !eventually(30*time.Second, time.Second, func() bool {
			if err := a.get("/v1/client/allocation/"+al.ID+"/stats", &s); err != nil {
				return false
			}
			c = s.Tasks["t"].ResourceUsage.CpuStats
			return c.Percent > 10
		}) {
			t.Fatalf("%s: no CPU figures: %+v", driver, s)
		}
		stats[driver] = c
	}
	b, r := stats["bwrap-r"], stats["raw_exec"]
	t.Logf("bwrap-r %+v; raw_exec %+v", b, r)
	// raw_exec names the basic columns, or with cgroups the throttling ones
	// too (Nomad's ExecutorCgroupMeasuredCpuStats), which bwrap-r fills.
	for _, m := range r.Measured {
		if !slices.Contains(b.Measured, m) {
			t.Errorf("Measured: bwrap-r %v lacks raw_exec's %q", b.Measured, m)
		}
	}
	if got := strings.Join(b.Measured, ","); got != "System Mode,User Mode,Throttled Periods,Throttled Time,Percent" {
		t.Errorf("Measured %v: not the columns of Nomad's executor with cgroups", b.Measured)
	}
	for _, c := range []struct {
		name string
		b, r float64
	}{{"Percent", b.Percent, r.Percent}, {"User Mode", b.UserMode, r.UserMode}} {
		if c.b < c.r/2 || c.b > c.r*2 {
			t.Errorf("%s: bwrap-r %.1f, raw_exec %.1f: not within a factor of two", c.name, c.b, c.r)
		}
	}
}
