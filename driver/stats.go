package driver

import (
	"strconv"

	"github.com/hashicorp/nomad/plugins/drivers"

	"github.com/bwrap-r/bwrap-r/bwrap"
)

// usageToNomad converts a sample; prev (may be nil) gives the CPU percent.
func usageToNomad(u bwrap.Usage, prev *bwrap.Usage) *drivers.TaskResourceUsage {
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
	return &drivers.TaskResourceUsage{
		ResourceUsage: &drivers.ResourceUsage{
			CpuStats:    cpu,
			MemoryStats: &drivers.MemoryStats{RSS: u.RSS, Measured: []string{"RSS"}},
		},
		Timestamp: u.At.UnixNano(),
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
