package bwrap

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
)

// checkTree refuses a tree whose destination or entries are not clean paths.
func (m Mount) checkTree() error {
	if !path.IsAbs(m.Dest) || path.Clean(m.Dest) != m.Dest || (m.Dest == "/") != m.root {
		return fmt.Errorf("tree destination %q must be a clean absolute path below /", m.Dest)
	}
	for _, e := range m.Entries {
		if e.Path == "" || path.IsAbs(e.Path) || path.Clean(e.Path) != e.Path || e.Path == ".." || strings.HasPrefix(e.Path, "../") {
			return fmt.Errorf("tree %s: entry %q must be a clean relative path", m.Dest, e.Path)
		}
		switch e.Kind {
		case TreeBind, TreeNode:
			if !path.IsAbs(e.Source) {
				return fmt.Errorf("tree %s: entry %s: source %q must be absolute", m.Dest, e.Path, e.Source)
			}
		case TreeLink:
			if e.Source == "" {
				return fmt.Errorf("tree %s: link %s has no target", m.Dest, e.Path)
			}
		case TreeData:
			if e.Source != "" || len(e.Data) > TreeDataMax {
				return fmt.Errorf("tree %s: data entry %s: want no source and at most %d bytes", m.Dest, e.Path, TreeDataMax)
			}
		case rootPath, rootDevPath, rootFD, rootTmpfs, rootDir:
			if !m.root {
				return fmt.Errorf("tree %s: entry %s: unknown kind %d", m.Dest, e.Path, e.Kind)
			}
			if (e.Kind == rootPath || e.Kind == rootDevPath) && !path.IsAbs(e.Source) {
				return fmt.Errorf("tree %s: entry %s: source %q must be absolute", m.Dest, e.Path, e.Source)
			}
		default:
			return fmt.Errorf("tree %s: entry %s: unknown kind %d", m.Dest, e.Path, e.Kind)
		}
		if e.Kind == TreeNode && !m.Devices {
			return fmt.Errorf("tree %s: device node %s in a tree without devices", m.Dest, e.Path)
		}
	}
	return nil
}

// treeArgv is bwrap's part of a tree: one bind of what the launcher built
// (m.Source, its staging path), or without a launcher one operation per entry.
func (m Mount) treeArgv(built bool) ([]string, error) {
	if err := m.checkTree(); err != nil {
		return nil, err
	}
	if m.root && !built {
		return nil, fmt.Errorf("tree %s: the assembled root is only built by the launcher", m.Dest)
	}
	if built {
		flag := "--ro-bind"
		if m.Devices {
			flag = "--dev-bind"
		}
		return []string{flag, m.Source, m.Dest}, nil
	}
	var a []string
	if m.Devices {
		// Device nodes need a directory the sandbox owns to be bound in.
		a = append(a, "--perms", "0755", "--tmpfs", m.Dest)
	}
	for _, e := range m.Entries {
		dest := path.Join(m.Dest, e.Path)
		switch {
		case e.Kind == TreeData:
			return nil, fmt.Errorf("tree %s: data entry %s: only the launcher (a launch with a staging dir) builds it", m.Dest, e.Path)
		case e.Kind == TreeLink:
			a = append(a, "--symlink", e.Source, dest)
		case e.Kind == TreeNode || m.Devices:
			a = append(a, "--dev-bind-try", e.Source, dest)
		default:
			a = append(a, "--ro-bind-try", e.Source, dest)
		}
	}
	return a, nil
}

// sourceKind tells the launcher what mount point a later mount needs in a
// tree: dir is true for a directory; skip when the mount will be left out
// (an optional source that is missing).
type sourceKind func(i int) (dir, skip bool)

// treeArgs returns the launcher's flags that build the spec's trees on the
// staging tmpfs, and records in staged where each one is. A mount after a
// tree that lands inside it gets its mount point in the tree: bwrap, as the
// task, cannot make one in a directory of root's. The data entries' contents
// are returned in order: the launcher reads the first from descriptor
// dataFD, the next from dataFD+1, and so on.
func treeArgs(mounts []Mount, stage string, staged map[int]string, kind sourceKind, dataFD int) (args []string, data [][]byte, err error) {
	for i, m := range mounts {
		if m.Kind != Tree {
			continue
		}
		if err := m.checkTree(); err != nil {
			return nil, nil, fmt.Errorf("bwrap: mount %d: %w", i, err)
		}
		if stage == "" {
			return nil, nil, fmt.Errorf("bwrap: tree %s: no staging dir to build it in", m.Dest)
		}
		name := "tree" + strconv.Itoa(i)
		switch {
		case m.root:
			args = append(args, "-roottree", name)
		case m.Devices:
			args = append(args, "-devtree", name)
		default:
			args = append(args, "-tree", name)
		}
		have := map[string]TreeEntryKind{}
		for _, e := range m.Entries {
			try := func(flag string) string {
				if e.root.optional {
					return flag + "-try"
				}
				return flag
			}
			switch e.Kind {
			case TreeBind:
				args = append(args, "-tree-bind", e.Source, e.Path)
			case TreeNode:
				args = append(args, "-tree-node", e.Source, e.Path)
			case TreeLink:
				args = append(args, "-tree-link", e.Source, e.Path)
			case TreeData:
				args = append(args, "-tree-data", strconv.Itoa(dataFD+len(data)), e.Path)
				data = append(data, e.Data)
			case rootPath:
				args = append(args, try("-tree-path"), e.Source, e.Path)
			case rootDevPath:
				args = append(args, try("-tree-devpath"), e.Source, e.Path)
			case rootFD:
				flag := "-tree-fd"
				if e.root.writable {
					flag = "-tree-fd-rw"
				}
				args = append(args, flag, strconv.Itoa(e.root.fd), e.Path)
			case rootTmpfs:
				args = append(args, "-tree-tmpfs", strconv.FormatInt(e.root.size, 10), strconv.FormatUint(uint64(e.root.perms), 8), e.Path)
			case rootDir:
				args = append(args, "-tree-dir", e.Path)
			}
			if _, dup := have[e.Path]; !dup || e.Kind != rootDir {
				have[e.Path] = e.Kind
			}
		}
		points, err := mountPoints(mounts, i, have, kind)
		if err != nil {
			return nil, nil, err
		}
		args = append(args, points...)
		staged[i] = path.Join(stage, name)
	}
	return args, data, nil
}

// mountPoints are the flags for the mount points, in the tree at mounts[t],
// of the mounts after it.
func mountPoints(mounts []Mount, t int, have map[string]TreeEntryKind, kind sourceKind) ([]string, error) {
	tree := mounts[t]
	var args []string
	made := map[string]bool{}
	for j := t + 1; j < len(mounts); j++ {
		m := mounts[j]
		rel, ok := below(m.Dest, tree.Dest)
		if !ok || rel == "" || m.Kind == RemountRO {
			continue
		}
		// Inside a host directory bound in the tree, or through a link:
		// nothing can be made there; bwrap finds the mount point or fails
		// as it would without the tree. A mount over an entry gets its mount
		// point too, for when the entry's source is missing.
		if throughEntry(rel, have) || made[rel] {
			continue
		}
		dir := false
		switch m.Kind {
		case Tmpfs, Dir, Procfs, Tree:
			dir = true
		case Bind, ROBind, DevBind:
			var skip bool
			if dir, skip = kind(j); skip {
				continue
			}
		case Symlink:
			return nil, fmt.Errorf("bwrap: mount %d: a link at %s lies in the tree at %s: make it an entry of the tree", j, m.Dest, tree.Dest)
		default:
			return nil, fmt.Errorf("bwrap: mount %d: unknown mount kind %d", j, m.Kind)
		}
		made[rel] = true
		if dir {
			args = append(args, "-tree-dir", rel)
		} else {
			args = append(args, "-tree-file", rel)
		}
	}
	return args, nil
}

// below returns p relative to dir when p is dir or lies below it.
func below(p, dir string) (string, bool) {
	if p == dir {
		return "", true
	}
	if dir == "/" {
		return strings.TrimPrefix(p, "/"), strings.HasPrefix(p, "/")
	}
	if strings.HasPrefix(p, dir+"/") {
		return p[len(dir)+1:], true
	}
	return "", false
}

// throughEntry reports whether rel lies below a bind or a link of the tree,
// or is a link.
func throughEntry(rel string, have map[string]TreeEntryKind) bool {
	for p, k := range have {
		r, ok := below(rel, p)
		if ok && (k == TreeLink || k != rootDir && k != TreeNode && r != "") {
			return true
		}
	}
	return false
}

// pathKind is sourceKind for a mount bound by path: a directory or not, and
// skip for an optional source that is missing (bwrap's -try).
func pathKind(m Mount) (dir, skip bool) {
	fi, err := os.Stat(m.Source)
	if err != nil {
		// A missing optional source is left out; anything else is bwrap's
		// to report.
		return false, m.Optional && errors.Is(err, os.ErrNotExist)
	}
	return fi.IsDir(), false
}

// DataAbove returns the path of the data entry (a file the launcher writes)
// that rel lies below, if any: nothing can be mounted there.
func (m Mount) DataAbove(rel string) (string, bool) {
	for _, e := range m.Entries {
		if r, in := below(rel, e.Path); in && r != "" && e.Kind == TreeData {
			return e.Path, true
		}
	}
	return "", false
}

// TreeSource maps a path inside a tree (relative to its Dest) to the host
// path an entry exposes there; ok is false where no bind or node covers it.
// A link's target is returned as link, relative to the sandbox.
func (m Mount) TreeSource(rel string) (host, link string, ok bool) {
	for i := len(m.Entries) - 1; i >= 0; i-- {
		e := m.Entries[i]
		r, in := below(rel, e.Path)
		if !in {
			continue
		}
		switch e.Kind {
		case TreeBind, TreeNode:
			return path.Join(e.Source, r), "", true
		case TreeData:
			return "", "", false
		case TreeLink:
			target := e.Source
			if !path.IsAbs(target) {
				target = path.Join(m.Dest, path.Dir(e.Path), target)
			}
			return "", path.Join(target, r), false
		}
	}
	return "", "", false
}
