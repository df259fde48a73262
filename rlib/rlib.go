// Package rlib handles the R package libraries a task asks for: the
// {minor} placeholder, a writable library created inside the task's own
// directories, and the package cache. (Host libraries under the operator's
// roots are checked by the driver, as its other host binds are.)
package rlib

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// MinorPlaceholder in a library path stands for the resolved R's
// major.minor, so that a library built for 4.3 is never used by 4.4.
const MinorPlaceholder = "{minor}"

// Expand fills in the placeholder.
func Expand(path, minor string) string {
	return strings.ReplaceAll(path, MinorPlaceholder, minor)
}

// hasDotDot reports a ".." component.
func hasDotDot(p string) bool {
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return true
		}
	}
	return false
}

// CheckWritable validates a writable library's path as the sandbox sees it:
// under /alloc or /local, no "..".
func CheckWritable(inside string) error {
	if !filepath.IsAbs(inside) || hasDotDot(inside) || filepath.Clean(inside) != inside {
		return fmt.Errorf("r_lib_writable %q: want a clean absolute path", inside)
	}
	for _, top := range []string{"/alloc/", "/local/"} {
		if strings.HasPrefix(inside, top) && len(inside) > len(top) {
			return nil
		}
	}
	return fmt.Errorf("r_lib_writable %q must lie under /alloc or /local", inside)
}

// walkDirs walks parts down from the directory fd, making each that is
// missing, and never following a link: visit gets each directory open, and
// whether this walk made it. It closes fd. name(i) names parts[:i+1] in
// errors.
func walkDirs(fd int, parts []string, name func(i int) string, visit func(fd, i int, created bool) error) error {
	defer func() { unix.Close(fd) }()
	for i, part := range parts {
		if part == "" || part == "." || part == ".." || strings.Contains(part, "/") {
			return fmt.Errorf("bad path element %q in %s", part, name(len(parts)-1))
		}
		created := true
		if err := unix.Mkdirat(fd, part, 0o755); errors.Is(err, unix.EEXIST) {
			created = false
		} else if err != nil {
			return err
		}
		next, err := unix.Openat(fd, part, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%s: %w (a symlink is refused)", name(i), err)
		}
		unix.Close(fd)
		fd = next
		if err := visit(fd, i, created); err != nil {
			return err
		}
	}
	return nil
}

// MakeDir creates rel (a relative path) under base, owned by uid:gid, when
// it does not exist yet. No symlink is followed at any step: base's contents
// are the task's, and the plugin is root.
func MakeDir(base, rel string, uid, gid int) error {
	fd, err := unix.Open(base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	parts := strings.Split(filepath.Clean(rel), "/")
	name := func(i int) string { return filepath.Join(parts[:i+1]...) }
	return walkDirs(fd, parts, name, func(fd, _ int, created bool) error {
		if !created {
			return nil
		}
		if err := unix.Fchown(fd, uid, gid); err != nil {
			return err
		}
		// 0755 whatever the agent's umask: the allocation's other tasks
		// read what the task installs there.
		return unix.Fchmod(fd, 0o755)
	})
}

// MakeCacheDir makes root (0711, if missing) and root/parts... below it,
// without following links. Directories between are 0755; the last is the
// shared cache: 01777, so that every task UID may add entries and none may
// replace or remove another's. All are root's. It returns the last's path.
func MakeCacheDir(root string, parts ...string) (string, error) {
	if err := os.MkdirAll(root, 0o711); err != nil {
		return "", err
	}
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("%s: %w (a symlink is refused)", root, err)
	}
	name := func(i int) string { return filepath.Join(append([]string{root}, parts[:i+1]...)...) }
	err = walkDirs(fd, parts, name, func(fd, i int, _ bool) error {
		mode := uint32(0o755)
		if i == len(parts)-1 {
			mode = 0o1777
		}
		// The umask, or whoever made it first, may have left another mode.
		if err := unix.Fchown(fd, 0, 0); err != nil {
			return err
		}
		return unix.Fchmod(fd, mode)
	})
	if err != nil {
		return "", err
	}
	return name(len(parts) - 1), nil
}
