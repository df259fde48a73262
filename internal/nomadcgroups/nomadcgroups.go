// Package nomadcgroups sets up, for the driver's tests and the bench, Nomad's
// cgroup tree as the Nomad client does when it starts, so that they run on a
// node that has never run an agent.
package nomadcgroups

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/client/lib/cgroupslib"
)

// Init runs cgroupslib.Init with the node's cores and, on v1, puts those cores
// in the share partition: the client's cpuset manager writes them there, and
// until it has, no task (of any driver) can join the partition (ENOSPC).
func Init() error {
	if cgroupslib.GetMode() != cgroupslib.CG1 {
		return cgroupslib.Init(hclog.NewNullLogger(), "")
	}
	cpuset := filepath.Join(cgroupslib.GetDefaultRoot(), "cpuset")
	cores, err := os.ReadFile(filepath.Join(cpuset, "cpuset.effective_cpus"))
	if err != nil {
		return err
	}
	c := strings.TrimSpace(string(cores))
	if err := cgroupslib.Init(hclog.NewNullLogger(), c); err != nil {
		return err
	}
	share := filepath.Join(cpuset, cgroupslib.NomadCgroupParent, cgroupslib.SharePartition(), "cpuset.cpus")
	if cur, err := os.ReadFile(share); err == nil && strings.TrimSpace(string(cur)) == "" {
		return os.WriteFile(share, []byte(c), 0o644)
	}
	return nil
}
