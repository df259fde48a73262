package driver

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A link the task plants in local/ or alloc/ is not followed by root's writes
// on the host (the client's, as for a dispatch payload or an identity file),
// while the task runs and after it exits, while inside the sandbox links work
// as ever; once the client removes the allocation no guard is left.
func TestHarnessTaskDirsFollowNoLinkForRoot(t *testing.T) {
	h, d := newHarness(t, Config{})
	canaries := t.TempDir()
	victim := filepath.Join(canaries, "victim")
	task := newTask(t, h, "planter", sh(`ln -s `+victim+` /local/token && ln -s `+victim+` /alloc/payload &&
echo inside > /local/a && ln -s /local/a /local/b && cat /local/b && echo planted; sleep 60`))
	start(t, h, task)
	waitLog(t, task, "stdout", "planted")
	if out := logs(t, task, "stdout"); !strings.HasPrefix(out, "inside\n") {
		t.Errorf("links do not work inside the sandbox: %q", out)
	}
	td := task.TaskDir()
	for _, p := range []string{filepath.Join(td.LocalDir, "token"), filepath.Join(td.SharedAllocDir, "payload")} {
		// As the client writes: root, a write that follows links.
		err := os.WriteFile(p, []byte("root's write"), 0o644)
		if !errors.Is(err, unix.ELOOP) {
			t.Errorf("root's write to %s: %v, want ELOOP", p, err)
		}
	}
	if _, err := os.Stat(victim); err == nil {
		t.Fatalf("root wrote through the task's link: %s exists", victim)
	}
	// The host's own files there are written as ever.
	if err := os.WriteFile(filepath.Join(td.LocalDir, "plain"), []byte("ok"), 0o644); err != nil {
		t.Errorf("a plain write into local/: %v", err)
	}

	if err := d.DestroyTask(task.ID, true); err != nil {
		t.Fatal(err)
	}
	// Between a task's exit and its restart the client rewrites its files:
	// the guard stays through DestroyTask.
	if err := os.WriteFile(filepath.Join(td.LocalDir, "token"), []byte("x"), 0o644); !errors.Is(err, unix.ELOOP) {
		t.Errorf("after DestroyTask, root's write through the link: %v, want ELOOP", err)
	}
	// The client's GC of the allocation: its UnmountAll (secrets/ and
	// private/ unmounted, then the tree removed. The guards make that fail
	// until the plugin reaps them.
	for _, dir := range []string{td.SecretsDir, filepath.Join(td.Dir, "private")} {
		for unix.Unmount(dir, unix.MNT_DETACH) == nil {
		}
	}
	if err := os.RemoveAll(task.AllocDir); err == nil {
		t.Fatal("the alloc dir went with the guards on: they guard nothing")
	}
	d.reapGuards()
	if err := os.RemoveAll(task.AllocDir); err != nil {
		t.Fatalf("after the reap the alloc dir cannot be removed: %v", err)
	}
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(info), task.AllocDir) {
		t.Errorf("mounts are left below %s", task.AllocDir)
	}
	if _, err := os.Stat(victim); err == nil {
		t.Fatalf("root wrote through the task's link: %s exists", victim)
	}
}
