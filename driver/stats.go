package driver

import (
	"strconv"
	"time"

	"github.com/hashicorp/nomad/plugins/drivers"

	"github.com/bwrap-r/bwrap-r/bwrap"
	"github.com/bwrap-r/bwrap-r/cgroup"
)

// usageToNomad converts a sample; prev (may be nil) gives the rates. As in
// Nomad's executor, UserMode, SystemMode and Percent are percent of one core
// over the interval (the CLI prints them with "%"), TotalTicks is that use in
// MHz, and Measured names only what the CLI has columns for. Memory and
// throttling come from the task's cgroup when it has one (cg; cpu is what was
// read of it).
func usageToNomad(u bwrap.Usage, prev *bwrap.Usage, cg *cgroup.Set, cpuStats cgroup.CPUStats, mhzPerCore float64) *drivers.TaskResourceUsage {
	cpu := &drivers.CpuStats{Measured: []string{"System Mode", "User Mode"}}
	if prev != nil {
		if wall := u.At.Sub(prev.At); wall > 0 {
			percent := func(d time.Duration) float64 { return 100 * float64(d) / float64(wall) }
			cpu.UserMode = percent(u.UserTime - prev.UserTime)
			cpu.SystemMode = percent(u.SystemTime - prev.SystemTime)
			cpu.Percent = cpu.UserMode + cpu.SystemMode
		}
	}
	// Percent is of one core; Nomad shows MHz (its "ticks").
	cpu.TotalTicks = cpu.Percent / 100 * mhzPerCore
	mem := &drivers.MemoryStats{RSS: u.RSS, Measured: []string{"RSS"}}
	if cg != nil {
		if m, err := cg.MemoryUsage(); err == nil {
			mem = &drivers.MemoryStats{RSS: m.RSS, Cache: m.Cache, Swap: m.Swap, Usage: m.Usage, MaxUsage: m.MaxUsage,
				Measured: []string{"RSS", "Cache", "Swap", "Usage", "Max Usage"}}
		}
		cpu.ThrottledPeriods, cpu.ThrottledTime = cpuStats.ThrottledPeriods, cpuStats.ThrottledNanos
		cpu.Measured = append(cpu.Measured, "Throttled Periods", "Throttled Time")
	}
	cpu.Measured = append(cpu.Measured, "Percent")
	return &drivers.TaskResourceUsage{
		ResourceUsage: &drivers.ResourceUsage{
			CpuStats:    cpu,
			MemoryStats: mem,
		},
		Timestamp: u.At.UnixNano(),
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
