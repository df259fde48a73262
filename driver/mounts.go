package driver

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/nomad/nomad/structs"
	"github.com/hashicorp/nomad/plugins/drivers"
	"golang.org/x/sys/unix"

	"github.com/bwrap-r/bwrap-r/bwrap"
)

// TaskMount is one entry of the task config's mounts: a host path under the
// plugin's mount_roots, read-only unless the job says otherwise and the path
// lies under mount_roots_writable.
type TaskMount struct {
	Source      string `codec:"source"`
	Destination string `codec:"destination"`
	// ReadOnly is true when unset.
	ReadOnly *bool `codec:"readonly"`
}

func (m TaskMount) readOnly() bool { return m.ReadOnly == nil || *m.ReadOnly }

// applyMounts adds what the task mounts to the spec: Nomad's mounts
// (host volumes, dynamic host volumes, CSI volumes, a device plugin's
// mounts), the task config's mounts, and the device plugins' devices. Every
// one is made or the start fails naming it: none is dropped.
func applyMounts(spec *bwrap.Spec, cfg *drivers.TaskConfig, tc *TaskConfig, conf Config) error {
	binds, err := volumeBinds(cfg.Mounts)
	if err != nil {
		return err
	}
	more, err := configBinds(tc.Mounts, conf, spec.UID, spec.GID)
	if err != nil {
		return err
	}
	binds = append(binds, more...)
	// Parents before children (a volume at /data, another at /data/in),
	// whatever the job's order; bwrap applies mounts in order.
	slices.SortStableFunc(binds, func(a, b namedBind) int { return depth(a.Dest) - depth(b.Dest) })
	seen := map[string]string{}
	for _, b := range binds {
		if other, dup := seen[b.Dest]; dup {
			return fmt.Errorf("%s: %s is also the destination of %s", b.what, b.Dest, other)
		}
		seen[b.Dest] = b.what
		if err := mountpointPossible(spec.Mounts, b); err != nil {
			return err
		}
		spec.Mounts = append(spec.Mounts, b.Mount)
	}
	return applyDevices(spec, cfg)
}

// namedBind is a bind and what the job calls it, for errors.
type namedBind struct {
	bwrap.Mount
	what string
}

// volumeBinds turns Nomad's mounts into binds by descriptor. A volume's
// path is the operator's (a client host_volume block, the client's
// host_volumes_dir for a dynamic volume, the client's CSI mount dir), so
// its parent is trusted; the path itself must not be a link, and is opened
// beneath its parent without following one.
func volumeBinds(mounts []*drivers.MountConfig) ([]namedBind, error) {
	var out []namedBind
	for _, m := range mounts {
		if m == nil {
			continue
		}
		what := fmt.Sprintf("volume mount %s (host path %s)", m.TaskPath, m.HostPath)
		dest, err := mountDest(m.TaskPath)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		switch m.PropagationMode {
		case "", structs.VolumeMountPropagationPrivate:
		case structs.VolumeMountPropagationHostToTask, structs.VolumeMountPropagationBidirectional:
			return nil, fmt.Errorf("%s: propagation_mode %q is not supported by bwrap-r: a task's mounts are private (no mount reaches the task from the host after it starts, and a task cannot mount); use \"private\"", what, m.PropagationMode)
		default:
			return nil, fmt.Errorf("%s: unknown propagation_mode %q", what, m.PropagationMode)
		}
		if m.SELinuxLabel != "" && selinuxEnabled() {
			return nil, fmt.Errorf("%s: selinux_label %q: bwrap-r does not relabel volumes", what, m.SELinuxLabel)
		}
		src := filepath.Clean(m.HostPath)
		if !filepath.IsAbs(m.HostPath) || src == "/" {
			return nil, fmt.Errorf("%s: the host path must be an absolute path below /", what)
		}
		kind := bwrap.Bind
		if m.Readonly {
			kind = bwrap.ROBind
		}
		b := namedBind{bwrap.Mount{Kind: kind, Source: src, Dest: dest, Beneath: filepath.Dir(src)}, what}
		if err := checkSource(b); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// configBinds checks the task config's mounts against the plugin's roots: a
// source must lie under one after links are resolved ("..", and a link out
// of the roots, refused), and is bound by descriptor beneath that root, so a
// link swapped in after the check is refused too. The task's UID must be
// able to reach the source from its root, as it would have to for a bind by
// path: a descriptor must not open a way through a directory closed to it.
func configBinds(mounts []TaskMount, conf Config, uid, gid uint32) ([]namedBind, error) {
	var out []namedBind
	for _, m := range mounts {
		what := fmt.Sprintf("config mounts %s (source %s)", m.Destination, m.Source)
		dest, err := mountDest(m.Destination)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		roots, setting := conf.MountRoots, "mount_roots"
		if !m.readOnly() {
			roots, setting = conf.MountRootsWritable, "mount_roots_writable"
			if len(roots) == 0 {
				return nil, fmt.Errorf("%s: readonly = false, and the plugin allows no writable mounts (mount_roots_writable)", what)
			}
		}
		real, root, err := underRoot(m.Source, roots, setting)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		if err := reachable(root, real, uid, gid); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		kind := bwrap.ROBind
		if !m.readOnly() {
			kind = bwrap.Bind
		}
		b := namedBind{bwrap.Mount{Kind: kind, Source: real, Dest: dest, Beneath: root}, what}
		if err := checkSource(b); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// underRoot resolves path's links and returns it with the (resolved) root
// among roots it lies in: the one check of a host path a job names against
// the operator's roots (mount_roots, r_library_roots). path must be
// absolute without "..", and a root that leads to / is refused, as / itself
// is when the config is read: it would allow every host path.
func underRoot(path string, roots []string, setting string) (real, root string, err error) {
	if !filepath.IsAbs(path) || hasDotDot(path) {
		return "", "", errors.New("must be an absolute path without \"..\"")
	}
	if len(roots) == 0 {
		return "", "", fmt.Errorf("the plugin's %s is empty: it allows no such path", setting)
	}
	real, err = filepath.EvalSymlinks(path)
	if err != nil {
		return "", "", err
	}
	for _, r := range roots {
		rr, err := filepath.EvalSymlinks(r)
		if err != nil {
			continue
		}
		if rr == "/" {
			return "", "", fmt.Errorf("the plugin's %s entry %s leads to /, which would allow every host path: refusing it", setting, r)
		}
		if bwrap.Within(real, rr) {
			return real, rr, nil
		}
	}
	return "", "", fmt.Errorf("%s lies outside the plugin's %s (%s)", real, setting, strings.Join(roots, ", "))
}

// reachable checks that uid (with gid, its only group in the sandbox) may
// search every directory from root down to path's parent.
func reachable(root, path string, uid, gid uint32) error {
	rel, err := filepath.Rel(root, path)
	if err != nil || rel == "." {
		return err
	}
	dir := root
	for _, part := range append([]string{""}, strings.Split(filepath.Dir(rel), "/")...) {
		if part == "." {
			break
		}
		dir = filepath.Join(dir, part)
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			return err
		}
		bit := uint32(0o001)
		switch {
		case st.Uid == uid:
			bit = 0o100
		case st.Gid == gid:
			bit = 0o010
		}
		if st.Mode&bit == 0 {
			return fmt.Errorf("%s is closed to the task's uid %d (mode %04o, owner %d:%d): it could not reach %s", dir, uid, st.Mode&0o7777, st.Uid, st.Gid, path)
		}
	}
	return nil
}

// checkSource opens a bind's source as the launcher will, so that a source
// that is a link, missing or of the wrong type fails the start here with the
// mount's name.
func checkSource(b namedBind) error {
	f, err := bwrap.OpenSource(b.Mount)
	if err != nil {
		return fmt.Errorf("%s: %w", b.what, err)
	}
	return f.Close()
}

// mountDest is where a mount appears in the sandbox: an absolute path, or
// one relative to the task dir (as under exec, whose chroot is the task dir:
// "alloc/data" is /alloc/data). Not / itself, and not in /proc or /dev,
// which bwrap makes itself (/dev is read-only by the time binds are made).
func mountDest(p string) (string, error) {
	if strings.TrimSpace(p) == "" {
		return "", errors.New("no destination")
	}
	if hasDotDot(p) {
		return "", fmt.Errorf("destination %q: no \"..\" please", p)
	}
	dest := filepath.Join("/", p)
	switch {
	case dest == "/":
		return "", errors.New("the destination must not be the sandbox's /")
	case bwrap.Within(dest, "/proc"), bwrap.Within(dest, "/dev"):
		return "", fmt.Errorf("destination %s: nothing can be mounted in /proc or /dev", dest)
	}
	return dest, nil
}

// mountpointPossible refuses a destination bwrap could not make: one that
// does not exist below a read-only bind (/usr, an /etc file, /alloc/logs, a
// read-only volume), where bwrap cannot create the mount point and would
// fail only once the task runs.
func mountpointPossible(mounts []bwrap.Mount, b namedBind) error {
	for i := len(mounts) - 1; i >= 0; i-- {
		m := mounts[i]
		rel, ok := bwrap.RelWithin(b.Dest, m.Dest)
		if !ok {
			continue
		}
		switch m.Kind {
		case bwrap.ROBind:
		case bwrap.Tree:
			// The launcher makes mount points in the tree itself, but not in
			// a host directory bound there (read-only) nor through a link.
			if file, ok := m.DataAbove(rel); ok {
				return fmt.Errorf("%s: %s lies below %s, a file in the sandbox", b.what, b.Dest, path.Join(m.Dest, file))
			}
			host, link, ok := m.TreeSource(rel)
			switch {
			case link != "":
				return fmt.Errorf("%s: %s lies at or below a link in the sandbox: use the path it points to (%s)", b.what, b.Dest, link)
			case !ok || treeEntryAt(m, rel):
				// The launcher makes the mount point; an entry is bound over
				// as a whole.
				return nil
			}
			if _, err := os.Stat(host); err != nil {
				return fmt.Errorf("%s: %s lies in %s, which is read-only in the sandbox, and does not exist there: choose a destination elsewhere", b.what, b.Dest, m.Dest)
			}
			return nil
		case bwrap.Tmpfs, bwrap.Dir, bwrap.Bind, bwrap.DevBind:
			return nil
		case bwrap.Symlink:
			return fmt.Errorf("%s: %s lies in %s, a link in the sandbox: use the path it points to", b.what, b.Dest, m.Dest)
		default:
			return fmt.Errorf("%s: %s lies in %s, where nothing can be mounted", b.what, b.Dest, m.Dest)
		}
		if b.Dest == m.Dest {
			return nil // bound over the read-only bind as a whole
		}
		if _, err := os.Stat(filepath.Join(m.Source, rel)); err != nil {
			return fmt.Errorf("%s: %s lies in %s, which is read-only in the sandbox, and does not exist there: choose a destination elsewhere", b.what, b.Dest, m.Dest)
		}
		return nil
	}
	return nil
}

func depth(p string) int { return strings.Count(p, "/") }

// treeEntryAt reports whether rel is one of the tree's entries itself (a
// mount over it replaces it whole).
func treeEntryAt(m bwrap.Mount, rel string) bool {
	return slices.ContainsFunc(m.Entries, func(e bwrap.TreeEntry) bool { return e.Path == rel })
}

// hasDotDot reports a ".." component.
func hasDotDot(p string) bool {
	return slices.Contains(strings.Split(p, "/"), "..")
}

// selinuxEnabled reports whether the node runs SELinux: without it a
// volume's selinux_label means nothing, for any driver.
func selinuxEnabled() bool {
	_, err := os.Stat("/sys/fs/selinux/enforce")
	return err == nil
}

// normalizeMountRoots checks the plugin's roots of host paths a job may
// name (mount_roots, mount_roots_writable, r_library_roots): absolute, not
// /, no "..".
func (c *Config) normalizeMountRoots() error {
	for _, s := range []struct {
		setting string
		roots   []string
	}{{"mount_roots", c.MountRoots}, {"mount_roots_writable", c.MountRootsWritable}, {"r_library_roots", c.RLibraryRoots}} {
		for _, r := range s.roots {
			if !filepath.IsAbs(r) || filepath.Clean(r) == "/" || hasDotDot(r) {
				return fmt.Errorf("%s: %q must be an absolute path below /, without \"..\"", s.setting, r)
			}
		}
	}
	return nil
}
