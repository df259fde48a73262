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
// while inside the sandbox links work as ever; destroying the task leaves no
// guard behind, so the client can remove the dirs.
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
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{td.LocalDir, td.SharedAllocDir} {
		if strings.Contains(string(info), " "+dir+" ") {
			t.Errorf("a mount is left on %s after DestroyTask", dir)
		}
	}
	// The client's GC removes them (a mount point would fail with EBUSY).
	for _, dir := range []string{td.LocalDir, td.SharedAllocDir} {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
	}
}
