package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// volumeUID is the task UID the volume jobs run as (user = "nomad-89990"),
// so that their volumes can be made its own.
const volumeUID = 89990

// TestVolumes runs jobs with volumes and task config mounts through a real
// agent: static host volumes read-write (the file is on the host, and a new
// allocation reads it; a mount at /alloc/data/persist reaches the volume) and
// read-only (a write fails), a dynamic host volume made by `nomad volume
// create` with the mkdir plugin, a task config mount under mount_roots, and
// refusals of what cannot be made, each naming the mount.
func TestVolumes(t *testing.T) {
	setup(t)
	base := t.TempDir()
	dir := func(name string, uid int) string {
		p := filepath.Join(base, name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rw := dir("rw", volumeUID)
	ro := dir("ro", volumeUID)
	if err := os.WriteFile(filepath.Join(ro, "ref.txt"), []byte("reference-data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(rw, link); err != nil {
		t.Fatal(err)
	}
	hostVolumesDir := dir("host_volumes", 0)
	roots := dir("srv-data", 0)
	dir("srv-data/ref", 0)
	if err := os.WriteFile(filepath.Join(roots, "ref", "table.csv"), []byte("a,b\n1,2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	outside := dir("outside", 0)
	if err := os.Symlink(outside, filepath.Join(roots, "escape")); err != nil {
		t.Fatal(err)
	}

	a := newAgentOpts(t, agentOpts{
		plugin: fmt.Sprintf("    mount_roots = [%q]\n", roots),
		client: fmt.Sprintf(`  host_volumes_dir = %q
  host_volume "e2e-rw" {
    path      = %q
    read_only = false
  }
  host_volume "e2e-ro" {
    path      = %q
    read_only = true
  }
  host_volume "e2e-link" {
    path = %q
  }
`, hostVolumesDir, rw, ro, link),
	})

	t.Run("host-read-write", func(t *testing.T) {
		const job = "vol-rw"
		script := `if [ -f /data/out ]; then echo "FOUND $(cat /data/out)"; fi; echo "$NOMAD_ALLOC_ID" > /data/out && echo persisted > /alloc/data/persist/p`
		jobFile := func(run string) string {
			return writeJob(t, job+run, volumeJob(job, run, `    volume "data" {
      type   = "host"
      source = "e2e-rw"
    }
`, `      volume_mount {
        volume      = "data"
        destination = "/data"
      }
      volume_mount {
        volume      = "data"
        destination = "/alloc/data/persist"
      }
`, script))
		}
		a.runJob(t, jobFile("1"), job)
		first := a.waitAlloc(t, job, time.Minute, "complete", terminal)
		if first.ClientStatus != "complete" {
			t.Fatalf("the first allocation did not complete:\n%s", first)
		}
		if b, err := os.ReadFile(filepath.Join(rw, "out")); err != nil || strings.TrimSpace(string(b)) != first.ID {
			t.Fatalf("the host volume holds %q (%v), want the first allocation's ID %s", b, err, first.ID)
		}
		if b, err := os.ReadFile(filepath.Join(rw, "p")); err != nil || string(b) != "persisted\n" {
			t.Fatalf("what the task wrote to /alloc/data/persist is not on the host volume: %q, %v", b, err)
		}

		// A new version of the job: a new allocation, which reads what the
		// first left on the volume.
		a.mustNomad(t, "job", "run", "-detach", jobFile("2"))
		second := a.waitOtherAlloc(t, job, first.ID, time.Minute)
		if second.ClientStatus != "complete" {
			t.Fatalf("the second allocation did not complete:\n%s", second)
		}
		out := a.mustNomad(t, "alloc", "logs", second.ID, "t")
		if !strings.Contains(out, "FOUND "+first.ID) {
			t.Fatalf("the new allocation did not read the first one's file: %q", out)
		}
	})

	t.Run("host-read-only", func(t *testing.T) {
		const job = "vol-ro"
		script := `cat /ro-volume/ref.txt
if echo x > /ro-volume/w; then echo WROTE-RO-VOLUME; fi
if echo x > /ro-mount/w; then echo WROTE-RO-MOUNT; fi
exit 0`
		a.runJob(t, writeJob(t, job, volumeJob(job, "1", `    volume "ro" {
      type      = "host"
      source    = "e2e-ro"
      read_only = true
    }
    volume "rw" {
      type   = "host"
      source = "e2e-rw"
    }
`, `      volume_mount {
        volume      = "ro"
        destination = "/ro-volume"
      }
      volume_mount {
        volume      = "rw"
        destination = "/ro-mount"
        read_only   = true
      }
`, script)), job)
		al := a.waitAlloc(t, job, time.Minute, "complete", terminal)
		out := a.mustNomad(t, "alloc", "logs", al.ID, "t")
		errs := a.mustNomad(t, "alloc", "logs", "-stderr", al.ID, "t")
		if al.ClientStatus != "complete" || !strings.Contains(out, "reference-data") {
			t.Fatalf("the read-only volume was not readable: %q %q\n%s", out, errs, al)
		}
		if strings.Contains(out, "WROTE") || strings.Count(errs, "Read-only file system") != 2 {
			t.Fatalf("writes to read-only mounts did not fail as read-only: stdout %q stderr %q", out, errs)
		}
		for _, p := range []string{filepath.Join(ro, "w"), filepath.Join(rw, "w")} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("a write reached the host: %s", p)
			}
		}
	})

	t.Run("dynamic-host-volume", func(t *testing.T) {
		spec := writeJob(t, "dyn-volume", fmt.Sprintf(`name      = "e2e-dyn"
type      = "host"
plugin_id = "mkdir"
node_id   = %q

capability {
  access_mode     = "single-node-single-writer"
  attachment_mode = "file-system"
}

parameters {
  mode = "0700"
  uid  = "%d"
  gid  = "%d"
}
`, a.nodeID, volumeUID, volumeUID))
		out := a.mustNomad(t, "volume", "create", spec)
		t.Log(out)
		var vols []struct{ ID, Name string }
		if err := a.get("/v1/volumes?type=host", &vols); err != nil || len(vols) != 1 {
			t.Fatalf("host volumes: %+v, %v", vols, err)
		}
		var vol struct{ HostPath, State string }
		if err := a.get("/v1/volume/host/"+vols[0].ID, &vol); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			a.nomad("job", "stop", "-purge", "vol-dyn")
			a.nomad("volume", "delete", "-type", "host", vols[0].ID)
		})
		if !strings.HasPrefix(vol.HostPath, hostVolumesDir) {
			t.Fatalf("the dynamic volume lies at %q, not in the client's host_volumes_dir %s", vol.HostPath, hostVolumesDir)
		}
		const job = "vol-dyn"
		a.runJob(t, writeJob(t, job, volumeJob(job, "1", `    volume "dyn" {
      type            = "host"
      source          = "e2e-dyn"
      access_mode     = "single-node-single-writer"
      attachment_mode = "file-system"
    }
`, `      volume_mount {
        volume      = "dyn"
        destination = "/results"
      }
`, `echo "$NOMAD_ALLOC_ID" > /results/run`)), job)
		al := a.waitAlloc(t, job, time.Minute, "complete", terminal)
		if al.ClientStatus != "complete" {
			t.Fatalf("the job did not complete:\n%s", al)
		}
		if b, err := os.ReadFile(filepath.Join(vol.HostPath, "run")); err != nil || strings.TrimSpace(string(b)) != al.ID {
			t.Fatalf("the dynamic volume holds %q (%v), want the allocation's ID", b, err)
		}
	})

	t.Run("config-mount", func(t *testing.T) {
		const job = "cfg-mount"
		a.runJob(t, writeJob(t, job, configMountJob(job, filepath.Join(roots, "ref"),
			`cat /ref/table.csv; if echo x > /ref/w; then echo WROTE; fi; exit 0`)), job)
		al := a.waitAlloc(t, job, time.Minute, "complete", terminal)
		out := a.mustNomad(t, "alloc", "logs", al.ID, "t")
		errs := a.mustNomad(t, "alloc", "logs", "-stderr", al.ID, "t")
		if al.ClientStatus != "complete" || !strings.Contains(out, "1,2") {
			t.Fatalf("the mount is not readable: %q %q\n%s", out, errs, al)
		}
		if strings.Contains(out, "WROTE") || !strings.Contains(errs, "Read-only file system") {
			t.Fatalf("a config mount is writable by default: %q %q", out, errs)
		}
	})

	// Each of these must fail the task at start, with an event naming the
	// mount; the task never runs.
	for _, c := range []struct {
		name, job, want string
	}{
		{"config-mount-outside-roots", configMountJob("cfg-outside", outside, "echo RAN"),
			"config mounts /ref"},
		{"config-mount-link-out-of-root", configMountJob("cfg-escape", filepath.Join(roots, "escape"), "echo RAN"),
			"outside the plugin's mount_roots"},
		{"host-volume-link", volumeJob("vol-link", "1", `    volume "data" {
      type   = "host"
      source = "e2e-link"
    }
`, `      volume_mount {
        volume      = "data"
        destination = "/data"
      }
`, "echo RAN"), "refusing to follow"},
		{"host-to-task-propagation", volumeJob("vol-prop", "1", `    volume "data" {
      type   = "host"
      source = "e2e-rw"
    }
`, `      volume_mount {
        volume           = "data"
        destination      = "/data"
        propagation_mode = "host-to-task"
      }
`, "echo RAN"), `propagation_mode "host-to-task"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			job := strings.SplitN(strings.TrimPrefix(c.job, `job "`), `"`, 2)[0]
			a.runJob(t, writeJob(t, job, c.job), job)
			al := a.waitAlloc(t, job, time.Minute, "terminal", terminal)
			if al.ClientStatus != "failed" || len(al.events("t", "Started")) != 0 {
				t.Fatalf("want the allocation failed before the task started:\n%s", al)
			}
			var msgs []string
			for _, e := range al.events("t", "Driver Failure") {
				msgs = append(msgs, e.DisplayMessage)
			}
			t.Logf("Nomad says: %q", msgs)
			if !strings.Contains(strings.Join(msgs, "\n"), c.want) {
				t.Fatalf("no Driver Failure event says %q:\n%s", c.want, al)
			}
		})
	}
}

// volumeJob is a batch job of one bwrap-r task "t" running script as
// volumeUID, with the group's volumes and the task's volume_mounts; run
// goes into its meta, so a new value makes a new version.
func volumeJob(name, run, volumes, mounts, script string) string {
	return fmt.Sprintf(`job %q {
  type = "batch"
  meta {
    run = %q
  }
  group "g" {
%s%s    task "t" {
      driver = "bwrap-r"
      user   = "nomad-%d"
%s      config {
        command = "/bin/sh"
        args    = ["-c", %q]
      }
      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
`, name, run, runOnce, volumes, volumeUID, mounts, script)
}

// configMountJob is a batch job whose task config mounts source at /ref
// (read-only: the default) and runs script.
func configMountJob(name, source, script string) string {
	return fmt.Sprintf(`job %q {
  type = "batch"
  group "g" {
%s    task "t" {
      driver = "bwrap-r"
      config {
        command = "/bin/sh"
        args    = ["-c", %q]
        mounts {
          source      = %q
          destination = "/ref"
        }
      }
      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
`, name, runOnce, script, source)
}

// waitOtherAlloc waits until the job has an allocation other than not that
// has ended, and returns it.
func (a *agent) waitOtherAlloc(t *testing.T, jobID, not string, timeout time.Duration) *allocation {
	t.Helper()
	var al *allocation
	var last string
	ok := eventually(timeout, 250*time.Millisecond, func() bool {
		var stubs []struct{ ID string }
		if err := a.get("/v1/job/"+jobID+"/allocations", &stubs); err != nil {
			last = err.Error()
			return false
		}
		for _, s := range stubs {
			if s.ID == not {
				continue
			}
			var cur allocation
			if err := a.get("/v1/allocation/"+s.ID, &cur); err != nil {
				last = err.Error()
				return false
			}
			al, last = &cur, cur.String()
			return terminal(al)
		}
		last = "no new allocation yet"
		return false
	})
	if !ok {
		t.Fatalf("job %s: no new allocation ended after %v; last seen:\n%s", jobID, timeout, last)
	}
	return al
}
