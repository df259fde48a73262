package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// e2eHostDisk is a tmpfs in /tmp standing for the host's root file system,
// shared as systemd makes / (mounts below it propagate as on such a host).
// Everything mounted below it goes with it when the test ends, however the
// test ends short of the test binary's death.
func e2eHostDisk(t *testing.T) string {
	t.Helper()
	// Short: a task's secrets/api.sock lies below, at most 107 bytes.
	dir, err := os.MkdirTemp("/tmp", "e2edd")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("e2e-host-disk", dir, "tmpfs", 0, "mode=0755,size=4g"); err != nil {
		os.Remove(dir)
		t.Fatalf("tmpfs at %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
		os.Remove(dir)
	})
	if err := syscall.Mount("", dir, "", syscall.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	return dir
}

// e2eOwnMount makes dir (below disk) a mount of the given kind: a tmpfs, a
// loop-mounted ext4, or a bind of disk/srv/<name>, which it returns as the
// other path to the same files ("" for the others). dir's root is then mode
// and root's.
func e2eOwnMount(t *testing.T, disk, dir, kind string, mode os.FileMode) (other string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	switch kind {
	// Large enough for the client to place an allocation: Nomad fingerprints
	// the free space of the alloc dir's file system.
	case "tmpfs":
		if err := syscall.Mount("e2e-own-mount", dir, "tmpfs", 0, "size=1g"); err != nil {
			t.Fatal(err)
		}
	case "ext4":
		img := filepath.Join(disk, filepath.Base(dir)+".img")
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", img, "1G").CombinedOutput(); err != nil {
			t.Skipf("mkfs.ext4: %v %s", err, out)
		}
		// A loop device with autoclear: it goes with the file system.
		if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
			t.Skipf("no loop mount here: %v %s", err, out)
		}
	case "bind":
		other = filepath.Join(disk, "srv", filepath.Base(dir))
		if err := os.MkdirAll(other, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mount(other, dir, "", syscall.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown mount kind %q", kind)
	}
	// Before the host disk's cleanup (last in, first out): a loop device
	// goes as soon as its file system is unmounted.
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return other
}

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
			disk := e2eHostDisk(t)
			mount := filepath.Join(disk, "nomad")
			other := e2eOwnMount(t, disk, mount, c.kind, 0o700)
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
