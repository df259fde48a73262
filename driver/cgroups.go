package driver

import (
	"path/filepath"
	"strings"

	"github.com/hashicorp/nomad/client/lib/cgroupslib"
	"github.com/hashicorp/nomad/plugins/drivers"

	"github.com/bwrap-r/bwrap-r/cgroup"
)

// taskCgroups finds the cgroup(s) Nomad's client made for the task (nil when
// it made none, as in tests that run the driver without a client). On v1 the
// client makes freezer, cpu, memory and cpuset; bwrap-r adds pids.
func taskCgroups(cfg *drivers.TaskConfig) *cgroup.Set {
	if cfg.Resources == nil || cfg.Resources.LinuxResources == nil || cfg.Resources.LinuxResources.CpusetCgroupPath == "" {
		return nil
	}
	path := cfg.Resources.LinuxResources.CpusetCgroupPath
	if cgroupslib.GetMode() == cgroupslib.CG2 {
		return &cgroup.Set{V2: true, Unified: path}
	}
	root := cgroupslib.GetDefaultRoot()
	scope := cgroupslib.ScopeCG1(cfg.AllocID, cfg.Name)
	s := &cgroup.Set{Controllers: map[string]string{"cpuset": path}}
	for _, c := range []string{"freezer", "cpu", "memory", "pids"} {
		s.Controllers[c] = filepath.Join(root, c, cgroupslib.NomadCgroupParent, scope)
	}
	s.Owned = []string{s.Controllers["pids"]}
	return s
}

// taskLimits turns the task's resources into cgroup limits, with Nomad's
// meaning of memory and memory_max (oversubscription; -1 is no hard limit).
func taskLimits(cfg *drivers.TaskConfig, pidsMax int64) cgroup.Limits {
	l := cgroup.Limits{PidsMax: pidsMax}
	if cfg.Resources == nil {
		return l
	}
	if nr := cfg.Resources.NomadResources; nr != nil {
		mem, max := nr.Memory.MemoryMB, nr.Memory.MemoryMaxMB
		switch {
		case max == -1:
			l.MemoryMax, l.MemoryLow = -1, mem<<20
		case max > 0:
			l.MemoryMax, l.MemoryLow = max<<20, mem<<20
		case mem > 0:
			l.MemoryMax = mem << 20
		}
	}
	if lr := cfg.Resources.LinuxResources; lr != nil {
		l.CPUShares = lr.CPUShares
		if lr.CpusetCpus != "" && strings.Contains(lr.CpusetCgroupPath, "/reserve") {
			l.Cpuset = lr.CpusetCpus
		}
	}
	return l
}
