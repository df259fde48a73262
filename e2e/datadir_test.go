package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bwrap-r/bwrap-r/internal/testmounts"
)

// TestDataDirOwnMount runs a standard client (umask 077, data_dir 0700 as
// Nomad makes it) whose data_dir is a mount of its own, as operators put
// /var/lib/nomad on a disk of its own: a tmpfs, a bind of another directory,
// or whose alloc_dir is a loop-mounted ext4 (0700, hardened by hand). A
// batch task reads the file the client rendered into its local/, writes
// local/ and alloc/, its logs arrive, and once the client collects the
// allocation nothing of it is left mounted and its dir is gone.
func TestDataDirOwnMount(t *testing.T) {
	setup(t)
	for _, c := range []struct{ name, kind, what string }{
		{"data_dir-tmpfs", "tmpfs", "data_dir"},
		{"data_dir-bind", "bind", "data_dir"},
		{"alloc_dir-ext4", "ext4", "alloc_dir"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Short: a task's secrets/api.sock lies below, at most 107 bytes.
			disk := testmounts.HostDisk(t, "/tmp", "e2edd", "4g")
			mount := filepath.Join(disk, "nomad")
			// Large enough for the client to place an allocation: Nomad
			// fingerprints the free space of the alloc dir's file system.
			other := testmounts.OwnMount(t, disk, mount, c.kind, "1g", 0o700)
			opts := agentOpts{server: true, umask: "077"}
			allocRoot := filepath.Join(mount, "alloc")
			if c.what == "data_dir" {
				opts.dataDir = mount
			} else {
				opts.client = fmt.Sprintf("  alloc_dir = %q\n", mount)
				allocRoot = mount
			}
			a := newAgentOpts(t, opts)
			if err := a.waitDriver(true, time.Minute); err != nil {
				t.Fatal(err)
			}
			roots := []string{allocRoot}
			if other != "" {
				roots = append(roots, filepath.Join(other, "alloc"))
			}
			dataDirMounts(t, a, roots)
		})
	}
}

// dataDirMounts runs the batch task on a and checks what it wrote, its logs
// and, after the client's GC, that nothing of it is left in the client's
// alloc dir: allocRoots[0], and any other path to the same files (a bind's
// source).
func dataDirMounts(t *testing.T, a *agent, allocRoots []string) {
	t.Helper()
	const job = "own-mount"
	file := writeJob(t, job, fmt.Sprintf(`job %q {
  type = "batch"
  group "g" {
%s    task "t" {
      driver = "bwrap-r"
      config {
        command = "/bin/sh"
        args    = ["-c", "cat /local/in.txt; echo from-local > /local/out.txt; cat /local/out.txt; mkdir -p /alloc/data && echo from-alloc > /alloc/data/out.txt && cat /alloc/data/out.txt; echo to-stderr >&2"]
      }
      template {
        data        = "from-client\n"
        destination = "local/in.txt"
      }
      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
`, job, runOnce))
	a.runJob(t, file, job)
	al := a.waitAlloc(t, job, 2*time.Minute, "terminal", terminal)
	if al.ClientStatus != "complete" {
		t.Fatalf("want complete, got:\n%s", al)
	}
	var out, errs string
	eventually(10*time.Second, 250*time.Millisecond, func() bool {
		out, _ = a.nomad("alloc", "logs", al.ID, "t")
		errs, _ = a.nomad("alloc", "logs", "-stderr", al.ID, "t")
		return out == "from-client\nfrom-local\nfrom-alloc\n" && errs == "to-stderr\n"
	})
	if out != "from-client\nfrom-local\nfrom-alloc\n" || errs != "to-stderr\n" {
		t.Fatalf("nomad alloc logs: stdout %q, stderr %q", out, errs)
	}
	allocDir := filepath.Join(allocRoots[0], al.ID)
	for f, want := range map[string]string{
		filepath.Join(allocDir, "t", "local", "out.txt"):    "from-local\n",
		filepath.Join(allocDir, "alloc", "data", "out.txt"): "from-alloc\n",
	} {
		if b, err := os.ReadFile(f); err != nil || string(b) != want {
			t.Errorf("%s on the host: %q %v, want %q", f, b, err, want)
		}
	}

	// The client collects the allocation; the plugin takes its link
	// guards off at its next fingerprint (every 30 s) and finishes the
	// removal.
	c := http.Client{Timeout: 30 * time.Second}
	req, err := http.NewRequest(http.MethodPut, a.addr+"/v1/client/allocation/"+al.ID+"/gc", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("client GC of %s: %s", al.ID, resp.Status)
	}
	left := func() []string {
		var m []string
		for _, root := range allocRoots {
			dir := filepath.Join(root, al.ID)
			m = append(m, mountsBelow(dir)...)
			if _, err := os.Lstat(dir); err == nil {
				m = append(m, dir+" (still there)")
			}
		}
		return m
	}
	if !eventually(75*time.Second, time.Second, func() bool { return len(left()) == 0 }) {
		t.Fatalf("after the client's GC of the allocation: %s", strings.Join(left(), " "))
	}
}
