package driver

import (
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// The plugin's task_api setting: whether tasks reach the Task API, the
// client's unix socket into the agent's HTTP API at secrets/api.sock.
const (
	// taskAPIAuto hides it when the plugin manages egress rules: the
	// operator then restricts where tasks may connect, and the agent's API
	// is one of the internal services such rules deny.
	taskAPIAuto  = "auto"
	taskAPIAllow = "allow"
	taskAPIDeny  = "deny"
)

// taskAPISocket is the Task API's socket in the task's secrets dir (Nomad's
// client/allocrunner/taskrunner/api_hook.go).
const taskAPISocket = "api.sock"

// hidesTaskAPI says whether tasks lose the Task API under c.
func (c Config) hidesTaskAPI() bool {
	switch c.TaskAPI {
	case taskAPIAllow:
		return false
	case taskAPIDeny:
		return true
	}
	return c.Egress != nil && c.Egress.ManageRules
}

// hideTaskAPI makes secrets/api.sock unreachable for the task by covering it
// with a read-only bind mount of /dev/null in the plugin's mount namespace,
// which is the agent's.
//
// Why there, and not in the sandbox: the client's api hook re-creates the
// socket (os.RemoveAll, then net.Listen) after every agent restart, and an
// unlink of a file that is a mount point only in another mount namespace
// succeeds and silently detaches that mount. In the agent's own namespace
// the unlink fails with EBUSY and the listen with EADDRINUSE (the hook logs
// them and goes on), so the cover stays; the sandbox, whose binds are
// recursive copies of the agent's mounts made after this, sees it too.
//
// The socket is opened by descriptor below the allocation dir without
// following links, and the cover is attached to that descriptor, so nothing
// swapped in on the way redirects the mount. When there is no socket yet (the
// client could not make one), an empty placeholder is covered instead, so
// that a later agent cannot make one there either. A cover already there (a
// start after an earlier one that was never destroyed) is kept as it is.
func hideTaskAPI(allocDir, secretsDir string) error {
	dirfd, err := openDirBeneath(allocDir, secretsDir)
	if err != nil {
		return fmt.Errorf("secrets dir %s: %w", secretsDir, err)
	}
	defer unix.Close(dirfd)
	sock := filepath.Join(secretsDir, taskAPISocket)
	fd, err := openAt(dirfd, taskAPISocket)
	if errors.Is(err, unix.ENOENT) {
		fd, err = makePlaceholder(dirfd)
	}
	if err != nil {
		return fmt.Errorf("task api socket %s: %w", sock, err)
	}
	defer unix.Close(fd)
	covered, err := isTaskAPICover(dirfd, fd)
	if err != nil {
		return fmt.Errorf("task api socket %s: %w", sock, err)
	}
	if covered {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("task api socket %s: %w", sock, err)
	}
	placeholder := st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == 0 && st.Uid == 0
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK && !placeholder {
		return fmt.Errorf("task api socket %s is %s, not a socket", sock, fileKind(st.Mode))
	}
	if err := mountTaskAPICover(fd); err != nil {
		return fmt.Errorf("covering the task api socket %s: %w", sock, err)
	}
	return nil
}

// makePlaceholder creates an empty root-owned file as api.sock in dirfd and
// returns an O_PATH descriptor of it. No task runs yet to swap it.
func makePlaceholder(dirfd int) (int, error) {
	fd, err := unix.Openat2(dirfd, taskAPISocket, &unix.OpenHow{
		Flags:   unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Mode:    0o444,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS,
	})
	if err != nil {
		return -1, fmt.Errorf("placeholder: %w", err)
	}
	unix.Close(fd)
	return openAt(dirfd, taskAPISocket)
}

// mountTaskAPICover attaches a read-only, nodev, nosuid, noexec bind of
// /dev/null onto the file target holds. The new mount API sets the flags on
// the detached mount before it is attached, and move_mount attaches it to
// the descriptor itself, not to a path.
func mountTaskAPICover(target int) error {
	src, err := unix.OpenTree(unix.AT_FDCWD, "/dev/null", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree /dev/null: %w", err)
	}
	defer unix.Close(src)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC}
	if err := unix.MountSetattr(src, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("mount_setattr: %w", err)
	}
	if err := unix.MoveMount(src, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount: %w", err)
	}
	return nil
}

// isTaskAPICover says whether fd, opened as api.sock in dirfd, is a cover
// hideTaskAPI mounted: /dev/null on a mount of its own.
func isTaskAPICover(dirfd, fd int) (bool, error) {
	var dir, file unix.Statx_t
	if err := unix.Statx(dirfd, "", unix.AT_EMPTY_PATH, unix.STATX_TYPE|unix.STATX_MNT_ID, &dir); err != nil {
		return false, err
	}
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_TYPE|unix.STATX_MNT_ID, &file); err != nil {
		return false, err
	}
	if file.Mnt_id == dir.Mnt_id {
		return false, nil
	}
	var null unix.Stat_t
	if err := unix.Stat("/dev/null", &null); err != nil {
		return false, err
	}
	isNull := uint32(file.Mode)&unix.S_IFMT == unix.S_IFCHR &&
		unix.Mkdev(file.Rdev_major, file.Rdev_minor) == null.Rdev
	if !isNull {
		return false, errors.New("something other than bwrap-r's cover is mounted there")
	}
	return true, nil
}

// unhideTaskAPI removes what hideTaskAPI mounted on secrets/api.sock, if
// anything. A missing secrets dir (the allocation is gone) is no error.
func unhideTaskAPI(allocDir, secretsDir string) error {
	dirfd, err := openDirBeneath(allocDir, secretsDir)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("secrets dir %s: %w", secretsDir, err)
	}
	defer unix.Close(dirfd)
	// More than one cover would be a bug; take them all off.
	for i := 0; i < 8; i++ {
		fd, err := openAt(dirfd, taskAPISocket)
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("task api socket in %s: %w", secretsDir, err)
		}
		covered, err := isTaskAPICover(dirfd, fd)
		if err == nil && covered {
			// The descriptor is the cover's root: its /proc link names
			// exactly that mount.
			err = unix.Unmount(procFD(fd), unix.MNT_DETACH)
		}
		unix.Close(fd)
		if err != nil || !covered {
			return err
		}
	}
	return fmt.Errorf("task api socket in %s: still covered after 8 unmounts", secretsDir)
}
