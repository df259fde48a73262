package driver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/helper/pluginutils/hclutils"
	"github.com/hashicorp/nomad/plugins/drivers"
	"github.com/hashicorp/nomad/plugins/drivers/testutils"
)

// configMountTask is a task whose config mounts src at /ref.
func configMountTask(t *testing.T, h *testutils.DriverHarness, name, script, src string, readonly *bool) *drivers.TaskConfig {
	t.Helper()
	tc := sh(script)
	tc.Mounts = []TaskMount{{Source: src, Destination: "/ref", ReadOnly: readonly}}
	return newTask(t, h, name, tc)
}

// mountRoot is an allowed root like /srv/data, holding ref/ with a file.
func mountRoot(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "srv-data")
	if err := os.MkdirAll(filepath.Join(root, "ref"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "ref"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "ref", "table.csv"), []byte("a,b\n1,2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// TestHarnessConfigMountReadOnlyByDefault: a path under mount_roots is bound
// read-only unless the job says otherwise, even where the files'
// permissions would let the task write.
func TestHarnessConfigMountReadOnlyByDefault(t *testing.T) {
	root := mountRoot(t)
	h, _ := newHarness(t, Config{MountRoots: []string{root}})
	task := configMountTask(t, h, "cfg-ro", "cat /ref/table.csv; echo x > /ref/new && echo WROTE; exit 0", filepath.Join(root, "ref"), nil)
	start(t, h, task)
	waitExit(t, h, task.ID, 20*time.Second)
	out, errs := logs(t, task, "stdout"), logs(t, task, "stderr")
	if !strings.Contains(out, "1,2") {
		t.Fatalf("the mount is not readable: %q %q", out, errs)
	}
	if strings.Contains(out, "WROTE") || !strings.Contains(errs, "Read-only file system") {
		t.Fatalf("a write did not fail as read-only: %q %q", out, errs)
	}
}

// TestHarnessConfigMountWritable: readonly = false needs the path under
// mount_roots_writable; there the task's writes reach the host.
func TestHarnessConfigMountWritable(t *testing.T) {
	root := mountRoot(t)
	rw := false
	t.Run("only-mount_roots", func(t *testing.T) {
		h, _ := newHarness(t, Config{MountRoots: []string{root}})
		task := configMountTask(t, h, "cfg-rw", "echo x > /ref/new", filepath.Join(root, "ref"), &rw)
		_, _, err := h.StartTask(task)
		if err == nil {
			_ = h.Impl().DestroyTask(task.ID, true)
			t.Fatal("a read-write mount started under a read-only root")
		}
		if !strings.Contains(err.Error(), "config mounts /ref") || !strings.Contains(err.Error(), "mount_roots_writable") {
			t.Fatalf("the error does not name the mount and mount_roots_writable: %v", err)
		}
	})
	t.Run("mount_roots_writable", func(t *testing.T) {
		h, _ := newHarness(t, Config{MountRootsWritable: []string{root}})
		task := configMountTask(t, h, "cfg-rw", "echo from-task > /ref/new", filepath.Join(root, "ref"), &rw)
		start(t, h, task)
		if res := waitExit(t, h, task.ID, 20*time.Second); res.ExitCode != 0 {
			t.Fatalf("task failed: %+v %s", res, logs(t, task, "stderr"))
		}
		if b, err := os.ReadFile(filepath.Join(root, "ref", "new")); err != nil || string(b) != "from-task\n" {
			t.Fatalf("the write did not reach the host: %q %v", b, err)
		}
	})
}

// TestHarnessConfigMountRefusals: a source outside the roots, a link out of
// a root, "..", a source behind a directory the task's UID cannot search and
// a plugin without roots are refused at start, naming the mount.
func TestHarnessConfigMountRefusals(t *testing.T) {
	root := mountRoot(t)
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("ref", filepath.Join(root, "inside-link")); err != nil {
		t.Fatal(err)
	}
	// Another team's dir, closed to other UIDs, holding world-readable files:
	// by path the task could not reach them, so a bind must not either.
	if err := os.MkdirAll(filepath.Join(root, "team-a", "reports"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "team-a"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, src string
		roots     []string
		want      string
	}{
		{"outside", outside, []string{root}, "outside the plugin's mount_roots"},
		{"link-out-of-root", filepath.Join(root, "escape"), []string{root}, "outside the plugin's mount_roots"},
		{"dotdot", filepath.Join(root, "ref") + "/../../" + filepath.Base(outside), []string{root}, `".."`},
		{"relative", "srv-data/ref", []string{root}, "absolute"},
		{"no-roots", filepath.Join(root, "ref"), nil, "mount_roots"},
		{"through-a-closed-dir", filepath.Join(root, "team-a", "reports"), []string{root}, "closed to the task's uid"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, _ := newHarness(t, Config{MountRoots: c.roots})
			task := configMountTask(t, h, "cfg-bad", "echo ran", c.src, nil)
			_, _, err := h.StartTask(task)
			if err == nil {
				_ = h.Impl().DestroyTask(task.ID, true)
				t.Fatal("the task started")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), "config mounts /ref") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("the error does not name the mount and %q: %v", c.want, err)
			}
		})
	}
	// A link that stays inside the root is resolved and allowed.
	t.Run("link-inside-root", func(t *testing.T) {
		h, _ := newHarness(t, Config{MountRoots: []string{root}})
		task := configMountTask(t, h, "cfg-link", "cat /ref/table.csv", filepath.Join(root, "inside-link"), nil)
		start(t, h, task)
		waitExit(t, h, task.ID, 20*time.Second)
		if out := logs(t, task, "stdout"); !strings.Contains(out, "1,2") {
			t.Fatalf("the mount through a link inside the root is not there: %q %s", out, logs(t, task, "stderr"))
		}
	})
}

// TestConfigMountRootsChecked: a mount root must be an absolute path below
// /: "/" would let a job bind anything of the host.
func TestConfigMountRootsChecked(t *testing.T) {
	for _, c := range []Config{
		{MountRoots: []string{"/"}},
		{MountRoots: []string{"srv/data"}},
		{MountRootsWritable: []string{"/srv/../"}},
		{MountRootsWritable: []string{"//"}},
	} {
		c.TmpSizeMB = 64
		if err := c.normalize(); err == nil || !strings.Contains(err.Error(), "mount_roots") {
			t.Errorf("%+v %+v: got %v, want a mount_roots error", c.MountRoots, c.MountRootsWritable, err)
		}
	}
	ok := Config{TmpSizeMB: 64, MountRoots: []string{"/srv/data"}, MountRootsWritable: []string{"/srv/results"}}
	if err := ok.normalize(); err != nil {
		t.Errorf("valid roots refused: %v", err)
	}
}

// TestTaskConfigMountsDecode: a job's mounts blocks decode as the driver
// reads them, read-only unless readonly = false.
func TestTaskConfigMountsDecode(t *testing.T) {
	var tc TaskConfig
	hclutils.NewConfigParser(taskConfigSpec).ParseHCL(t, `
config {
  command = "Rscript"
  mounts {
    source      = "/srv/data/reference"
    destination = "/data/reference"
  }
  mounts {
    source      = "/srv/results/app"
    destination = "/results"
    readonly    = false
  }
}`, &tc)
	if len(tc.Mounts) != 2 {
		t.Fatalf("mounts: %+v", tc.Mounts)
	}
	if m := tc.Mounts[0]; m.Source != "/srv/data/reference" || m.Destination != "/data/reference" || !m.readOnly() {
		t.Errorf("first mount: %+v (read-only %v)", m, m.readOnly())
	}
	if m := tc.Mounts[1]; m.Destination != "/results" || m.readOnly() {
		t.Errorf("second mount: %+v (read-only %v)", m, m.readOnly())
	}
}
