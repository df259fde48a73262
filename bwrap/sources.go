package bwrap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// errMissing is an optional source that does not exist.
var errMissing = errors.New("missing")

// openSources opens the source of every bind in mounts that names a trusted
// root (Beneath), as root and before the launcher drops to the task. The
// descriptors are numbered from firstFD in the order the launcher gets them;
// staged maps each such mount to the path where the launcher binds its
// descriptor (stage/<fd>), or to "" for an optional source that is missing;
// opened maps it to its descriptor. The caller closes files.
func openSources(mounts []Mount, firstFD int, stage string) (files []*os.File, staged map[int]string, opened map[int]*os.File, err error) {
	staged, opened = make(map[int]string), make(map[int]*os.File)
	defer func() {
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			files, opened = nil, nil
		}
	}()
	for i, m := range mounts {
		if !m.byDescriptor() {
			continue
		}
		if stage == "" {
			return nil, nil, nil, fmt.Errorf("bind source %s: no staging dir to bind it by descriptor", m.Source)
		}
		f, err := OpenSource(m)
		if errors.Is(err, errMissing) && m.Optional {
			staged[i] = ""
			continue
		}
		if err != nil {
			return nil, nil, nil, err
		}
		// A descriptor of the host's mount namespace cannot be bound in the
		// launcher's own: hand it a detached copy of the mount instead,
		// which it moves into place.
		tree, err := unix.OpenTree(int(f.Fd()), "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
		f.Close()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("bind source %s (for %s): cloning its mount: %w", m.Source, m.Dest, err)
		}
		// Private: a clone of a shared mount (systemd makes / shared) is
		// its peer, and the host's later mounts below it would reach the
		// sandbox.
		attr := unix.MountAttr{Propagation: unix.MS_PRIVATE}
		if m.FollowLinks {
			attr.Attr_clr = unix.MOUNT_ATTR_NOSYMFOLLOW
		}
		if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
			unix.Close(tree)
			return nil, nil, nil, fmt.Errorf("bind source %s (for %s): making it private and following links in it: %w", m.Source, m.Dest, err)
		}
		staged[i] = filepath.Join(stage, strconv.Itoa(firstFD+len(files)))
		cloned := os.NewFile(uintptr(tree), m.Source)
		files = append(files, cloned)
		opened[i] = cloned
	}
	return files, staged, opened, nil
}

// OpenSource opens a bind's source as an O_PATH descriptor and checks it:
// beneath m.Beneath without following links when that is set, a directory
// or regular file, owned by m.Owner when that is set. Errors name the path
// and what is wrong with it.
func OpenSource(m Mount) (*os.File, error) {
	what := fmt.Sprintf("bind source %s (for %s)", m.Source, m.Dest)
	if !filepath.IsAbs(m.Source) {
		return nil, fmt.Errorf("%s: not an absolute path", what)
	}
	var fd int
	var err error
	if m.Beneath == "" {
		fd, err = unix.Open(m.Source, unix.O_PATH|unix.O_CLOEXEC, 0)
	} else {
		fd, err = OpenBeneath(m.Beneath, m.Source, 0)
	}
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil, fmt.Errorf("%s: %w (no such file or directory)", what, errMissing)
	case errors.Is(err, unix.ELOOP):
		return nil, fmt.Errorf("%s: a link at or below %s: refusing to follow it", what, m.Beneath)
	case errors.Is(err, unix.EXDEV):
		return nil, fmt.Errorf("%s: lies outside %s", what, m.Beneath)
	case err != nil:
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	f := os.NewFile(uintptr(fd), m.Source)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	mode := st.Mode & unix.S_IFMT
	switch {
	case mode != unix.S_IFDIR && mode != unix.S_IFREG:
		err = fmt.Errorf("%s: not a directory or regular file (mode %o)", what, mode)
	case m.MustBeDir && mode != unix.S_IFDIR:
		err = fmt.Errorf("%s: not a directory", what)
	case m.Owner != nil && st.Uid != *m.Owner:
		err = fmt.Errorf("%s: owned by uid %d, not %d", what, st.Uid, *m.Owner)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Within reports whether path is root or lies below it, by their clean
// names (no link is resolved).
func Within(path, root string) bool {
	_, ok := RelWithin(path, root)
	return ok
}

// RelWithin is path relative to root ("." for root itself), and whether
// path is Within root.
func RelWithin(path, root string) (string, bool) {
	rel, err := filepath.Rel(filepath.Clean(root), filepath.Clean(path))
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", false
	}
	return rel, true
}

// OpenBeneath opens path, which must lie in root (or be root), as an
// O_PATH descriptor, resolving every component below root without following
// a link: a link on the way fails with ELOOP, a path that leaves root with
// EXDEV. root itself is opened as named: it is the operator's or the
// client's, and may be a link they made. flags are added to O_PATH (with
// O_NOFOLLOW a link at path itself comes back as the link).
func OpenBeneath(root, path string, flags int) (int, error) {
	rel, ok := RelWithin(path, root)
	if !ok {
		return -1, unix.EXDEV
	}
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("its root %s: %w", root, err)
	}
	defer unix.Close(rootFD)
	return OpenAt(rootFD, rel, flags)
}

// OpenAt is OpenBeneath from an open directory and a path relative to it.
func OpenAt(dirFD int, rel string, flags int) (int, error) {
	for {
		fd, err := unix.Openat2(dirFD, rel, &unix.OpenHow{
			Flags:   uint64(unix.O_PATH | unix.O_CLOEXEC | flags),
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		// EAGAIN: a rename elsewhere raced the lookup; try again.
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		return fd, err
	}
}
