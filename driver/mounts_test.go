package driver

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/plugins/drivers"
	"github.com/hashicorp/nomad/plugins/drivers/testutils"

	"github.com/bwrap-r/bwrap-r/bwrap"
)

// taskUIDOf is the UID of a task's nomad-<N> user.
func taskUIDOf(t *testing.T, task *drivers.TaskConfig) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimPrefix(task.User, "nomad-"))
	if err != nil {
		t.Fatalf("task user %q", task.User)
	}
	return n
}

// hostVolume is a directory like a client's host_volume path, owned by uid.
func hostVolume(t *testing.T, uid int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "volume")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, uid); err != nil {
		t.Fatal(err)
	}
	return dir
}

// volumeTask is a task handed one mount by Nomad, its volume owned by the
// task's UID; edit may change the mount.
func volumeTask(t *testing.T, h *testutils.DriverHarness, name, script string, edit func(vol string, m *drivers.MountConfig)) (*drivers.TaskConfig, string) {
	t.Helper()
	var vol string
	task := newTaskWith(t, h, name, sh(script), func(task *drivers.TaskConfig) {
		vol = hostVolume(t, taskUIDOf(t, task))
		m := &drivers.MountConfig{TaskPath: "/data", HostPath: vol}
		if edit != nil {
			edit(vol, m)
		}
		task.Mounts = []*drivers.MountConfig{m}
	})
	return task, vol
}

func TestHarnessVolumeReadWrite(t *testing.T) {
	h, _ := newHarness(t, Config{})
	task, vol := volumeTask(t, h, "vol-rw", "echo written-inside > /data/out && ls -ld /data", nil)
	start(t, h, task)
	if res := waitExit(t, h, task.ID, 20*time.Second); res.ExitCode != 0 {
		t.Fatalf("task failed: %+v\n%s%s", res, logs(t, task, "stdout"), logs(t, task, "stderr"))
	}
	b, err := os.ReadFile(filepath.Join(vol, "out"))
	if err != nil || string(b) != "written-inside\n" {
		t.Fatalf("the file is not on the host volume: %q, %v", b, err)
	}
}

func TestHarnessVolumeReadOnly(t *testing.T) {
	h, _ := newHarness(t, Config{})
	task, vol := volumeTask(t, h, "vol-ro", "cat /data/in; echo x > /data/out && echo WROTE; exit 0", func(vol string, m *drivers.MountConfig) {
		m.Readonly = true
		if err := os.WriteFile(filepath.Join(vol, "in"), []byte("reference-data\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	start(t, h, task)
	waitExit(t, h, task.ID, 20*time.Second)
	out, errs := logs(t, task, "stdout"), logs(t, task, "stderr")
	if !strings.Contains(out, "reference-data") {
		t.Fatalf("the read-only volume is not readable: %q %q", out, errs)
	}
	if strings.Contains(out, "WROTE") || !strings.Contains(errs, "Read-only file system") {
		t.Fatalf("a write to a read-only volume did not fail as read-only: stdout %q stderr %q", out, errs)
	}
	if _, err := os.Stat(filepath.Join(vol, "out")); err == nil {
		t.Fatal("the write reached the host volume")
	}
}

// TestHarnessVolumeInAlloc: a volume mounted inside /alloc (Nomad's
// /alloc/data/persist) holds what the task writes there: the data reaches
// the volume, not the allocation's temporary dir. A relative destination is
// relative to the task dir, as under exec.
func TestHarnessVolumeInAlloc(t *testing.T) {
	for _, dest := range []string{"/alloc/data/persist", "alloc/data/persist"} {
		t.Run(strings.ReplaceAll(dest, "/", "_"), func(t *testing.T) {
			h, _ := newHarness(t, Config{})
			task, vol := volumeTask(t, h, "vol-alloc", "echo kept > /alloc/data/persist/result", func(vol string, m *drivers.MountConfig) {
				m.TaskPath = dest
			})
			start(t, h, task)
			if res := waitExit(t, h, task.ID, 20*time.Second); res.ExitCode != 0 {
				t.Fatalf("task failed: %+v\n%s", res, logs(t, task, "stderr"))
			}
			if b, err := os.ReadFile(filepath.Join(vol, "result")); err != nil || string(b) != "kept\n" {
				t.Fatalf("the file did not reach the host volume: %q, %v", b, err)
			}
			if _, err := os.Stat(filepath.Join(task.TaskDir().SharedAllocDir, "data", "persist", "result")); err == nil {
				t.Fatal("the file landed in the allocation's dir")
			}
		})
	}
}

// TestHarnessVolumeRefusals: what cannot be made fails the start, naming the
// mount; nothing is dropped.
func TestHarnessVolumeRefusals(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(vol string, m *drivers.MountConfig)
		want string
	}{
		{"link-source", func(vol string, m *drivers.MountConfig) {
			link := filepath.Join(filepath.Dir(vol), "link")
			if err := os.Symlink(vol, link); err != nil {
				t.Fatal(err)
			}
			m.HostPath = link
		}, "refusing to follow"},
		{"missing-source", func(vol string, m *drivers.MountConfig) { m.HostPath = vol + "-gone" }, "no such file"},
		{"host-to-task", func(vol string, m *drivers.MountConfig) { m.PropagationMode = "host-to-task" }, "propagation_mode"},
		{"bidirectional", func(vol string, m *drivers.MountConfig) { m.PropagationMode = "bidirectional" }, "propagation_mode"},
		{"in-proc", func(vol string, m *drivers.MountConfig) { m.TaskPath = "/proc/x" }, "/proc"},
		{"dotdot", func(vol string, m *drivers.MountConfig) { m.TaskPath = "/alloc/../etc" }, ".."},
		{"in-read-only-usr", func(vol string, m *drivers.MountConfig) { m.TaskPath = "/usr/no-such-dir" }, "read-only"},
		{"in-read-only-etc-dir", func(vol string, m *drivers.MountConfig) { m.TaskPath = "/etc/ssl/certs/no-such-dir" }, "read-only"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, _ := newHarness(t, Config{})
			task, _ := volumeTask(t, h, "vol-bad", "echo ran", c.edit)
			_, _, err := h.StartTask(task)
			if err == nil {
				_ = h.Impl().DestroyTask(task.ID, true)
				t.Fatal("the task started")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), "volume mount "+task.Mounts[0].TaskPath) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("the error does not name the mount and %q: %v", c.want, err)
			}
		})
	}
}

// TestHarnessVolumeInEtc: a volume can go into /etc, which the launcher
// builds as one read-only tree: its mount point is made there, and /etc
// stays read-only around it.
func TestHarnessVolumeInEtc(t *testing.T) {
	h, _ := newHarness(t, Config{})
	task, vol := volumeTask(t, h, "vol-etc", "echo in-etc > /etc/app/conf/out && ! touch /etc/app/x 2>/dev/null && cat /etc/hosts >/dev/null", func(vol string, m *drivers.MountConfig) {
		m.TaskPath = "/etc/app/conf"
	})
	start(t, h, task)
	if res := waitExit(t, h, task.ID, 20*time.Second); res.ExitCode != 0 {
		t.Fatalf("task failed: %+v\n%s%s", res, logs(t, task, "stdout"), logs(t, task, "stderr"))
	}
	if b, err := os.ReadFile(filepath.Join(vol, "out")); err != nil || string(b) != "in-etc\n" {
		t.Fatalf("the volume in /etc: %q, %v", b, err)
	}
}

// TestHarnessVolumePrivate: a volume's mount is private in the sandbox
// (what bwrap-r promises for propagation "private"): mountinfo shows it with
// no shared or master peer group.
func TestHarnessVolumePrivate(t *testing.T) {
	h, _ := newHarness(t, Config{})
	task, _ := volumeTask(t, h, "vol-private", "grep ' /data ' /proc/self/mountinfo", nil)
	start(t, h, task)
	waitExit(t, h, task.ID, 20*time.Second)
	line := strings.TrimSpace(logs(t, task, "stdout"))
	t.Log(line)
	if line == "" {
		t.Fatalf("no /data in the sandbox's mountinfo: %s", logs(t, task, "stderr"))
	}
	pre, _, _ := strings.Cut(line, " - ")
	if strings.Contains(pre, "shared:") || strings.Contains(pre, "master:") {
		t.Fatalf("the volume's mount propagates: %s", line)
	}
}

// TestHarnessVolumesNested: a volume inside another is bound after it
// whatever the job's order, and two mounts at one destination are refused.
func TestHarnessVolumesNested(t *testing.T) {
	h, _ := newHarness(t, Config{})
	var outer, inner string
	task := newTaskWith(t, h, "vol-nested", sh("cat /data/in/marker && echo x > /data/top"), func(task *drivers.TaskConfig) {
		uid := taskUIDOf(t, task)
		outer, inner = hostVolume(t, uid), hostVolume(t, uid)
		if err := os.WriteFile(filepath.Join(inner, "marker"), []byte("inner-volume\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		task.Mounts = []*drivers.MountConfig{
			{TaskPath: "/data/in", HostPath: inner, Readonly: true},
			{TaskPath: "/data", HostPath: outer},
		}
	})
	start(t, h, task)
	if res := waitExit(t, h, task.ID, 20*time.Second); res.ExitCode != 0 {
		t.Fatalf("task failed: %+v %s", res, logs(t, task, "stderr"))
	}
	if out := logs(t, task, "stdout"); out != "inner-volume\n" {
		t.Fatalf("the inner volume is not at /data/in: %q", out)
	}
	if _, err := os.Stat(filepath.Join(outer, "top")); err != nil {
		t.Fatalf("the outer volume did not get the file: %v", err)
	}

	h2, _ := newHarness(t, Config{})
	dup := newTaskWith(t, h2, "vol-dup", sh("true"), func(task *drivers.TaskConfig) {
		uid := taskUIDOf(t, task)
		task.Mounts = []*drivers.MountConfig{
			{TaskPath: "/data", HostPath: hostVolume(t, uid)},
			{TaskPath: "/data/", HostPath: hostVolume(t, uid)},
		}
	})
	if _, _, err := h2.StartTask(dup); err == nil || !strings.Contains(err.Error(), "also the destination") {
		if err == nil {
			_ = h2.Impl().DestroyTask(dup.ID, true)
		}
		t.Fatalf("two mounts at /data: got %v, want a refusal", err)
	}
}

// Nothing can be mounted below a file the launcher writes into /etc (the
// task user's passwd and group): refused at the start, with the file named,
// rather than failing in the launcher.
func TestMountBelowAWrittenEtcFileRefused(t *testing.T) {
	mounts, err := bwrap.NameUser(bwrap.SystemMounts(1<<20), "nomad-80123", 80123, 80123, "/local")
	if err != nil {
		t.Fatal(err)
	}
	err = mountpointPossible(mounts, namedBind{bwrap.Mount{Kind: bwrap.ROBind, Source: "/usr", Dest: "/etc/passwd/x"}, "volume_mount data"})
	if err == nil || !strings.Contains(err.Error(), "lies below /etc/passwd, a file in the sandbox") {
		t.Errorf("a mount below the written /etc/passwd: %v", err)
	}
	// Over the file itself it replaces it whole, as over any /etc entry.
	if err := mountpointPossible(mounts, namedBind{bwrap.Mount{Kind: bwrap.ROBind, Source: "/usr", Dest: "/etc/passwd"}, "volume_mount data"}); err != nil {
		t.Errorf("a mount over /etc/passwd: %v", err)
	}
}

// mountNSHeld counts this process's descriptors that are mount namespaces.
func mountNSHeld(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "mnt:[") {
			n++
		}
	}
	return n
}

// Once DestroyTask returns, no descriptor of the plugin's holds the
// sandbox's mount namespaces (held while it ran, for a quick exit): none is
// left behind, and the client may unmount the allocation's volumes.
func TestHarnessDestroyReleasesTheSandboxMounts(t *testing.T) {
	h, _ := newHarness(t, Config{})
	// A first task makes the launchers' template namespace, held for the
	// plugin's life.
	first := newTask(t, h, "first", sh("true"))
	start(t, h, first)
	waitExit(t, h, first.ID, 20*time.Second)
	if err := h.DestroyTask(first.ID, true); err != nil {
		t.Fatal(err)
	}
	before := mountNSHeld(t)
	for i := 0; i < 3; i++ {
		task := newTask(t, h, "again", sh("true"))
		start(t, h, task)
		waitExit(t, h, task.ID, 20*time.Second)
		if err := h.DestroyTask(task.ID, true); err != nil {
			t.Fatal(err)
		}
		if n := mountNSHeld(t); n != before {
			t.Fatalf("after DestroyTask: %d mount namespaces held, want %d", n, before)
		}
	}
}
