package driver

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/bwrap-r/bwrap-r/bwrap"
)

// Root's steps in a task's dirs go by descriptor: the dirs are the task's
// (or the client's, which writes there for it), and a link planted there
// must never redirect a chown, chmod or mount of root's.

// openBeneath opens path, which must lie below root, as an O_PATH
// descriptor without following any link on the way: a link in its path is
// an error, and a link at path itself comes back as the link (for the
// caller to refuse). root is the client's alloc dir, whose own path no task
// controls.
func openBeneath(root, path string) (int, error) {
	if filepath.Clean(path) == filepath.Clean(root) || !bwrap.Within(path, root) {
		return -1, fmt.Errorf("%s does not lie below %s", path, root)
	}
	fd, err := bwrap.OpenBeneath(root, path, unix.O_NOFOLLOW)
	return fd, explainBeneath(err)
}

// openAt is openBeneath from a directory descriptor.
func openAt(dirfd int, rel string) (int, error) {
	fd, err := bwrap.OpenAt(dirfd, rel, unix.O_NOFOLLOW)
	return fd, explainBeneath(err)
}

// explainBeneath says what a refusal of openBeneath means.
func explainBeneath(err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return errors.New("a symbolic link lies in its path (bwrap-r follows none there)")
	case errors.Is(err, unix.EXDEV):
		return errors.New("its path leaves the allocation dir")
	}
	return err
}

// openDirBeneath is openBeneath for a directory: anything else, a link to
// a directory included, is an error that says what it found.
func openDirBeneath(root, path string) (int, error) {
	fd, err := openBeneath(root, path)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		unix.Close(fd)
		return -1, fmt.Errorf("is %s, not a directory", fileKind(st.Mode))
	}
	return fd, nil
}

// fileKind names a file type for errors.
func fileKind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFLNK:
		return "a symbolic link"
	case unix.S_IFREG:
		return "a regular file"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	}
	return "of an unknown type"
}

// procFD is the path through which the kernel reaches exactly the file an
// open descriptor holds.
func procFD(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// ownDirBeneath gives the directory at path (below root) to uid:gid with
// mode, through a descriptor: a link in its place or its path is refused,
// never followed.
func ownDirBeneath(root, path string, uid, gid uint32, mode uint32) error {
	fd, err := openDirBeneath(root, path)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Fchownat(fd, "", int(uid), int(gid), unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	// fchmod refuses an O_PATH descriptor; its /proc link is the same inode.
	if err := unix.Chmod(procFD(fd), mode); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return nil
}
