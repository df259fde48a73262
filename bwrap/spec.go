// Package bwrap describes a bubblewrap sandbox as a typed Spec, turns it into
// bwrap's argv, and launches, waits for, signals and reattaches to it.
//
// It knows nothing of Nomad: the driver package translates a task into a Spec.
package bwrap

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
)

// MountKind is one of bwrap's filesystem operations.
type MountKind int

const (
	// Bind is --bind SRC DEST: read-write, nodev.
	Bind MountKind = iota
	// ROBind is --ro-bind SRC DEST: read-only, nodev.
	ROBind
	// DevBind is --dev-bind SRC DEST: read-write, device nodes allowed. Used for
	// the few device nodes a task needs instead of --dev, which would nest a
	// second user namespace and break joining the sandbox from outside.
	DevBind
	// Tmpfs is --tmpfs DEST, optionally with --size and --perms.
	Tmpfs
	// Procfs is --proc DEST: a fresh procfs for the sandbox's pid namespace.
	Procfs
	// Dir is --dir DEST, optionally with --perms.
	Dir
	// Symlink is --symlink SRC DEST: DEST is a link pointing at SRC.
	Symlink
	// RemountRO is --remount-ro DEST.
	RemountRO
	// Tree is a directory put together from Entries and bound at Dest as one
	// mount: read-only, or with Devices read-write with its device nodes (for
	// /dev; remount it read-only once what goes below it is in place). A
	// launch with a StageDir has the launcher build it as root, in its own
	// mount namespace, from the host as it is at that moment, with the mount
	// points of the later mounts below Dest; bwrap then makes one bind where
	// it would make one per entry, and parses the mount table once instead of
	// once per entry. Without a launcher (Argv) it is one bwrap operation per
	// entry, with the same result.
	Tree
)

// TreeEntryKind is what a Tree entry is.
type TreeEntryKind int

const (
	// TreeBind binds the host path Source (links followed); a missing source
	// is left out.
	TreeBind TreeEntryKind = iota
	// TreeNode binds the host's device node Source, in a tree with Devices;
	// a missing source is left out.
	TreeNode
	// TreeLink is a symbolic link to Source.
	TreeLink
	// TreeData is a read-only file (0644, root's) holding Data, at most
	// TreeDataMax bytes: what the host has nowhere, such as a password
	// file that names the task's user. Only the launcher builds it.
	TreeData
)

// TreeDataMax is the most a TreeData entry may hold (the launcher's limit).
const TreeDataMax = 256 << 10

// TreeEntry is one entry of a Tree.
type TreeEntry struct {
	Kind TreeEntryKind
	// Path is where the entry lies in the tree: relative and clean
	// ("ssl/certs" for /etc/ssl/certs in a tree at /etc).
	Path   string
	Source string
	// Data is a TreeData entry's content.
	Data []byte
	// root: what an entry of the assembled root needs (assemble.go).
	root rootEntry
}

// Mount is one filesystem operation; bwrap applies them in order.
type Mount struct {
	Kind MountKind
	// Source is the host path of a bind, or the target of a symlink.
	Source string
	// Dest is the path inside the sandbox.
	Dest string
	// Optional binds use the -try variant: a missing source is skipped.
	Optional bool
	// Size limits a tmpfs, in bytes (0: the kernel's default).
	Size int64
	// Perms sets the mode of a tmpfs or dir (0: bwrap's default).
	Perms uint32
	// Beneath, for a Bind or ROBind, is the trusted directory Source must lie
	// in. Root then opens Source beneath it without following any link,
	// checks Owner and MustBeDir, and the launcher binds the descriptor on a
	// private staging path that bwrap binds from: bwrap never walks the host
	// path as the task (every parent of a source need not be traversable by
	// it), and nothing swapped in after the check can redirect the bind.
	// Without Beneath, bwrap binds Source by path: for system paths (/usr,
	// /etc) that only root can change and every UID can reach.
	Beneath string
	// Owner, when set, is the UID the source must belong to.
	Owner *uint32
	// MustBeDir refuses a source that is not a directory.
	MustBeDir bool
	// FollowLinks makes the sandbox's bind (of a Beneath source) follow
	// symbolic links even where the host's view of the source is mounted
	// nosymfollow: the driver guards the host's view of task dirs so that
	// root's writes there follow no link a task planted.
	FollowLinks bool
	// Entries and Devices describe a Tree.
	Entries []TreeEntry
	Devices bool
	// root marks the sandbox's root as the launcher assembles it (a Tree at
	// "/", assemble.go); never part of a Spec.
	root bool
}

// byDescriptor reports whether the mount's source is opened by root and
// bound by descriptor.
func (m Mount) byDescriptor() bool {
	return (m.Kind == Bind || m.Kind == ROBind) && m.Beneath != ""
}

// Network says which network the sandbox sees.
type Network int

const (
	// NetworkShared keeps the network namespace bwrap starts in: the host's, or
	// the namespace the launcher joined before starting bwrap.
	NetworkShared Network = iota
	// NetworkNone gives the sandbox a new network namespace with loopback only.
	NetworkNone
)

// Spec is everything bwrap needs to build one sandbox.
type Spec struct {
	// Command is the program to run, as the sandbox sees it.
	Command string
	Args    []string
	// Env is the whole environment of the command: bwrap clears its own.
	Env map[string]string
	// Mounts build the sandbox's filesystem, in order.
	Mounts []Mount
	// UID and GID the command has inside; with the launcher's drop to the same
	// IDs first, they are also the host's view (an identity map).
	UID, GID uint32
	// Hostname in the new UTS namespace ("" keeps bwrap's default).
	Hostname string
	// Dir is the working directory inside ("" is bwrap's default).
	Dir     string
	Network Network
	// InfoFD and StatusFD are the descriptor numbers (as the launcher passes
	// them to bwrap) for --info-fd and --json-status-fd; 0 leaves them out.
	InfoFD   int
	StatusFD int
	// SeccompFD is the descriptor of a compiled BPF program for --seccomp; 0
	// leaves it out.
	SeccompFD int
}

// Argv returns bwrap's arguments (without the program name) for the spec.
func (s *Spec) Argv() ([]string, error) {
	opts, command, err := s.split(nil)
	if err != nil {
		return nil, err
	}
	return append(opts, command...), nil
}

// split returns bwrap's options, and "--" with the command and its arguments.
// The launcher passes the options through --args, off the command line.
// staged, when not nil, holds by mount index the staging path where the
// launcher binds a source root opened ("" for an optional source that is
// missing).
func (s *Spec) split(staged map[int]string) (opts, command []string, err error) {
	if s.Command == "" {
		return nil, nil, fmt.Errorf("bwrap: no command")
	}
	if s.UID == 0 || s.GID == 0 {
		return nil, nil, fmt.Errorf("bwrap: refusing to run a sandbox as uid or gid 0")
	}
	a := []string{
		// Started as root, bwrap would keep the bounding set; drop it all first.
		"--cap-drop", "ALL",
		"--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
		"--uid", strconv.FormatUint(uint64(s.UID), 10),
		"--gid", strconv.FormatUint(uint64(s.GID), 10),
		// No controlling terminal shared with the host: stops TIOCSTI injection.
		"--new-session",
	}
	if s.Network == NetworkNone {
		a = append(a, "--unshare-net")
	}
	if s.Hostname != "" {
		a = append(a, "--hostname", s.Hostname)
	}
	for i, m := range s.Mounts {
		if stage, ok := staged[i]; ok {
			if stage == "" {
				continue
			}
			m.Source = stage
		}
		if m.Kind == Tree {
			ma, err := m.treeArgv(staged != nil && staged[i] != "")
			if err != nil {
				return nil, nil, fmt.Errorf("bwrap: mount %d: %w", i, err)
			}
			a = append(a, ma...)
			continue
		}
		ma, err := m.argv()
		if err != nil {
			return nil, nil, fmt.Errorf("bwrap: mount %d: %w", i, err)
		}
		a = append(a, ma...)
	}
	// The root is a tmpfs the task's user namespace owns: without this the
	// task could write to /, /etc and every directory bwrap made for a mount.
	// An assembled root is root's, and read-only already.
	if len(s.Mounts) == 0 || !s.Mounts[0].root {
		a = append(a, "--remount-ro", "/")
	}
	a = append(a, "--clearenv")
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, nil, fmt.Errorf("bwrap: invalid environment variable name %q", k)
		}
		a = append(a, "--setenv", k, s.Env[k])
	}
	if s.Dir != "" {
		a = append(a, "--chdir", s.Dir)
	}
	if s.InfoFD > 0 {
		a = append(a, "--info-fd", strconv.Itoa(s.InfoFD))
	}
	if s.StatusFD > 0 {
		a = append(a, "--json-status-fd", strconv.Itoa(s.StatusFD))
	}
	if s.SeccompFD > 0 {
		a = append(a, "--seccomp", strconv.Itoa(s.SeccompFD))
	}
	// "--" so that a command starting with "-" is never read as an option.
	command = append([]string{"--", s.Command}, s.Args...)
	return a, command, nil
}

func (m Mount) argv() ([]string, error) {
	if !path.IsAbs(m.Dest) || path.Clean(m.Dest) != m.Dest {
		return nil, fmt.Errorf("destination %q must be a clean absolute path", m.Dest)
	}
	var a []string
	if m.Perms != 0 {
		a = append(a, "--perms", fmt.Sprintf("%04o", m.Perms))
	}
	bind := func(flag string) ([]string, error) {
		if !path.IsAbs(m.Source) {
			return nil, fmt.Errorf("source %q of %s must be absolute", m.Source, m.Dest)
		}
		if m.Optional {
			flag += "-try"
		}
		return append(a, flag, m.Source, m.Dest), nil
	}
	switch m.Kind {
	case Bind:
		return bind("--bind")
	case ROBind:
		return bind("--ro-bind")
	case DevBind:
		return bind("--dev-bind")
	case Tmpfs:
		if m.Size > 0 {
			a = append(a, "--size", strconv.FormatInt(m.Size, 10))
		}
		return append(a, "--tmpfs", m.Dest), nil
	case Procfs:
		return append(a, "--proc", m.Dest), nil
	case Dir:
		return append(a, "--dir", m.Dest), nil
	case Symlink:
		if m.Source == "" {
			return nil, fmt.Errorf("symlink %s has no target", m.Dest)
		}
		return append(a, "--symlink", m.Source, m.Dest), nil
	case RemountRO:
		return append(a, "--remount-ro", m.Dest), nil
	}
	return nil, fmt.Errorf("unknown mount kind %d", m.Kind)
}
