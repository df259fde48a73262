package driver

import (
	"strconv"

	"github.com/hashicorp/nomad/plugins/drivers"

	"github.com/bwrap-r/bwrap-r/bwrap"
	"github.com/bwrap-r/bwrap-r/cgroup"
)

// usageToNomad converts a sample; prev (may be nil) gives the CPU percent.
// Memory and throttling come from the task's cgroup when it has one (cg; cpu
// is what was read of it).
func usageToNomad(u bwrap.Usage, prev *bwrap.Usage, cg *cgroup.Set, cpuStats cgroup.CPUStats, mhzPerCore float64) *drivers.TaskResourceUsage {
	cpu := &drivers.CpuStats{
		UserMode:   float64(u.UserTime.Nanoseconds()),
		SystemMode: float64(u.SystemTime.Nanoseconds()),
		Measured:   []string{"User Mode", "System Mode", "Percent"},
	}
	if prev != nil {
		wall := u.At.Sub(prev.At)
		used := (u.UserTime + u.SystemTime) - (prev.UserTime + prev.SystemTime)
		if wall > 0 {
			cpu.Percent = 100 * float64(used) / float64(wall)
		}
	}
	// Percent is of one core; Nomad shows MHz (its "ticks").
	if mhzPerCore > 0 {
		cpu.TotalTicks = cpu.Percent / 100 * mhzPerCore
		cpu.Measured = append(cpu.Measured, "Total Ticks")
	}
	mem := &drivers.MemoryStats{RSS: u.RSS, Measured: []string{"RSS"}}
	if cg != nil {
		if m, err := cg.MemoryUsage(); err == nil {
			mem = &drivers.MemoryStats{RSS: m.RSS, Cache: m.Cache, Swap: m.Swap, Usage: m.Usage, MaxUsage: m.MaxUsage,
				Measured: []string{"RSS", "Cache", "Swap", "Usage", "Max Usage"}}
		}
		cpu.ThrottledPeriods, cpu.ThrottledTime = cpuStats.ThrottledPeriods, cpuStats.ThrottledNanos
		cpu.Measured = append(cpu.Measured, "Throttled Periods", "Throttled Time")
	}
	return &drivers.TaskResourceUsage{
		ResourceUsage: &drivers.ResourceUsage{
			CpuStats:    cpu,
			MemoryStats: mem,
		},
		Timestamp: u.At.UnixNano(),
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
