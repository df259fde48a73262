package driver

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/nomad/client/lib/cgroupslib"
	"github.com/hashicorp/nomad/plugins/drivers"

	"github.com/bwrap-r/bwrap-r/cgroup"
)

// taskCgroups finds the cgroup(s) Nomad's client made for the task (nil when
// it made none, as in tests that run the driver without a client). On v1 the
// client makes freezer, cpu, memory and cpuset; bwrap-r adds pids, devices
// for a task with devices, and cpuacct where it is a hierarchy of its own (it
// is usually mounted with cpu, and the task's cpu directory then accounts CPU
// already).
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
	if len(cfg.Devices) > 0 && deviceCgroupAvailable(cfg) {
		s.Controllers["devices"] = filepath.Join(root, "devices", cgroupslib.NomadCgroupParent, scope)
		s.Owned = append(s.Owned, s.Controllers["devices"])
	}
	acctRoot := filepath.Join(root, "cpuacct")
	switch {
	case sameHierarchy(acctRoot, filepath.Join(root, "cpu")):
		s.Controllers["cpuacct"] = s.Controllers["cpu"]
	case isDir(acctRoot):
		s.Controllers["cpuacct"] = filepath.Join(acctRoot, cgroupslib.NomadCgroupParent, scope)
		s.Owned = append(s.Owned, s.Controllers["cpuacct"])
	}
	return s
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// sameHierarchy reports whether two v1 mount points are one hierarchy
// (cpu,cpuacct mounted together, with links from each name).
func sameHierarchy(a, b string) bool {
	ra, errA := filepath.EvalSymlinks(a)
	rb, errB := filepath.EvalSymlinks(b)
	return errA == nil && errB == nil && ra == rb
}

// taskLimits turns the task's resources into cgroup limits, with Nomad's
// meaning of memory and memory_max (oversubscription; -1 is no hard limit).
func taskLimits(cfg *drivers.TaskConfig, pidsMax int64) cgroup.Limits {
	l := cgroup.Limits{PidsMax: pidsMax}
	if deviceCgroupAvailable(cfg) {
		l.Devices = deviceCgroupRules(cfg.Devices)
	}
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
