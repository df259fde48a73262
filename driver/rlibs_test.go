package driver

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// libRootWith is an allowed library root like /srv/r-libs, root's and 0755,
// holding ok/ (a library as an operator makes it, with a package).
func libRootWith(t *testing.T) string {
	t.Helper()
	root, err := os.MkdirTemp("", "r-libs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "ok", "goodpkg"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

// mkdirMode makes dir with exactly mode (sticky bit included) and owner,
// whatever the umask.
func mkdirMode(t *testing.T, dir string, mode uint32, uid, gid int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

// TestHarnessRLibsRefusals: r_libs get the checks a task config mount gets,
// and more, since a library is code the task runs: refused are a library
// behind a directory the task's UID cannot search (a bind by descriptor must
// not open a way through it), one that a task UID could write or swap (its
// packages would run in every task that uses it), one whose root is a link
// to /, and one whose path inside the sandbox lies in /proc. Each error
// names r_libs and what is wrong.
func TestHarnessRLibsRefusals(t *testing.T) {
	rig := rigRoot(t, "4.4.2")
	root := libRootWith(t)
	// Another team's libraries, closed to other UIDs.
	mkdirMode(t, filepath.Join(root, "team-a"), 0o700, 0, 0)
	mkdirMode(t, filepath.Join(root, "team-a", "lib"), 0o755, 0, 0)
	// A library a task's UID owns (it can chmod it whatever its mode).
	mkdirMode(t, filepath.Join(root, "task-owned"), 0o755, 80077, 80077)
	mkdirMode(t, filepath.Join(root, "world-writable"), 0o777, 0, 0)
	mkdirMode(t, filepath.Join(root, "world-writable-sticky"), 0o1777, 0, 0)
	mkdirMode(t, filepath.Join(root, "group-writable"), 0o775, 0, 80078)
	// The library is root's, but sits in a dir every UID may write: a task
	// could rename it away and put its own in its place.
	mkdirMode(t, filepath.Join(root, "scratch"), 0o777, 0, 0)
	mkdirMode(t, filepath.Join(root, "scratch", "lib"), 0o755, 0, 0)
	// Root's library in a sticky dir: tasks may add names there, not
	// rename or remove it.
	mkdirMode(t, filepath.Join(root, "sticky"), 0o1777, 0, 0)
	mkdirMode(t, filepath.Join(root, "sticky", "lib", "stickypkg"), 0o755, 0, 0)
	// Root's, its group root's, and a task UID may write it through its ACL.
	mkdirMode(t, filepath.Join(root, "acl"), 0o755, 0, 0)
	setACL(t, filepath.Join(root, "acl"), 80079)

	conf := Config{RRoot: rig, DefaultR: filepath.Join(rig, "4.4.2", "bin", "R"), RLibraryRoots: []string{root}}
	for _, c := range []struct{ name, lib, want string }{
		{"through-a-closed-dir", filepath.Join(root, "team-a", "lib"), "closed to the task's uid"},
		{"owned-by-a-task-uid", filepath.Join(root, "task-owned"), "owned by uid 80077"},
		{"world-writable", filepath.Join(root, "world-writable"), "writable by every uid"},
		{"world-writable-sticky", filepath.Join(root, "world-writable-sticky"), "writable by every uid"},
		{"group-writable-by-a-task-gid", filepath.Join(root, "group-writable"), "writable by gid 80078"},
		{"in-a-dir-tasks-can-write", filepath.Join(root, "scratch", "lib"), filepath.Join(root, "scratch") + " is writable by every uid"},
		{"acl-grants-a-task-uid", filepath.Join(root, "acl"), "writable through its ACL"},
		{"inside-path-in-proc", "/proc/self/root" + filepath.Join(root, "ok"), "/proc"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// A harness per task: a task's cleanup closes its client.
			h, _ := newHarness(t, conf)
			task := newTask(t, h, "badlib", TaskConfig{Command: "Rscript", RLibs: []string{c.lib}})
			_, _, err := h.StartTask(task)
			if err == nil {
				_ = h.Impl().DestroyTask(task.ID, true)
				t.Fatal("the task started")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), "r_libs") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("the error does not name r_libs and %q: %v", c.want, err)
			}
		})
	}
	// The operator's libraries, next to those, are bound and read.
	t.Run("ok", func(t *testing.T) {
		h, _ := newHarness(t, conf)
		task := newTask(t, h, "oklib", TaskConfig{Command: "Rscript", RLibs: []string{filepath.Join(root, "ok"), filepath.Join(root, "sticky", "lib")}})
		start(t, h, task)
		waitExit(t, h, task.ID, 20*time.Second)
		if out := logs(t, task, "stdout"); !strings.Contains(out, "goodpkg") || !strings.Contains(out, "stickypkg") {
			t.Fatalf("the libraries are not there: %q %s", out, logs(t, task, "stderr"))
		}
	})
}

// setACL gives uid rwx on dir by an access ACL (as setfacl -m u:UID:rwx).
func setACL(t *testing.T, dir string, uid uint32) {
	t.Helper()
	// The kernel's posix_acl_xattr format: a version, then (tag, perm, id)
	// entries sorted by tag.
	acl := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range []struct {
		tag, perm uint16
		id        uint32
	}{{0x01, 7, ^uint32(0)}, {0x02, 7, uid}, {0x04, 5, ^uint32(0)}, {0x10, 7, ^uint32(0)}, {0x20, 5, ^uint32(0)}} {
		acl = binary.LittleEndian.AppendUint16(acl, e.tag)
		acl = binary.LittleEndian.AppendUint16(acl, e.perm)
		acl = binary.LittleEndian.AppendUint32(acl, e.id)
	}
	if err := unix.Setxattr(dir, "system.posix_acl_access", acl, 0); err != nil {
		t.Skipf("no ACLs here: %v", err)
	}
}

// TestHarnessRLibsRootALinkToSlash: a library root (or a mount root) that is
// a link is followed, as the operator made it; one that leads to / would
// allow every host dir, and is refused.
func TestHarnessRLibsRootALinkToSlash(t *testing.T) {
	rig := rigRoot(t, "4.4.2")
	slash := filepath.Join(libRootWith(t), "slash")
	if err := os.Symlink("/", slash); err != nil {
		t.Fatal(err)
	}
	t.Run("r_library_roots", func(t *testing.T) {
		h, _ := newHarness(t, Config{RRoot: rig, DefaultR: filepath.Join(rig, "4.4.2", "bin", "R"), RLibraryRoots: []string{slash}})
		task := newTask(t, h, "slashlib", TaskConfig{Command: "Rscript", RLibs: []string{"/usr/lib"}})
		_, _, err := h.StartTask(task)
		if err == nil {
			_ = h.Impl().DestroyTask(task.ID, true)
			t.Fatal("a library under a root that leads to / started")
		}
		if !strings.Contains(err.Error(), "r_libs") || !strings.Contains(err.Error(), slash+" leads to /") {
			t.Fatalf("the error does not name r_libs and the root: %v", err)
		}
	})
	t.Run("mount_roots", func(t *testing.T) {
		h, _ := newHarness(t, Config{MountRoots: []string{slash}})
		task := configMountTask(t, h, "cfg-slash", "echo ran", "/etc", nil)
		_, _, err := h.StartTask(task)
		if err == nil {
			_ = h.Impl().DestroyTask(task.ID, true)
			t.Fatal("a mount under a root that leads to / started")
		}
		if !strings.Contains(err.Error(), "config mounts /ref") || !strings.Contains(err.Error(), slash+" leads to /") {
			t.Fatalf("the error does not name the mount and the root: %v", err)
		}
	})
}

// TestConfigLibraryRootsChecked: r_library_roots are checked as mount_roots
// are: absolute, below /, no "..".
func TestConfigLibraryRootsChecked(t *testing.T) {
	for _, roots := range [][]string{{"/"}, {"srv/r-libs"}, {"/srv/../"}, {"//"}} {
		c := Config{TmpSizeMB: 64, RLibraryRoots: roots}
		if err := c.normalize(); err == nil || !strings.Contains(err.Error(), "r_library_roots") {
			t.Errorf("%q: got %v, want an r_library_roots error", roots, err)
		}
	}
	ok := Config{TmpSizeMB: 64, RLibraryRoots: []string{"/srv/r-libs"}}
	if err := ok.normalize(); err != nil {
		t.Errorf("a valid root refused: %v", err)
	}
}

// TestUnderRoot: the check of a host path against the operator's roots,
// for mounts and r_libs alike.
func TestUnderRoot(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "4.4", "common"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Symlink(outside, filepath.Join(root, "escape"))
	os.Symlink(filepath.Join(root, "4.4"), filepath.Join(root, "current"))
	rootLink := filepath.Join(outside, "root-link")
	os.Symlink(root, rootLink)
	roots := []string{root}

	if got, r, err := underRoot(filepath.Join(root, "4.4", "common"), roots, "r_library_roots"); err != nil || got != filepath.Join(root, "4.4", "common") || r != root {
		t.Fatalf("inside: %q %q %v", got, r, err)
	}
	if got, _, err := underRoot(filepath.Join(root, "current", "common"), roots, "r_library_roots"); err != nil || got != filepath.Join(root, "4.4", "common") {
		t.Fatalf("a link within the root: %q %v", got, err)
	}
	// A root that is a link is the operator's: followed.
	if _, r, err := underRoot(filepath.Join(root, "4.4"), []string{rootLink}, "r_library_roots"); err != nil || r != root {
		t.Fatalf("a root that is a link: %q %v", r, err)
	}
	for _, bad := range []string{
		outside,
		filepath.Join(root, "4.4", "..", "..", filepath.Base(outside)),
		filepath.Join(root, "escape"),
		"relative/lib",
		filepath.Join(root, "missing"),
	} {
		if _, _, err := underRoot(bad, roots, "r_library_roots"); err == nil {
			t.Errorf("%q allowed", bad)
		}
	}
	if _, _, err := underRoot(filepath.Join(root, "4.4"), nil, "r_library_roots"); err == nil || !strings.Contains(err.Error(), "r_library_roots") {
		t.Errorf("no roots: %v", err)
	}
}
