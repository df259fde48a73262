package bwrap

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// etcFiles are the parts of the host's /etc that ordinary programs and R need.
// Never shadow, gshadow, sudoers, ssh keys or any service's configuration: the
// agent's config and data dirs stay out of the sandbox.
var etcFiles = []string{
	"/etc/alternatives", // Debian's /usr/bin links go through here (awk, pager, ...)
	"/etc/ca-certificates",
	"/etc/ca-certificates.conf",
	"/etc/fonts",
	"/etc/group",
	"/etc/host.conf",
	"/etc/hosts",
	"/etc/ld.so.cache",
	"/etc/ld.so.conf",
	"/etc/ld.so.conf.d",
	"/etc/locale.alias",
	"/etc/localtime",
	"/etc/mime.types",
	"/etc/nsswitch.conf",
	"/etc/passwd",
	"/etc/protocols",
	"/etc/R", // Debian's R_HOME/etc links here
	"/etc/resolv.conf",
	"/etc/services",
	"/etc/ssl/certs",
	"/etc/ssl/openssl.cnf",
	"/etc/timezone",
}

// devNodes are the device nodes a task gets. They are bound one by one because
// --dev would nest a second user namespace (see DevBind).
var devNodes = []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"}

// usrLinks are the merged-/usr top-level directories. Each is mirrored as the
// host has it: a symlink stays a symlink, a real directory is bound read-only.
var usrLinks = []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}

// usrLink is one of usrLinks as the host has it: a symbolic link to target,
// or a real directory (target "").
type usrLink struct{ path, target string }

// hostUsrLinks returns the usrLinks the host has, as it has them.
func hostUsrLinks() []usrLink {
	var out []usrLink
	for _, p := range usrLinks {
		fi, err := os.Lstat(p)
		switch {
		case err != nil:
		case fi.Mode()&os.ModeSymlink != 0:
			if target, err := os.Readlink(p); err == nil {
				out = append(out, usrLink{p, target})
			}
		case fi.IsDir():
			out = append(out, usrLink{p, ""})
		}
	}
	return out
}

// SystemMounts returns the read-only system a task sees: /usr and its
// top-level links, the needed /etc files, a fresh /proc, a minimal /dev and a
// private /tmp of tmpSize bytes. The host's / is never bound whole.
func SystemMounts(tmpSize int64) []Mount {
	m := []Mount{{Kind: ROBind, Source: "/usr", Dest: "/usr"}}
	for _, l := range hostUsrLinks() {
		if l.target != "" {
			m = append(m, Mount{Kind: Symlink, Source: l.target, Dest: l.path})
		} else {
			m = append(m, Mount{Kind: ROBind, Source: l.path, Dest: l.path})
		}
	}
	// /etc and /dev are trees: one mount each for bwrap (see Tree).
	etc := Mount{Kind: Tree, Dest: "/etc"}
	for _, p := range etcFiles {
		etc.Entries = append(etc.Entries, TreeEntry{Kind: TreeBind, Source: p, Path: p[len("/etc/"):]})
	}
	dev := Mount{Kind: Tree, Dest: "/dev", Devices: true}
	for _, d := range devNodes {
		dev.Entries = append(dev.Entries, TreeEntry{Kind: TreeNode, Source: d, Path: d[len("/dev/"):]})
	}
	dev.Entries = append(dev.Entries,
		TreeEntry{Kind: TreeLink, Source: "/proc/self/fd", Path: "fd"},
		TreeEntry{Kind: TreeLink, Source: "/proc/self/fd/0", Path: "stdin"},
		TreeEntry{Kind: TreeLink, Source: "/proc/self/fd/1", Path: "stdout"},
		TreeEntry{Kind: TreeLink, Source: "/proc/self/fd/2", Path: "stderr"},
		// Into the mount point of an exec session's terminal (below).
		TreeEntry{Kind: TreeLink, Source: "pts/ptmx", Path: "ptmx"},
	)
	m = append(m,
		etc,
		Mount{Kind: Procfs, Dest: "/proc"},
		dev,
		Mount{Kind: Tmpfs, Dest: "/dev/shm", Perms: 0o1777, Size: tmpSize},
		// The mount point of an exec session's terminal (enter.c): empty
		// for the task, which gets no ptys of its own.
		Mount{Kind: Dir, Dest: "/dev/pts", Perms: 0o755},
		// /dev is a tmpfs the task would own; /dev/shm stays writable.
		Mount{Kind: RemountRO, Dest: "/dev"},
		Mount{Kind: Tmpfs, Dest: "/tmp", Perms: 0o1777, Size: tmpSize},
	)
	return m
}

// HostPath maps a path inside the sandbox to the host path a bind exposes it
// at, using the last bind that covers it (bwrap applies mounts in order). ok is
// false when no bind covers it (tmpfs, proc, or nothing).
func HostPath(mounts []Mount, inside string) (host string, ok bool) {
	inside = filepath.Clean(inside)
	for i := len(mounts) - 1; i >= 0; i-- {
		m := mounts[i]
		rel, err := filepath.Rel(m.Dest, inside)
		if err != nil || rel == ".." || (len(rel) > 2 && rel[:3] == "../") {
			continue
		}
		switch m.Kind {
		case Bind, ROBind, DevBind:
			return filepath.Join(m.Source, rel), true
		case Tree:
			if rel == "." {
				return "", false
			}
			host, link, ok := m.TreeSource(rel)
			if link != "" {
				return HostPath(mounts[:i], link)
			}
			return host, ok
		case Symlink:
			target := m.Source
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir(m.Dest), target)
			}
			return HostPath(mounts[:i], filepath.Join(target, rel))
		default:
			return "", false
		}
	}
	return "", false
}

// userName is what NameUser writes into a password file: no field
// separator, no newline, nothing a reader could take for another entry.
var userName = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,63}$`)

// NameUser gives the sandbox's /etc/passwd and /etc/group an entry for the
// task's user and group when the host's files have none (Nomad's dynamic
// workload users exist only as IDs): otherwise `id -un`, `whoami`, a shell's
// prompt and R's Sys.info() find no name, and every such lookup goes on
// through each other source nsswitch.conf names (systemd's loads a library
// and searches its user records), in every process of the task that asks.
// An ID or a name the host's file already has is left as the host has it.
// The files are the host's as they are now, with the entry added, read-only
// as before.
func NameUser(mounts []Mount, name string, uid, gid uint32, home string) ([]Mount, error) {
	if !userName.MatchString(name) {
		return nil, fmt.Errorf("bwrap: user name %q: want lower-case letters, digits, '_' and '-'", name)
	}
	if !path.IsAbs(home) || strings.ContainsAny(home, ":\n") {
		return nil, fmt.Errorf("bwrap: home %q: want an absolute path without ':' or a newline", home)
	}
	out := slices.Clone(mounts)
	for i, m := range out {
		if m.Kind != Tree || m.Dest != "/etc" {
			continue
		}
		m.Entries = slices.Clone(m.Entries)
		for j, e := range m.Entries {
			if e.Kind != TreeBind {
				continue
			}
			var line string
			var id uint32
			switch e.Path {
			case "passwd":
				line, id = fmt.Sprintf("%s:x:%d:%d::%s:/bin/sh\n", name, uid, gid, home), uid
			case "group":
				line, id = fmt.Sprintf("%s:x:%d:\n", name, gid), gid
			default:
				continue
			}
			host, ok, err := readShared(e.Source)
			if err != nil {
				return nil, err
			}
			if !ok || hasEntry(host, name, id) {
				continue
			}
			if len(host) > 0 && host[len(host)-1] != '\n' {
				host = append(host, '\n')
			}
			data := append(host, line...)
			if len(data) > TreeDataMax {
				continue // a host file this large is bound as it is
			}
			m.Entries[j] = TreeEntry{Kind: TreeData, Path: e.Path, Data: data}
		}
		out[i] = m
	}
	return out, nil
}

// readShared reads path (links followed) when it is missing (nil, true) or
// a regular file of at most TreeDataMax bytes that every user may read, as
// the launcher copies such a file; ok is false for anything else (a file
// only root may read, a FIFO, a device, a larger file), which is then
// bound as the host has it. The checks and the read are of the one file
// opened, and a FIFO is never opened for reading.
func readShared(path string) (data []byte, ok bool, err error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("bwrap: %s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, false, fmt.Errorf("bwrap: %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o444 != 0o444 || st.Size > TreeDataMax {
		return nil, false, nil
	}
	f, err := os.Open("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return nil, false, fmt.Errorf("bwrap: %s: %w", path, err)
	}
	defer f.Close()
	data, err = io.ReadAll(io.LimitReader(f, TreeDataMax+1))
	if err != nil {
		return nil, false, fmt.Errorf("bwrap: reading %s: %w", path, err)
	}
	return data, len(data) <= TreeDataMax, nil
}

// hasEntry reports whether a passwd or group file has an entry of that
// name or of that ID (its third field).
func hasEntry(file []byte, name string, id uint32) bool {
	want := strconv.FormatUint(uint64(id), 10)
	for line := range strings.Lines(string(file)) {
		f := strings.SplitN(strings.TrimRight(line, "\n"), ":", 4)
		if f[0] == name || len(f) > 2 && f[2] == want {
			return true
		}
	}
	return false
}
