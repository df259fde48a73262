package driver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hashicorp/nomad/plugins/drivers"
	"golang.org/x/sys/unix"

	"github.com/bwrap-r/bwrap-r/bwrap"
)

// stNoSymfollow is statfs's ST_NOSYMFOLLOW (Linux 5.10+).
const stNoSymfollow = 0x2000

// guardLinks makes the host's view of dir (a task's local/, an allocation's
// alloc/) a mount that follows no symbolic link, in the plugin's mount
// namespace, which is the agent's. Nomad's client writes into these dirs as
// root with writes that follow links (a dispatch_payload whose file leads
// into alloc/, an identity's filepath below local/), so a link a task (or a
// prestart task of its job) planted there would make root write any host
// file. Through the guard such a write fails with ELOOP. The sandbox's own
// binds of the dirs follow links as before (bwrap.Mount.FollowLinks).
//
// The dir is opened below the allocation dir without following links, and
// the guard is a bind of that very descriptor onto itself; an existing guard
// is kept.
func guardLinks(allocDir, dir string) error {
	fd, err := openDirBeneath(allocDir, dir)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	defer unix.Close(fd)
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	if sfs.Flags&stNoSymfollow != 0 {
		return nil
	}
	tree, err := unix.OpenTree(fd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("%s: open_tree: %w", dir, err)
	}
	defer unix.Close(tree)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSYMFOLLOW}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		return fmt.Errorf("%s: mount_setattr nosymfollow: %w", dir, err)
	}
	if err := unix.MoveMount(tree, "", fd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("%s: move_mount: %w", dir, err)
	}
	return nil
}

// unguardLinks takes off what guardLinks mounted on dir, if anything; a
// missing dir (the allocation is gone) is no error.
func unguardLinks(allocDir, dir string) error {
	for i := 0; i < 8; i++ {
		fd, err := openDirBeneath(allocDir, dir)
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		var sfs unix.Statfs_t
		var stx unix.Statx_t
		err = unix.Fstatfs(fd, &sfs)
		if err == nil {
			err = unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_BASIC_STATS, &stx)
		}
		guarded := err == nil && sfs.Flags&stNoSymfollow != 0 && stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0
		if guarded {
			// The descriptor is the guard's root: its /proc link names
			// exactly that mount.
			err = unix.Unmount(procFD(fd), unix.MNT_DETACH)
		}
		unix.Close(fd)
		if err != nil || !guarded {
			return err
		}
	}
	return fmt.Errorf("%s: still guarded after 8 unmounts", dir)
}

// guardTaskDirs guards the task's local/ and its allocation's alloc/.
func (d *Driver) guardTaskDirs(cfg *drivers.TaskConfig) error {
	d.guardMu.Lock()
	defer d.guardMu.Unlock()
	td := cfg.TaskDir()
	for _, dir := range []string{td.LocalDir, td.SharedAllocDir} {
		if err := guardLinks(cfg.AllocDir, dir); err != nil {
			return fmt.Errorf("guarding the task's dirs against links: %w", err)
		}
	}
	return nil
}

// reapGuards takes the guards off the dirs of allocations the client is
// removing, and finishes that removal. A guard stays after DestroyTask: the
// client calls it before every restart of a task and then rewrites its files
// (an identity's token) before the next StartTask, so that is when a planted
// link would be followed. Once the client removes the allocation (its GC
// unmounts and deletes secrets/, and deletes alloc/logs) a guard would only
// make its rmdir fail with EBUSY, and the mount table grow with every task.
func (d *Driver) reapGuards() {
	d.mu.RLock()
	root := d.allocRoot
	d.mu.RUnlock()
	if root == "" {
		return
	}
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	d.guardMu.Lock()
	defer d.guardMu.Unlock()
	for _, line := range strings.Split(string(info), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || !strings.Contains(f[5], "nosymfollow") {
			continue
		}
		point := unescapeMountinfo(f[4])
		rel, ok := bwrap.RelWithin(point, root)
		if !ok {
			continue
		}
		// <alloc>/alloc, or <alloc>/<task>/local.
		parts := strings.Split(rel, "/")
		allocDir := filepath.Join(root, parts[0])
		var gone string
		switch {
		case len(parts) == 2 && parts[1] == "alloc":
			gone = filepath.Join(point, allocLogsDir)
		case len(parts) == 3 && parts[2] == "local":
			gone = filepath.Join(allocDir, parts[1], "secrets")
		default:
			continue
		}
		if d.tasks.inAlloc(filepath.Base(allocDir), "") {
			continue
		}
		if _, err := os.Lstat(gone); !errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := unguardLinks(allocDir, point); err != nil {
			d.logger.Warn("taking a link guard off", "dir", point, "error", err)
			continue
		}
		// What the client's removal could not do with the guard on.
		_ = os.RemoveAll(point)
		_ = os.Remove(filepath.Dir(point))
		_ = os.Remove(allocDir)
	}
}

// unescapeMountinfo decodes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
