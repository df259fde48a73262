package driver

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/client/lib/cgroupslib"
	"github.com/hashicorp/nomad/nomad/structs"
	"github.com/hashicorp/nomad/plugins/drivers"
	"github.com/hashicorp/nomad/plugins/drivers/testutils"
)

// limitedTask is a task with resources and the cgroup the Nomad client would
// have made for it.
func limitedTask(t *testing.T, h *testutils.DriverHarness, name string, memoryMB int64, tc TaskConfig) *drivers.TaskConfig {
	t.Helper()
	task := newTaskWith(t, h, name, tc, func(task *drivers.TaskConfig) {
		task.Resources = &drivers.Resources{
			NomadResources: &structs.AllocatedTaskResources{
				Memory: structs.AllocatedMemoryResources{MemoryMB: memoryMB},
				Cpu:    structs.AllocatedCpuResources{CpuShares: 100},
			},
			LinuxResources: &drivers.LinuxResources{
				CPUShares:        100,
				MemoryLimitBytes: memoryMB << 20,
				CpusetCgroupPath: cgroupslib.LinuxResourcesPath(task.AllocID, name, false),
			},
		}
	})
	h.MakeTaskCgroup(task.AllocID, name)
	return task
}

func TestHarnessTaskRunsInItsCgroup(t *testing.T) {
	h, d := newHarness(t, Config{})
	task := limitedTask(t, h, "cg", 128, sh("cat /proc/self/cgroup; sleep 30"))
	start(t, h, task)
	// v1: a line per hierarchy, each naming <alloc>.<task>; v2: one line,
	// 0::/nomad.slice/<partition>/<alloc>.<task>.scope.
	scope := task.AllocID + "." + task.Name
	waitLog(t, task, "stdout", scope)
	out := logs(t, task, "stdout")
	if !strings.Contains(out, scope) {
		t.Fatalf("task not in its cgroup %s: %q", scope, out)
	}
	th, _ := d.tasks.Get(task.ID)
	cg := th.state.Cgroups
	if cg == nil {
		t.Fatal("no cgroups in the task state")
	}
	limitFile := "memory.limit_in_bytes"
	dir := cg.Controllers["memory"]
	if cg.V2 {
		limitFile, dir = "memory.max", cg.Unified
		if want := "0::" + strings.TrimPrefix(cg.Unified, "/sys/fs/cgroup") + "\n"; out != want {
			t.Fatalf("/proc/self/cgroup %q, want %q", out, want)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, limitFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(b)) != strconv.Itoa(128<<20) {
		t.Fatalf("%s = %s, want %d", limitFile, b, 128<<20)
	}
}

func TestHarnessOOMKilled(t *testing.T) {
	h, _ := newHarness(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, _ := h.TaskEvents(ctx)
	// tail keeps a line without newlines whole: 200 MiB in a 64 MiB task.
	task := limitedTask(t, h, "oom", 64, sh("head -c 200M /dev/zero | tail > /dev/null; echo survived"))
	start(t, h, task)
	res := waitExit(t, h, task.ID, 60*time.Second)
	if !res.OOMKilled {
		t.Fatalf("exit %+v not reported as OOM killed (stdout %q)", res, logs(t, task, "stdout"))
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.TaskID == task.ID && strings.Contains(ev.Message, "OOM") {
				return
			}
		case <-deadline:
			t.Fatal("no OOM task event")
		}
	}
}

func TestHarnessForkBombHeldByPidsLimit(t *testing.T) {
	h, d := newHarness(t, Config{})
	task := limitedTask(t, h, "bomb", 256, TaskConfig{Command: "/bin/sh", PidsLimit: 40,
		Args: []string{"-c", `bomb() { bomb & bomb & wait; }; bomb`}})
	start(t, h, task)
	th, _ := d.tasks.Get(task.ID)
	cg := th.state.Cgroups
	dir := cg.Controllers["pids"]
	if cg.V2 {
		dir = cg.Unified
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ev, _ := os.ReadFile(filepath.Join(dir, "pids.events"))
		if strings.HasPrefix(string(ev), "max ") && !strings.HasPrefix(string(ev), "max 0") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fork bomb never hit the pids limit: pids.events %q", ev)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cur, _ := os.ReadFile(filepath.Join(dir, "pids.current"))
	if n, _ := strconv.Atoi(strings.TrimSpace(string(cur))); n == 0 || n > 40 {
		t.Fatalf("pids.current = %d, want 1..40", n)
	}
	// The node stays responsive, and stopping the task ends the bomb.
	if err := h.StopTask(task.ID, time.Second, "SIGTERM"); err != nil {
		t.Fatal(err)
	}
	waitExit(t, h, task.ID, 20*time.Second)
	if th.sandbox.Init.Alive() {
		t.Fatal("fork bomb survived the stop")
	}
}

func TestHarnessStatsFromBusyTask(t *testing.T) {
	h, _ := newHarness(t, Config{})
	task := limitedTask(t, h, "busy", 128, sh("while :; do :; done"))
	start(t, h, task)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch, err := h.TaskStats(ctx, task.ID, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var last *drivers.TaskResourceUsage
	for i := 0; i < 3; i++ {
		select {
		case u := <-ch:
			last = u
		case <-ctx.Done():
			t.Fatal("no stats")
		}
	}
	if last.ResourceUsage.CpuStats.Percent < 10 {
		t.Errorf("busy task cpu percent %.1f", last.ResourceUsage.CpuStats.Percent)
	}
	if last.ResourceUsage.MemoryStats.Usage == 0 && last.ResourceUsage.MemoryStats.RSS == 0 {
		t.Errorf("no memory figures: %+v", last.ResourceUsage.MemoryStats)
	}
}

// CPU figures are percents of a core over each interval, as from Nomad's
// executor, never negative (the client counts TotalTicks up: a falling
// counter panics a dev agent), and a child that exited is counted: the
// percents summed over the run match the CPU time the shell's times builtin
// reports for its children. Both are CPU time, so the machine's load does
// not change the verdict.
func TestHarnessStatsCPUPercentOfAnExitedChild(t *testing.T) {
	h, _ := newHarness(t, Config{})
	task := limitedTask(t, h, "burst", 128, sh(`(i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done); times; echo done; sleep 30`))
	start(t, h, task)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const every = 250 * time.Millisecond
	ch, err := h.TaskStats(ctx, task.ID, every)
	if err != nil {
		t.Fatal(err)
	}
	var used time.Duration // the percents integrated over their intervals
	var lastAt int64
	var doneSince time.Time
	for n := 0; ; n++ {
		var u *drivers.TaskResourceUsage
		select {
		case u = <-ch:
		case <-ctx.Done():
			t.Fatalf("stats stream ended after %d samples", n)
		}
		if u == nil {
			t.Fatalf("stats stream closed after %d samples", n)
		}
		cpu := u.ResourceUsage.CpuStats
		if cpu.Percent < 0 || cpu.UserMode < 0 || cpu.SystemMode < 0 || cpu.TotalTicks < 0 {
			t.Fatalf("sample %d: negative CPU: %+v", n, cpu)
		}
		if d := cpu.Percent - cpu.UserMode - cpu.SystemMode; d > 1e-6 || d < -1e-6 {
			t.Fatalf("sample %d: Percent %.2f is not User %.2f + System %.2f", n, cpu.Percent, cpu.UserMode, cpu.SystemMode)
		}
		if got := strings.Join(cpu.Measured, ","); got != "System Mode,User Mode,Throttled Periods,Throttled Time,Percent" {
			t.Fatalf("Measured %q: not the columns Nomad's executor names", got)
		}
		if lastAt != 0 {
			used += time.Duration(cpu.Percent / 100 * float64(u.Timestamp-lastAt))
		}
		lastAt = u.Timestamp
		if doneSince.IsZero() && strings.Contains(logs(t, task, "stdout"), "done") {
			doneSince = time.Now()
		}
		// Two more samples after the loop ended cover its last interval.
		if !doneSince.IsZero() && time.Since(doneSince) > 3*every {
			break
		}
	}
	// dash's times: the shell's user and system time, then its children's.
	lines := strings.Split(logs(t, task, "stdout"), "\n")
	if len(lines) < 2 {
		t.Fatalf("no times output: %q", lines)
	}
	f := strings.Fields(lines[1])
	if len(f) != 2 {
		t.Fatalf("times: %q", lines[1])
	}
	cu, err1 := time.ParseDuration(f[0])
	cs, err2 := time.ParseDuration(f[1])
	if err1 != nil || err2 != nil {
		t.Fatalf("times %q: %v %v", lines[1], err1, err2)
	}
	child := cu + cs
	t.Logf("the stats' percents add up to %v of CPU; the exited child used %v", used, child)
	if child < 100*time.Millisecond {
		t.Fatalf("the child used only %v: no measure", child)
	}
	if used < child*8/10 || used > child*15/10+500*time.Millisecond {
		t.Errorf("the stats count %v of CPU for a child that used %v", used, child)
	}
}

// A start that fails after the task's cgroups were made leaves none behind.
func TestHarnessFailedStartLeavesNoCgroup(t *testing.T) {
	h, _ := newHarness(t, Config{})
	task := limitedTask(t, h, "nofifo", 64, sh("true"))
	// The logs dir is a link: opening it for the task's output fails, after
	// the cgroups were made.
	plantLogsLink(t, task)
	if _, _, err := h.StartTask(task); err == nil {
		t.Fatal("started with a link for its logs dir")
	}
	cg := taskCgroups(task)
	if cg.V2 {
		// v2: bwrap-r makes no cgroup of its own (cg.Owned is empty); the
		// scope is the client's, and nothing of the task is left in it.
		if b, err := os.ReadFile(filepath.Join(cg.Unified, "cgroup.procs")); err != nil || len(b) > 0 {
			t.Errorf("the task's scope %s after the failed start: procs %q (%v)", cg.Unified, b, err)
		}
		return
	}
	if len(cg.Owned) == 0 {
		t.Fatal("v1: bwrap-r owns no cgroup of the task (it makes the pids one)")
	}
	for _, d := range cg.Owned {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("cgroup %s left behind", d)
		}
	}
}
