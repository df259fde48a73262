// Package cgroup holds a task to the resources its job asked for, through the
// cgroup(s) made for it: one directory on cgroups v2, one per controller on
// v1. It reads usage and OOM kills back from them.
package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Set is a task's cgroup directories.
type Set struct {
	// V2 is set on the unified hierarchy; Unified is then the task's dir.
	V2      bool
	Unified string
	// Controllers maps a v1 controller (memory, cpu, cpuacct, cpuset,
	// freezer, pids, devices) to the task's directory in it.
	Controllers map[string]string
	// Owned are directories bwrap-r made (not Nomad): removed on Teardown.
	Owned []string
}

// Dirs are the directories a task's first process joins.
func (s *Set) Dirs() []string {
	if s == nil {
		return nil
	}
	if s.V2 {
		return []string{s.Unified}
	}
	var dirs []string
	seen := map[string]bool{}
	for _, c := range []string{"freezer", "cpu", "cpuacct", "memory", "cpuset", "pids", "devices"} {
		if d, ok := s.Controllers[c]; ok && !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	return dirs
}

func (s *Set) dir(controller string) string {
	if s.V2 {
		return s.Unified
	}
	return s.Controllers[controller]
}

// Make creates the directories bwrap-r owns (v1 controllers Nomad does not
// make, such as pids).
func (s *Set) Make() error {
	for _, d := range s.Owned {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("cgroup %s: %w", d, err)
		}
	}
	return nil
}

// Teardown removes the directories bwrap-r made. The task must have ended.
func (s *Set) Teardown() {
	if s == nil {
		return
	}
	for _, d := range s.Owned {
		_ = os.Remove(d)
	}
}

// Limits are what a task may use. Zero values leave a limit unset.
type Limits struct {
	// MemoryMax is the hard limit in bytes; -1 means no hard limit.
	MemoryMax int64
	// MemoryLow is the soft reservation in bytes.
	MemoryLow int64
	// CPUShares is Nomad's cpu shares (v1 cpu.shares; v2 cpu.weight).
	CPUShares int64
	// Cpuset pins the task to reserved cores ("" leaves the share partition).
	Cpuset string
	// PidsMax caps processes and threads.
	PidsMax int64
	// Devices, when set, are the only device nodes the task may open or
	// make: v1 devices.allow rules ("c 1:3 rw"), everything else denied.
	Devices []string
}

// Apply writes the limits. Every limit is attempted; the errors are joined.
func (s *Set) Apply(l Limits) error {
	if s == nil {
		return nil
	}
	var errs []error
	w := func(controller, file, value string) {
		d := s.dir(controller)
		if d == "" {
			errs = append(errs, fmt.Errorf("no %s cgroup for %s", controller, file))
			return
		}
		if err := os.WriteFile(filepath.Join(d, file), []byte(value), 0); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
		}
	}
	switch {
	case l.MemoryMax < 0 && s.V2:
		w("memory", "memory.max", "max")
	case l.MemoryMax < 0:
		w("memory", "memory.limit_in_bytes", "-1")
	case l.MemoryMax > 0 && s.V2:
		w("memory", "memory.max", strconv.FormatInt(l.MemoryMax, 10))
	case l.MemoryMax > 0:
		w("memory", "memory.limit_in_bytes", strconv.FormatInt(l.MemoryMax, 10))
	}
	if l.MemoryLow > 0 {
		if s.V2 {
			w("memory", "memory.low", strconv.FormatInt(l.MemoryLow, 10))
		} else {
			w("memory", "memory.soft_limit_in_bytes", strconv.FormatInt(l.MemoryLow, 10))
		}
	}
	if l.CPUShares > 0 {
		if s.V2 {
			w("cpu", "cpu.weight", strconv.FormatUint(sharesToWeight(l.CPUShares), 10))
		} else {
			w("cpu", "cpu.shares", strconv.FormatInt(l.CPUShares, 10))
		}
	}
	if l.Cpuset != "" {
		w("cpuset", "cpuset.cpus", l.Cpuset)
	}
	if l.PidsMax > 0 {
		w("pids", "pids.max", strconv.FormatInt(l.PidsMax, 10))
	}
	if len(l.Devices) > 0 {
		if s.V2 {
			errs = append(errs, errors.New("device rules: cgroups v2 has no devices controller"))
		} else {
			w("devices", "devices.deny", "a")
			for _, r := range l.Devices {
				w("devices", "devices.allow", r)
			}
		}
	}
	return errors.Join(errs...)
}

// sharesToWeight maps cgroup v1 shares [2, 262144] onto v2 weight
// [1, 10000], as the kernel's and runc's conversion does.
func sharesToWeight(shares int64) uint64 {
	if shares < 2 {
		shares = 2
	}
	if shares > 262144 {
		shares = 262144
	}
	return uint64(1 + ((shares-2)*9999)/262142)
}

// OOMKills is how many processes of the task the OOM killer ended.
func (s *Set) OOMKills() uint64 {
	if s == nil {
		return 0
	}
	file := "memory.oom_control"
	if s.V2 {
		file = "memory.events"
	}
	d := s.dir("memory")
	if d == "" {
		return 0
	}
	return readKeyed(filepath.Join(d, file))["oom_kill"]
}

// Memory is a task's memory use in bytes.
type Memory struct {
	Usage, MaxUsage, RSS, Cache, Swap uint64
}

// MemoryUsage reads the memory controller.
func (s *Set) MemoryUsage() (Memory, error) {
	if s == nil || s.dir("memory") == "" {
		return Memory{}, errors.New("no memory cgroup")
	}
	d := s.dir("memory")
	var m Memory
	stat := readKeyed(filepath.Join(d, "memory.stat"))
	if s.V2 {
		m.Usage = readUint(filepath.Join(d, "memory.current"))
		m.MaxUsage = readUint(filepath.Join(d, "memory.peak"))
		m.Swap = readUint(filepath.Join(d, "memory.swap.current"))
		m.RSS, m.Cache = stat["anon"], stat["file"]
	} else {
		m.Usage = readUint(filepath.Join(d, "memory.usage_in_bytes"))
		m.MaxUsage = readUint(filepath.Join(d, "memory.max_usage_in_bytes"))
		m.RSS, m.Cache, m.Swap = stat["total_rss"], stat["total_cache"], stat["total_swap"]
	}
	return m, nil
}

// userHZ is the unit of v1's cpuacct.stat: USER_HZ, 100 on every Linux
// architecture Go supports.
const userHZ = 100

// CPUStats is a task's CPU use from its cgroup.
type CPUStats struct {
	// User and System are the CPU time the task's processes have used,
	// those that have exited included (a process tree's procfs times lose
	// them). Accounted is false when the cgroup does not account CPU.
	User, System time.Duration
	Accounted    bool
	// ThrottledPeriods and ThrottledNanos: how often and how long the task
	// was held back by its CPU limit.
	ThrottledPeriods, ThrottledNanos uint64
}

// CPU reads the task's CPU use: one file on v2 (cpu.stat), cpuacct.stat and
// cpu.stat on v1.
func (s *Set) CPU() CPUStats {
	var c CPUStats
	if s == nil {
		return c
	}
	if s.V2 {
		st := readKeyed(filepath.Join(s.Unified, "cpu.stat"))
		u, uok := st["user_usec"]
		sy, sok := st["system_usec"]
		c.User, c.System, c.Accounted = time.Duration(u)*time.Microsecond, time.Duration(sy)*time.Microsecond, uok && sok
		c.ThrottledPeriods, c.ThrottledNanos = st["nr_throttled"], st["throttled_usec"]*1000
		return c
	}
	if d := s.Controllers["cpuacct"]; d != "" {
		// Nanoseconds where the kernel has them (4.7+); cpuacct.stat counts
		// USER_HZ ticks, too coarse for a percent over a few seconds.
		u, uerr := readUintErr(filepath.Join(d, "cpuacct.usage_user"))
		sy, serr := readUintErr(filepath.Join(d, "cpuacct.usage_sys"))
		if uerr == nil && serr == nil {
			c.User, c.System, c.Accounted = time.Duration(u), time.Duration(sy), true
		} else {
			st := readKeyed(filepath.Join(d, "cpuacct.stat"))
			u, uok := st["user"]
			sy, sok := st["system"]
			c.User, c.System, c.Accounted = time.Duration(u)*time.Second/userHZ, time.Duration(sy)*time.Second/userHZ, uok && sok
		}
	}
	if d := s.Controllers["cpu"]; d != "" {
		st := readKeyed(filepath.Join(d, "cpu.stat"))
		c.ThrottledPeriods, c.ThrottledNanos = st["nr_throttled"], st["throttled_time"]
	}
	return c
}

func readUintErr(p string) (uint64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

func readUint(p string) uint64 {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// readKeyed reads "key value" lines.
func readKeyed(p string) map[string]uint64 {
	out := map[string]uint64{}
	b, err := os.ReadFile(p)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 {
			if n, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				out[f[0]] = n
			}
		}
	}
	return out
}
