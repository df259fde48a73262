package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests here read the files of the cgroup the client made for a task
// and hold on both cgroup versions: each reads the v2 file or its v1
// counterpart. make test runs them on the host (v1 here) and make test-v2 in
// a v2 guest.

// cgroupV2 reports whether /sys/fs/cgroup is the unified hierarchy.
func cgroupV2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// taskCgroup is a task's cgroup: on v2 its scope (nomad.slice/<partition>/
// <alloc>.<task>.scope), on v1 its directory in each controller.
type taskCgroup struct {
	v2      bool
	unified string
	v1      map[string]string // controller -> dir
}

// dir is where a controller's files are.
func (c taskCgroup) dir(controller string) string {
	if c.v2 {
		return c.unified
	}
	return c.v1[controller]
}

func (c taskCgroup) read(t *testing.T, controller, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir(controller), file))
	if err != nil {
		t.Errorf("%v", err)
	}
	return strings.TrimSpace(string(b))
}

// procs lists the pids in the task's cgroup (v1: its memory cgroup).
func (c taskCgroup) procs() []string {
	b, _ := os.ReadFile(filepath.Join(c.dir("memory"), "cgroup.procs"))
	return strings.Fields(string(b))
}

// findTaskCgroup finds the cgroup the client made for a task, wherever its
// parent is.
func findTaskCgroup(t *testing.T, allocID, task string) taskCgroup {
	t.Helper()
	scope := allocID + "." + task
	if cgroupV2() {
		m, _ := filepath.Glob("/sys/fs/cgroup/*/*/" + scope + ".scope")
		if len(m) != 1 {
			t.Fatalf("want one v2 cgroup %s.scope, found %v", scope, m)
		}
		return taskCgroup{v2: true, unified: m[0]}
	}
	c := taskCgroup{v1: map[string]string{}}
	for _, ctl := range []string{"memory", "cpu", "pids"} {
		c.v1[ctl] = filepath.Join("/sys/fs/cgroup", ctl, "nomad", scope)
	}
	// A task of reserved cores has a cpuset of its own; others share one.
	c.v1["cpuset"] = filepath.Join("/sys/fs/cgroup/cpuset/nomad/reserve", scope)
	if _, err := os.Stat(c.v1["cpuset"]); err != nil {
		c.v1["cpuset"] = "/sys/fs/cgroup/cpuset/nomad/share"
	}
	for ctl, d := range c.v1 {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("no v1 %s cgroup for %s: %v", ctl, scope, err)
		}
	}
	return c
}

// inCgroup waits until a process whose command line holds marker is in the
// task's cgroup, and returns its pid.
func inCgroup(t *testing.T, c taskCgroup, marker string) int {
	t.Helper()
	var pid int
	if !eventually(30*time.Second, 250*time.Millisecond, func() bool {
		for _, p := range c.procs() {
			b, _ := os.ReadFile("/proc/" + p + "/cmdline")
			if strings.Contains(string(b), marker) {
				pid, _ = strconv.Atoi(p)
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no process with %q in the task's cgroup %s (procs %v)", marker, c.dir("memory"), c.procs())
	}
	return pid
}

// cpusAllowed is a process's Cpus_allowed_list.
func cpusAllowed(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no Cpus_allowed_list for pid %d", pid)
	return ""
}

// cpuList expands a cpuset list ("0-2,4") into its CPUs.
func cpuList(s string) map[int]bool {
	cpus := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		lo, hi, ok := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		b := a
		if ok {
			b, _ = strconv.Atoi(hi)
		}
		for i := a; i <= b; i++ {
			cpus[i] = true
		}
	}
	return cpus
}

// cpuWeight is cgroup v2's cpu.weight for v1 shares, the conversion the
// kernel documents and runc (so Nomad's executor) uses.
func cpuWeight(shares int) int { return 1 + (shares-2)*9999/262142 }

const limitsJob = `job "limits" {
  type = "service"
  group "g" {
` + runOnce + `    task "soft" {
      driver = "bwrap-r"
      config {
        command    = "/bin/sh"
        args       = ["-c", "(i=0; while [ $i -lt 100 ]; do sleep 6001 & i=$((i+1)); done) 2>/dev/null; echo forked; exec sleep 6000"]
        pids_limit = 64
      }
      resources {
        cpu        = 300
        memory     = 64
        memory_max = 128
      }
    }
    task "nomax" {
      driver = "bwrap-r"
      config {
        command = "/bin/sleep"
        args    = ["6002"]
      }
      resources {
        cpu        = 100
        memory     = 64
        memory_max = -1
      }
    }
    task "cores" {
      driver = "bwrap-r"
      config {
        command = "/bin/sleep"
        args    = ["6003"]
      }
      resources {
        cores  = 1
        memory = 64
      }
    }
  }
}
`

// TestCgroupLimits runs tasks with memory and memory_max (oversubscription:
// the hard limit and the reservation), memory_max = -1 (no hard limit), cpu
// shares, a pids limit that a task hits, and a reserved core, in a client
// with cgroup_parent set, and reads each limit back from the cgroup the
// client made for the task.
func TestCgroupLimits(t *testing.T) {
	setup(t)
	a := newAgentOpts(t, agentOpts{client: `  cgroup_parent = "bwrap-r-e2e.slice"`})
	if err := a.waitDriver(true, time.Minute); err != nil {
		t.Fatal(err)
	}
	// memory_max is honoured only with memory oversubscription on.
	a.mustNomad(t, "operator", "scheduler", "set-config", "-memory-oversubscription=true")
	a.runJob(t, writeJob(t, "limits", limitsJob), "limits")
	al := a.waitAlloc(t, "limits", 2*time.Minute, "running", func(al *allocation) bool {
		if terminal(al) {
			t.Fatalf("limits ended:\n%s", al)
		}
		for _, task := range []string{"soft", "nomax", "cores"} {
			if ts := al.TaskStates[task]; ts == nil || ts.State != "running" {
				return false
			}
		}
		return true
	})
	v2 := cgroupV2()
	t.Logf("cgroups v2: %v", v2)

	t.Run("memory_max", func(t *testing.T) {
		c := findTaskCgroup(t, al.ID, "soft")
		inCgroup(t, c, "6001")
		hard, soft := "memory.limit_in_bytes", "memory.soft_limit_in_bytes"
		if v2 {
			hard, soft = "memory.max", "memory.low"
		}
		if got := c.read(t, "memory", hard); got != strconv.Itoa(128<<20) {
			t.Errorf("%s = %s, want memory_max 128 MiB (%d)", hard, got, 128<<20)
		}
		if got := c.read(t, "memory", soft); got != strconv.Itoa(64<<20) {
			t.Errorf("%s = %s, want memory 64 MiB (%d)", soft, got, 64<<20)
		}
	})

	t.Run("no-hard-limit", func(t *testing.T) {
		c := findTaskCgroup(t, al.ID, "nomax")
		inCgroup(t, c, "6002")
		if v2 {
			if got := c.read(t, "memory", "memory.max"); got != "max" {
				t.Errorf("memory.max = %s, want max (memory_max = -1)", got)
			}
			if got := c.read(t, "memory", "memory.low"); got != strconv.Itoa(64<<20) {
				t.Errorf("memory.low = %s, want %d", got, 64<<20)
			}
			return
		}
		got, _ := strconv.ParseUint(c.read(t, "memory", "memory.limit_in_bytes"), 10, 64)
		if got < 1<<60 {
			t.Errorf("memory.limit_in_bytes = %d, want unlimited (memory_max = -1)", got)
		}
	})

	t.Run("cpu", func(t *testing.T) {
		c := findTaskCgroup(t, al.ID, "soft")
		if v2 {
			if got, want := c.read(t, "cpu", "cpu.weight"), strconv.Itoa(cpuWeight(300)); got != want {
				t.Errorf("cpu.weight = %s, want %s (cpu = 300)", got, want)
			}
			return
		}
		if got := c.read(t, "cpu", "cpu.shares"); got != "300" {
			t.Errorf("cpu.shares = %s, want 300", got)
		}
	})

	t.Run("pids", func(t *testing.T) {
		c := findTaskCgroup(t, al.ID, "soft")
		if got := c.read(t, "pids", "pids.max"); got != "64" {
			t.Errorf("pids.max = %s, want the task's pids_limit 64", got)
		}
		// The task forks 100 sleeps: the limit holds it.
		var events string
		if !eventually(30*time.Second, 250*time.Millisecond, func() bool {
			events = c.read(t, "pids", "pids.events")
			return strings.HasPrefix(events, "max ") && events != "max 0"
		}) {
			t.Errorf("pids.events %q: the task never hit its limit", events)
		}
		cur, _ := strconv.Atoi(c.read(t, "pids", "pids.current"))
		if cur < 2 || cur > 64 {
			t.Errorf("pids.current = %d, want 2..64", cur)
		}
		t.Logf("pids.current %d, pids.events %q", cur, events)
	})

	t.Run("reserved-core", func(t *testing.T) {
		c := findTaskCgroup(t, al.ID, "cores")
		if v2 && filepath.Base(filepath.Dir(c.unified)) != "reserve.slice" {
			t.Errorf("the cores task's cgroup %s is not in the reserve partition", c.unified)
		}
		if !v2 && !strings.Contains(c.v1["cpuset"], "/reserve/") {
			t.Errorf("the cores task's cpuset %s is not in the reserve partition", c.v1["cpuset"])
		}
		cpus := c.read(t, "cpuset", "cpuset.cpus")
		if n := len(cpuList(cpus)); n != 1 {
			t.Fatalf("cpuset.cpus = %q: want the one reserved core", cpus)
		}
		pid := inCgroup(t, c, "6003")
		if got := cpusAllowed(t, pid); got != cpus {
			t.Errorf("the cores task runs on CPUs %s, want its reserved core %s", got, cpus)
		}
		// Tasks in the share partition no longer run on it.
		share := findTaskCgroup(t, al.ID, "nomax")
		if v2 && filepath.Base(filepath.Dir(share.unified)) != "share.slice" {
			t.Errorf("the nomax task's cgroup %s is not in the share partition", share.unified)
		}
		other := cpuList(cpusAllowed(t, inCgroup(t, share, "6002")))
		for cpu := range cpuList(cpus) {
			if other[cpu] {
				t.Errorf("a share task may still run on reserved core %d (%v)", cpu, other)
			}
		}
		t.Logf("reserved core %s; share tasks on %v", cpus, other)
	})

	t.Run("client-cgroup", func(t *testing.T) {
		// The task is where the client put it: its /proc/PID/cgroup names the
		// directory found above (no cgroup namespace).
		c := findTaskCgroup(t, al.ID, "nomax")
		pid := inCgroup(t, c, "6002")
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err != nil {
			t.Fatal(err)
		}
		lines := cgroupLines(string(b))
		if v2 {
			if want := strings.TrimPrefix(c.unified, "/sys/fs/cgroup"); lines[""] != want {
				t.Errorf("/proc/%d/cgroup %q, want %s", pid, b, want)
			}
			return
		}
		if want := strings.TrimPrefix(c.v1["memory"], "/sys/fs/cgroup/memory"); lines["memory"] != want {
			t.Errorf("/proc/%d/cgroup %q, want memory:%s", pid, b, want)
		}
	})
}

// stopJob is a job whose task leaves a double-forked process (its own
// session, reparented to the sandbox's pid 1) and handles kill_signal as
// trap says.
func stopTestJob(id, trap, killSignal, killTimeout, leftover string) string {
	script := trap + "; (setsid sh -c 'trap \"\" TERM INT USR1; exec sleep " + leftover + "' &); echo ready; while :; do sleep 1; done"
	return fmt.Sprintf(`job %q {
  type = "service"
  group "g" {
`+runOnce+`    task "t" {
      driver = "bwrap-r"
      config {
        command = "/bin/sh"
        args    = ["-c", %q]
      }
      kill_signal  = %q
      kill_timeout = %q
      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
`, id, script, killSignal, killTimeout)
}

// TestCgroupStop stops a task that handles its kill_signal and one that
// ignores it: the first ends on the signal, well before kill_timeout, the
// second is killed once kill_timeout has passed, and in both the process
// that double-forked away from the task is gone with it, its cgroup empty.
func TestCgroupStop(t *testing.T) {
	a := sharedAgent(t)
	cases := []struct {
		job, trap, signal, leftover string
		timeout                     time.Duration
		graceful                    bool
	}{
		{"stop-graceful", `trap 'echo got USR1; exit 0' USR1`, "SIGUSR1", "6011", 30 * time.Second, true},
		{"stop-stubborn", `trap '' TERM INT USR1`, "SIGTERM", "6012", 4 * time.Second, false},
	}
	type running struct {
		al *allocation
		cg taskCgroup
	}
	runs := map[string]running{}
	for _, c := range cases {
		a.runJob(t, writeJob(t, c.job, stopTestJob(c.job, c.trap, c.signal, c.timeout.String(), c.leftover)), c.job)
	}
	for _, c := range cases {
		al := a.waitRunning(t, c.job, "t", 2*time.Minute)
		cg := findTaskCgroup(t, al.ID, "t")
		leftover := inCgroup(t, cg, "sleep "+c.leftover)
		if ppid, _ := procParent(leftover); ppid == 0 {
			t.Fatalf("%s: no parent for the leftover %d", c.job, leftover)
		}
		runs[c.job] = running{al, cg}
	}
	for _, c := range cases {
		a.stopJob(c.job)
	}
	for _, c := range cases {
		t.Run(c.job, func(t *testing.T) {
			r := runs[c.job]
			al := a.waitAlloc(t, c.job, 2*time.Minute, "terminal or stopped", func(al *allocation) bool {
				ts := al.TaskStates["t"]
				return ts != nil && ts.State == "dead"
			})
			killing, term := al.events("t", "Killing"), al.events("t", "Terminated")
			if len(killing) != 1 || len(term) != 1 {
				t.Fatalf("want one Killing and one Terminated event:\n%s", al)
			}
			took := time.Duration(term[0].Time - killing[0].Time)
			stdout, _ := a.nomad("alloc", "logs", al.ID, "t")
			t.Logf("%s: Terminated %v after Killing (%q); exit %d %v; stdout %q", c.job, took.Round(time.Millisecond),
				killing[0].DisplayMessage, term[0].ExitCode, term[0].Details, stdout)
			if c.graceful {
				if !strings.Contains(stdout, "got USR1") || term[0].ExitCode != 0 {
					t.Errorf("the task did not end on its kill_signal %s", c.signal)
				}
				if took >= c.timeout {
					t.Errorf("a task that ends on its signal took %v, the whole kill_timeout", took)
				}
			} else {
				if took < c.timeout-500*time.Millisecond {
					t.Errorf("killed %v after the stop, before kill_timeout %v", took, c.timeout)
				}
				if term[0].Details["signal"] != "9" && term[0].ExitCode != 137 {
					t.Errorf("want the task killed by SIGKILL, got %+v", term[0])
				}
			}
			var left []string
			if !eventually(10*time.Second, 100*time.Millisecond, func() bool {
				left = processesWith("sleep " + c.leftover)
				return len(left) == 0
			}) {
				t.Errorf("the double-forked process outlived the stop: %v", left)
			}
			if procs := r.cg.procs(); len(procs) > 0 {
				t.Errorf("the task's cgroup %s still holds %v", r.cg.dir("memory"), procs)
			}
		})
	}
}

// busyJob runs the same work under a driver: one process that holds 32 MiB
// and spins.
func busyJob(id, driver string) string {
	return fmt.Sprintf(`job %q {
  type = "service"
  group "g" {
`+runOnce+`    task "t" {
      driver = %q
      config {
        command = "/usr/bin/awk"
        args    = ["BEGIN { s = \"x\"; for (i = 0; i < 25; i++) s = s s; while (1) n++ }"]
      }
      resources {
        cpu    = 100
        memory = 128
      }
    }
  }
}
`, id, driver)
}

type taskUsage struct {
	ResourceUsage struct {
		CpuStats struct {
			Percent, TotalTicks, UserMode, SystemMode float64
			Measured                                  []string
		}
		MemoryStats struct {
			RSS, Cache, Usage, MaxUsage uint64
			Measured                    []string
		}
	}
}

// usage averages the task's stats over n samples a second apart.
func (a *agent) usage(t *testing.T, allocID string, n int) taskUsage {
	t.Helper()
	var sum taskUsage
	for i := 0; i < n; i++ {
		var stats struct{ Tasks map[string]taskUsage }
		if err := a.get("/v1/client/allocation/"+allocID+"/stats", &stats); err != nil {
			t.Fatal(err)
		}
		u := stats.Tasks["t"].ResourceUsage
		s := &sum.ResourceUsage
		s.CpuStats.Percent += u.CpuStats.Percent / float64(n)
		s.CpuStats.UserMode += u.CpuStats.UserMode / float64(n)
		s.CpuStats.SystemMode += u.CpuStats.SystemMode / float64(n)
		s.MemoryStats.RSS += u.MemoryStats.RSS / uint64(n)
		s.MemoryStats.Usage += u.MemoryStats.Usage / uint64(n)
		s.CpuStats.Measured, s.MemoryStats.Measured = u.CpuStats.Measured, u.MemoryStats.Measured
		time.Sleep(time.Second)
	}
	return sum
}

// busyMarker is in the command line of busyJob's process.
const busyMarker = "s = s s"

// procCPU is a process's user and system time so far, from /proc/PID/stat.
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	d, err := readProcCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// readProcCPU is procCPU for a process that may be gone.
func readProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	i := bytes.LastIndexByte(b, ')')
	if err != nil || i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: %v", pid, err)
	}
	// Fields 14 and 15, utime and stime, in USER_HZ (100 a second).
	fs := strings.Fields(string(b[i+1:]))
	if len(fs) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fs))
	}
	u, _ := strconv.Atoi(fs[11])
	sy, _ := strconv.Atoi(fs[12])
	return time.Duration(u+sy) * time.Second / 100, nil
}

// busyPid finds busyJob's process: root's (raw_exec) or a task UID's.
func busyPid(t *testing.T, root bool) int {
	t.Helper()
	awk, err := filepath.EvalSymlinks("/usr/bin/awk")
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if !eventually(30*time.Second, 250*time.Millisecond, func() bool {
		for _, p := range processesWith(busyMarker) {
			n, _ := strconv.Atoi(strings.Fields(p)[0])
			// Not bwrap, whose command line holds the task's too.
			if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", n)); exe != awk {
				continue
			}
			fi, err := os.Stat(fmt.Sprintf("/proc/%d", n))
			if err == nil && (fi.Sys().(*syscall.Stat_t).Uid == 0) == root {
				pid = n
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no busy process (root: %v): %v", root, processesWith(busyMarker))
	}
	return pid
}

// TestStatsAgainstRawExec runs the same work (a process that holds 32 MiB
// and spins) under bwrap-r and under Nomad's raw_exec, side by side. The CPU
// bwrap-r reports (from its task's cgroup: v2 cpu.stat, v1 cpuacct) matches
// what the kernel counted for the process over the same seconds, and its
// memory (v2 memory.stat, v1 the memory controller's) matches what
// raw_exec's executor reports for its twin.
func TestStatsAgainstRawExec(t *testing.T) {
	setup(t)
	a := newAgentOpts(t, agentOpts{extra: `plugin "raw_exec" {
  config {
    enabled = true
  }
}
`})
	if err := a.waitDriver(true, time.Minute); err != nil {
		t.Fatal(err)
	}
	a.runJob(t, writeJob(t, "busy-bwrap", busyJob("busy-bwrap", "bwrap-r")), "busy-bwrap")
	a.runJob(t, writeJob(t, "busy-raw", busyJob("busy-raw", "raw_exec")), "busy-raw")
	ours := a.waitRunning(t, "busy-bwrap", "t", 2*time.Minute)
	theirs := a.waitRunning(t, "busy-raw", "t", 2*time.Minute)
	// bwrap-r's runs as a task UID, raw_exec's as root.
	ourPid, theirPid := busyPid(t, false), busyPid(t, true)
	// Let both fill their 32 MiB and reach a steady state.
	time.Sleep(5 * time.Second)
	const samples = 8
	start := time.Now()
	ourCPU0, theirCPU0 := procCPU(t, ourPid), procCPU(t, theirPid)
	var u, r taskUsage
	done := make(chan struct{})
	go func() { r = a.usage(t, theirs.ID, samples); close(done) }()
	u = a.usage(t, ours.ID, samples)
	<-done
	wall := time.Since(start)
	ourTruth := 100 * float64(procCPU(t, ourPid)-ourCPU0) / float64(wall)
	theirTruth := 100 * float64(procCPU(t, theirPid)-theirCPU0) / float64(wall)
	uc, rc := u.ResourceUsage.CpuStats, r.ResourceUsage.CpuStats
	um, rm := u.ResourceUsage.MemoryStats, r.ResourceUsage.MemoryStats
	t.Logf("bwrap-r:  cpu %.1f%% (user %.1f, system %.1f; the kernel counted %.1f%%) %v; rss %d KiB, usage %d KiB %v",
		uc.Percent, uc.UserMode, uc.SystemMode, ourTruth, uc.Measured, um.RSS>>10, um.Usage>>10, um.Measured)
	t.Logf("raw_exec: cpu %.1f%% (user %.1f, system %.1f; the kernel counted %.1f%%) %v; rss %d KiB, usage %d KiB %v",
		rc.Percent, rc.UserMode, rc.SystemMode, theirTruth, rc.Measured, rm.RSS>>10, rm.Usage>>10, rm.Measured)
	if ourTruth < 20 {
		t.Fatalf("the busy task got %.1f%% of a core: no measure", ourTruth)
	}
	// Sampled a second apart by the client, over about the same seconds.
	if d := uc.Percent - ourTruth; d > 15+ourTruth/4 || d < -15-ourTruth/4 {
		t.Errorf("bwrap-r reports %.1f%% CPU for a process the kernel counted %.1f%% for", uc.Percent, ourTruth)
	}
	if uc.UserMode < uc.Percent/2 {
		t.Errorf("bwrap-r: user %.1f%% of %.1f%%: a busy loop is user time", uc.UserMode, uc.Percent)
	}
	const held = 32 << 20
	if um.RSS < held || um.RSS > 2*held {
		t.Errorf("bwrap-r reports RSS %d KiB for a process holding %d KiB", um.RSS>>10, held>>10)
	}
	if rm.RSS == 0 {
		t.Fatalf("raw_exec reports no RSS: nothing to compare with")
	}
	if um.RSS < rm.RSS*2/3 || um.RSS > rm.RSS*3/2 {
		t.Errorf("bwrap-r reports RSS %d KiB where raw_exec reports %d KiB for the same work", um.RSS>>10, rm.RSS>>10)
	}
	if um.Usage < um.RSS {
		t.Errorf("bwrap-r: usage %d below RSS %d", um.Usage, um.RSS)
	}
}
