package driver

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bwrap-r/bwrap-r/internal/testmounts"
)

// TestHarnessDataDirOwnMount: on a client whose data_dir is a mount of its
// own (a tmpfs, a loop-mounted ext4, a bind of another directory), 0700 and
// root's, with an agent started with umask 077, a task starts, reads what
// the client put in its local/, writes its local/ and alloc/ (the host sees
// what it wrote, readable by the allocation's other tasks), and its logs
// arrive.
func TestHarnessDataDirOwnMount(t *testing.T) {
	needRoot(t)
	for _, kind := range []string{"tmpfs", "ext4", "bind"} {
		t.Run(kind, func(t *testing.T) {
			old := syscall.Umask(0o077)
			t.Cleanup(func() { syscall.Umask(old) })
			// The plugin's state dir is elsewhere, as /run/bwrap-r is.
			conf := Config{StateDir: stateDir(t)}
			disk := testmounts.HostDisk(t, "", "host-disk-", "256m")
			dataDir := filepath.Join(disk, "var-lib-nomad")
			testmounts.OwnMount(t, disk, dataDir, kind, "128m", 0o700)
			// The harness makes the client's alloc dir in TMPDIR.
			t.Setenv("TMPDIR", dataDir)

			h, d := newHarness(t, conf)
			task := newTask(t, h, "own-mount", sh(`cat /local/in.txt; echo from-local > /local/out.txt; cat /local/out.txt; `+
				`mkdir -p /alloc/data && echo from-alloc > /alloc/data/out.txt && cat /alloc/data/out.txt; echo to-stderr >&2`))
			// As the client renders a template: root's file, 0644.
			if err := os.WriteFile(filepath.Join(task.TaskDir().LocalDir, "in.txt"), []byte("from-client\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(filepath.Join(task.TaskDir().LocalDir, "in.txt"), 0o644); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(task.AllocDir, dataDir+"/") {
				t.Fatalf("the alloc dir %s is not in the data dir %s", task.AllocDir, dataDir)
			}
			start(t, h, task)
			res := waitExit(t, h, task.ID, 20*time.Second)
			out, errs := logs(t, task, "stdout"), logs(t, task, "stderr")
			if res.ExitCode != 0 {
				t.Fatalf("exit %+v: %q %q", res, out, errs)
			}
			if out != "from-client\nfrom-local\nfrom-alloc\n" || errs != "to-stderr\n" {
				t.Fatalf("stdout %q, stderr %q", out, errs)
			}
			for file, want := range map[string]string{
				filepath.Join(task.TaskDir().LocalDir, "out.txt"):            "from-local\n",
				filepath.Join(task.TaskDir().SharedAllocDir, "data/out.txt"): "from-alloc\n",
			} {
				b, err := os.ReadFile(file)
				if err != nil || string(b) != want {
					t.Errorf("%s on the host: %q %v, want %q", file, b, err, want)
				}
			}
			// The sandbox's umask, not the agent's 077: the allocation's
			// other tasks read what this one leaves in /alloc.
			fi, err := os.Stat(filepath.Join(task.TaskDir().SharedAllocDir, "data/out.txt"))
			if err != nil || fi.Mode().Perm() != 0o644 {
				t.Errorf("/alloc/data/out.txt: %v %v, want 0644", fi.Mode(), err)
			}
			// The link guards hold on the data dir's own mount.
			for _, dir := range []string{task.TaskDir().LocalDir, task.TaskDir().SharedAllocDir} {
				var sfs unix.Statfs_t
				if err := unix.Statfs(dir, &sfs); err != nil || sfs.Flags&stNoSymfollow == 0 {
					t.Errorf("%s: no link guard (statfs flags %#x, %v)", dir, sfs.Flags, err)
				}
			}
			// The preflight, now run in the client's alloc dir, starts its
			// sandbox there too.
			fp := d.buildFingerprint()
			if a, _ := fp.Attributes["driver.bwrap-r.preflight.task_start"].GetString(); !strings.HasPrefix(a, "ok: ") || !strings.Contains(a, filepath.Dir(task.AllocDir)) {
				t.Errorf("preflight.task_start = %q, want ok in %s", a, filepath.Dir(task.AllocDir))
			}
		})
	}
}
