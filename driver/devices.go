package driver

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/nomad/client/lib/cgroupslib"
	"github.com/hashicorp/nomad/plugins/drivers"
	"golang.org/x/sys/unix"

	"github.com/bwrap-r/bwrap-r/bwrap"
)

// defaultDeviceRules are the v1 devices cgroup rules for the nodes every
// sandbox has (bwrap.SystemMounts): null, zero, full, random, urandom, tty,
// and the ptmx and pts (136:*) of an exec -t session's devpts instance.
var defaultDeviceRules = []string{"c 1:3 rw", "c 1:5 rw", "c 1:7 rw", "c 1:8 rw", "c 1:9 rw", "c 5:0 rw", "c 5:2 rw", "c 136:* rw"}

// taskDevice is a device plugin's device as the sandbox gets it.
type taskDevice struct {
	host, dest  string
	perms       string
	block       bool
	major, minr uint32
}

func (d taskDevice) what() string { return fmt.Sprintf("device %s (host %s)", d.dest, d.host) }

// rule is the device's v1 devices cgroup rule.
func (d taskDevice) rule() string {
	t := "c"
	if d.block {
		t = "b"
	}
	return fmt.Sprintf("%s %d:%d %s", t, d.major, d.minr, d.perms)
}

// taskDevices checks the device plugins' devices: each host path must be a
// device node (links resolved: the device plugin is the operator's), its
// permissions letters of "rwm" ("" is "rw").
func taskDevices(devs []*drivers.DeviceConfig) ([]taskDevice, error) {
	var out []taskDevice
	for _, dc := range devs {
		if dc == nil {
			continue
		}
		d := taskDevice{host: dc.HostPath, dest: dc.TaskPath, perms: dc.Permissions}
		if d.dest == "" {
			d.dest = d.host
		}
		if d.perms == "" {
			d.perms = "rw"
		}
		if strings.Trim(d.perms, "rwm") != "" {
			return nil, fmt.Errorf("%s: permissions %q: want letters of \"rwm\"", d.what(), dc.Permissions)
		}
		if !filepath.IsAbs(d.host) {
			return nil, fmt.Errorf("%s: the host path must be absolute", d.what())
		}
		if hasDotDot(d.dest) || filepath.Join("/", d.dest) == "/" || bwrap.Within(filepath.Join("/", d.dest), "/proc") {
			return nil, fmt.Errorf("%s: want a destination below / (not in /proc), without \"..\"", d.what())
		}
		d.dest = filepath.Join("/", d.dest)
		real, err := filepath.EvalSymlinks(d.host)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.what(), err)
		}
		var st unix.Stat_t
		if err := unix.Lstat(real, &st); err != nil {
			return nil, fmt.Errorf("%s: %w", d.what(), err)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFCHR:
		case unix.S_IFBLK:
			d.block = true
		default:
			return nil, fmt.Errorf("%s: %s is not a device node", d.what(), real)
		}
		d.host = real
		d.major, d.minr = unix.Major(st.Rdev), unix.Minor(st.Rdev)
		out = append(out, d)
	}
	return out, nil
}

// applyDevices binds the task's devices with --dev-bind (--bind is nodev).
// Those in /dev go in before /dev is remounted read-only. A bind cannot make
// a device node read-only (a read-only mount does not stop writes to a
// device), so permissions without "r" or "w" need the task's devices cgroup
// (cgroups v1); where it has none the start fails. No task can mknod ("m"):
// it holds no capability and every mount is nodev.
func applyDevices(spec *bwrap.Spec, cfg *drivers.TaskConfig) error {
	devs, err := taskDevices(cfg.Devices)
	if err != nil {
		return err
	}
	enforced := deviceCgroupAvailable(cfg)
	for _, d := range devs {
		// bwrap binds a device by path, as the task's UID.
		if err := reachable("/", d.host, spec.UID, spec.GID); err != nil {
			return fmt.Errorf("%s: %w", d.what(), err)
		}
		if !enforced && !(strings.Contains(d.perms, "r") && strings.Contains(d.perms, "w")) {
			return fmt.Errorf("%s: permissions %q need a devices cgroup to refuse what they leave out, and this task has none (%s)", d.what(), d.perms, noDeviceCgroupReason(cfg))
		}
		m := bwrap.Mount{Kind: bwrap.DevBind, Source: d.host, Dest: d.dest}
		if !bwrap.Within(d.dest, "/dev") {
			if err := mountpointPossible(spec.Mounts, namedBind{m, d.what()}); err != nil {
				return err
			}
			spec.Mounts = append(spec.Mounts, m)
			continue
		}
		i := slices.IndexFunc(spec.Mounts, func(m bwrap.Mount) bool { return m.Kind == bwrap.RemountRO && m.Dest == "/dev" })
		if i < 0 {
			i = len(spec.Mounts)
		}
		spec.Mounts = slices.Insert(spec.Mounts, i, m)
	}
	return nil
}

// deviceCgroupAvailable reports whether the task gets a devices cgroup:
// on cgroups v1 bwrap-r makes one for a task with devices (Nomad's client
// makes none). v2 has no devices controller (a BPF program of the cgroup
// does that job there, which bwrap-r does not attach).
func deviceCgroupAvailable(cfg *drivers.TaskConfig) bool {
	if cfg.Resources == nil || cfg.Resources.LinuxResources == nil || cfg.Resources.LinuxResources.CpusetCgroupPath == "" {
		return false
	}
	return cgroupslib.GetMode() == cgroupslib.CG1 && isDir(filepath.Join(cgroupslib.GetDefaultRoot(), "devices"))
}

func noDeviceCgroupReason(cfg *drivers.TaskConfig) string {
	switch {
	case cfg.Resources == nil || cfg.Resources.LinuxResources == nil || cfg.Resources.LinuxResources.CpusetCgroupPath == "":
		return "Nomad made no cgroup for it"
	case cgroupslib.GetMode() != cgroupslib.CG1:
		return "cgroups v2 has no devices controller; a device plugin must grant \"rw\" here"
	default:
		return "the v1 devices controller is not mounted at " + filepath.Join(cgroupslib.GetDefaultRoot(), "devices")
	}
}

// deviceCgroupRules are the rules of a task's devices cgroup: the sandbox's
// own nodes and the task's devices, nothing else. Devices that no longer
// check out get no rule (refused, not allowed).
func deviceCgroupRules(devs []*drivers.DeviceConfig) []string {
	if len(devs) == 0 {
		return nil
	}
	rules := slices.Clone(defaultDeviceRules)
	checked, _ := taskDevices(devs)
	for _, d := range checked {
		rules = append(rules, d.rule())
	}
	return rules
}
