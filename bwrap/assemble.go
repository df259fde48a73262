package bwrap

import (
	"os"
	"path"
	"strings"
)

// The sandbox's root, assembled by the launcher. bwrap reads and parses the
// whole mount table for every bind and remount it makes (a third of a
// start's cost, with the dozen mounts of a task); so the launcher, as root
// and in its own mount namespace, builds what it can of the sandbox as one
// tree at "/" (a tmpfs of its own, read-only once built) with every mount
// below it flagged as bwrap would flag it, and bwrap binds that tree as its
// root: one bind and one parse where there were a dozen of each.
//
// It takes the longest run of mounts from the first that it can build
// exactly as bwrap would: binds by path (read-only, or of devices), binds by
// descriptor, trees, tmpfs, dirs, links, and the read-only remounts of /
// and of a tree. /proc is bwrap's to mount (it needs the sandbox's pid
// namespace), so it only gets its mount point, and nothing after it may lie
// below it. The run stops at the first mount it cannot build, or that would
// lie below a mount or a file it took (nothing is made inside a host
// directory, a tmpfs or a link); that mount and every one after it are
// bwrap's, in their order, with their mount points made in the tree.

// Entry kinds of the assembled root only (after TreeData).
const (
	// rootPath binds the host path Source as bwrap's --ro-bind would,
	// looked up as the task's UID (optional: a missing one is left out).
	rootPath TreeEntryKind = iota + TreeData + 1
	// rootDevPath is rootPath as --dev-bind: writable, device nodes allowed.
	rootDevPath
	// rootFD binds the source descriptor fd (Mount.Beneath), read-only
	// unless writable.
	rootFD
	// rootTmpfs is a tmpfs of size bytes (0: the kernel's default) and
	// mode perms, the task's.
	rootTmpfs
	// rootDir is a directory (a mount point: /proc).
	rootDir
)

// rootEntry holds what the assembled root's own entry kinds need.
type rootEntry struct {
	fd       int
	size     int64
	perms    uint32
	writable bool
	optional bool
}

// assembleRoot returns the mounts to launch with: the assembled root first
// (a Tree at "/"), then the mounts bwrap still makes. fdOf maps a mount bound
// by descriptor to its descriptor's number; staged says which ones were
// missing and optional (""). The returned maps are re-keyed to the new
// indexes. Without a first mount it can take, mounts come back as they are.
func assembleRoot(mounts []Mount, fdOf map[int]int, staged map[int]string, opened map[int]*os.File) ([]Mount, map[int]string, map[int]*os.File) {
	root := Mount{Kind: Tree, Dest: "/", Devices: true, root: true}
	var claims, deferred, trees []string
	// within reports whether dest is, or lies below, one of ps.
	within := func(dest string, ps []string) bool {
		for _, p := range ps {
			if _, ok := below(dest, p); ok {
				return true
			}
		}
		return false
	}
	// under reports whether one of ps lies strictly below dir.
	under := func(ps []string, dir string) bool {
		for _, p := range ps {
			if r, ok := below(p, dir); ok && r != "" {
				return true
			}
		}
		return false
	}
	rel := func(dest string) string { return strings.TrimPrefix(dest, "/") }
	add := func(e TreeEntry, claim bool) {
		root.Entries = append(root.Entries, e)
		if claim {
			claims = append(claims, "/"+e.Path)
		}
	}
	take := func(i int, m Mount) bool {
		if !path.IsAbs(m.Dest) || path.Clean(m.Dest) != m.Dest {
			return false
		}
		if m.Dest == "/" {
			return m.Kind == RemountRO
		}
		if within(m.Dest, deferred) || within(m.Dest, claims) {
			return false
		}
		switch {
		case m.Kind == Bind || m.Kind == ROBind:
			if !m.byDescriptor() {
				if m.Kind == Bind {
					return false
				}
				add(TreeEntry{Kind: rootPath, Path: rel(m.Dest), Source: m.Source, root: rootEntry{optional: m.Optional}}, true)
				return true
			}
			if staged[i] == "" {
				return true // optional and missing: left out
			}
			add(TreeEntry{Kind: rootFD, Path: rel(m.Dest), root: rootEntry{fd: fdOf[i], writable: m.Kind == Bind}}, true)
			return true
		case m.Kind == DevBind:
			add(TreeEntry{Kind: rootDevPath, Path: rel(m.Dest), Source: m.Source, root: rootEntry{optional: m.Optional}}, true)
			return true
		case m.Kind == Tree:
			// Not a mount of its own here: what the run took below it would
			// show through it (bwrap's bind of it would hide it), and its
			// files would be written through such a mount.
			if m.checkTree() != nil || under(claims, m.Dest) || under(deferred, m.Dest) {
				return false
			}
			for _, e := range m.Entries {
				if m.Devices && e.Kind == TreeBind {
					// --dev-bind would keep device access on it: not a
					// read-only bind.
					return false
				}
			}
			root.Entries = append(root.Entries, TreeEntry{Kind: rootDir, Path: rel(m.Dest)})
			for _, e := range m.Entries {
				e.Path = path.Join(rel(m.Dest), e.Path)
				add(e, true)
			}
			trees = append(trees, m.Dest)
			return true
		case m.Kind == Tmpfs:
			perms := m.Perms
			if perms == 0 {
				perms = 0o755
			}
			add(TreeEntry{Kind: rootTmpfs, Path: rel(m.Dest), root: rootEntry{size: m.Size, perms: perms}}, true)
			return true
		case m.Kind == Dir:
			if m.Perms != 0 && m.Perms != 0o755 {
				return false
			}
			add(TreeEntry{Kind: rootDir, Path: rel(m.Dest)}, false)
			return true
		case m.Kind == Symlink:
			if m.Source == "" {
				return false
			}
			add(TreeEntry{Kind: TreeLink, Path: rel(m.Dest), Source: m.Source}, true)
			return true
		case m.Kind == RemountRO:
			// A tree's directory lies on the root, which is read-only.
			for _, t := range trees {
				if t == m.Dest {
					return true
				}
			}
			return false
		}
		return false
	}

	var rest []int
	stopped := false
	for i, m := range mounts {
		if !stopped && m.Kind == Procfs && path.IsAbs(m.Dest) && m.Dest != "/" && !within(m.Dest, claims) {
			root.Entries = append(root.Entries, TreeEntry{Kind: rootDir, Path: rel(m.Dest)})
			deferred = append(deferred, m.Dest)
			rest = append(rest, i)
			continue
		}
		if stopped || !take(i, m) {
			stopped = true
			rest = append(rest, i)
		}
	}
	if len(rest) == len(mounts) {
		return mounts, staged, opened
	}
	out := []Mount{root}
	outStaged, outOpened := map[int]string{}, map[int]*os.File{}
	for _, i := range rest {
		if s, ok := staged[i]; ok {
			outStaged[len(out)] = s
		}
		if f, ok := opened[i]; ok {
			outOpened[len(out)] = f
		}
		out = append(out, mounts[i])
	}
	return out, outStaged, outOpened
}
