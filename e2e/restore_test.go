package e2e

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// makeRepo builds a CRAN-like repository of one package (e2e/testdata/mypkg,
// built with R CMD build and indexed with tools::write_PACKAGES) at
// <root>/repo, in a root that task UIDs can traverse, removed when the test
// ends. It returns the root.
func makeRepo(t *testing.T) string {
	t.Helper()
	root, err := os.MkdirTemp("/tmp", "e2e-rlib-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	contrib := filepath.Join(root, "repo", "src", "contrib")
	if err := os.MkdirAll(contrib, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(dir string, name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	run(contrib, "R", "CMD", "build", "--no-manual", "--no-build-vignettes", filepath.Join(repoRoot, "e2e", "testdata", "mypkg"))
	if _, err := os.Stat(filepath.Join(contrib, "mypkg_0.1.0.tar.gz")); err != nil {
		t.Fatalf("R CMD build made no mypkg_0.1.0.tar.gz: %v", err)
	}
	run(contrib, "Rscript", "-e", fmt.Sprintf("tools::write_PACKAGES(%q, type = \"source\")", contrib))
	// MkdirTemp makes the root 0700; task UIDs need 0755 all the way.
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		}
		return os.Chmod(p, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestRestorePackages runs example/restore/restore.nomad.hcl against a
// repository the test builds (file://, no network): the prestart task
// installs mypkg into /alloc/lib, the main task loads it and says hello.
// Then r_libs outside the plugin's r_library_roots, with "..", or through a
// link out of a root fail the task at start, with a clear message.
func TestRestorePackages(t *testing.T) {
	setup(t)
	start := time.Now()
	root := makeRepo(t)
	repo := filepath.Join(root, "repo")
	t.Logf("repository %s built in %v", repo, time.Since(start).Round(time.Millisecond))
	// A one-node cluster rather than a dev agent: a dev agent publishes
	// allocation metrics, and with them bwrap-r's CPU stats can crash it
	// (see escAgentCrashProbe in escape_test.go).
	cacheRoot, err := os.MkdirTemp("/tmp", "e2e-rcache-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(cacheRoot) })
	// Task UIDs (bwrap binds as them) must traverse the path.
	if err := os.Chmod(cacheRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	cacheDir := filepath.Join(cacheRoot, "cache")
	// A client as Nomad makes one, started with umask 077 (TestStandardClient).
	a := newAgentOpts(t, agentOpts{server: true, umask: "077", plugin: fmt.Sprintf("    r_library_roots = [%q]\n    r_cache_dir = %q", root, cacheDir)})
	if err := a.waitDriver(true, time.Minute); err != nil {
		t.Fatal(err)
	}

	t.Run("restore", func(t *testing.T) {
		const job = "restore"
		t0 := time.Now()
		a.mustNomad(t, "job", "run", "-detach",
			"-var", "repo=file://"+repo,
			"-var", fmt.Sprintf("repo_mounts=[%q]", repo),
			filepath.Join(repoRoot, "example", "restore", "restore.nomad.hcl"))
		t.Cleanup(func() { a.stopJob(job) })
		al := a.waitAlloc(t, job, 4*time.Minute, "terminal", terminal)
		t.Logf("restore: %s after %v", al.ClientStatus, time.Since(t0).Round(time.Millisecond))
		restoreLog, _ := a.nomad("alloc", "logs", al.ID, "restore")
		restoreErr, _ := a.nomad("alloc", "logs", "-stderr", al.ID, "restore")
		if al.ClientStatus != "complete" {
			t.Fatalf("want the allocation complete, got:\n%s\nrestore's stdout:\n%s\nrestore's stderr:\n%s", al, restoreLog, restoreErr)
		}
		for _, task := range []string{"restore", "main"} {
			term := al.events(task, "Terminated")
			if len(term) != 1 || term[0].ExitCode != 0 {
				t.Errorf("task %s: want one Terminated event with exit code 0, got %+v", task, term)
			}
		}
		if !strings.Contains(restoreLog, "restored mypkg into /alloc/lib") {
			t.Errorf("the restore task's log:\n%s\n%s", restoreLog, restoreErr)
		}
		// The plugin's event says which libraries the restore task got.
		var libs string
		for _, e := range al.TaskStates["restore"].Events {
			if strings.Contains(e.DisplayMessage, "R libraries") {
				libs = e.DisplayMessage
			}
		}
		t.Logf("restore task: %s", libs)
		if !strings.Contains(libs, "/alloc/lib (writable)") || !strings.Contains(libs, repo) {
			t.Errorf("no task event naming /alloc/lib (writable) and %s: %q", repo, libs)
		}

		out := a.mustNomad(t, "alloc", "logs", al.ID, "main")
		t.Logf("nomad alloc logs %s main: %q", al.ID, out)
		if strings.TrimSpace(out) != "hello from mypkg" {
			t.Errorf("nomad alloc logs main: got %q, want \"hello from mypkg\"", out)
		}

		// On the host: the library belongs to the restore task's UID, and
		// the main task ran as another one.
		allocDir := escFind(filepath.Join(a.dir, "data"), al.ID, true, 3)
		if allocDir == "" {
			t.Fatalf("no alloc dir %s below %s", al.ID, a.dir)
		}
		pkg := filepath.Join(allocDir, "alloc", "lib", "mypkg")
		fi, err := os.Stat(filepath.Join(pkg, "DESCRIPTION"))
		if err != nil {
			t.Fatalf("the installed package on the host: %v", err)
		}
		owner := fi.Sys().(*syscall.Stat_t).Uid
		var mainUID uint32
		if li, err := os.Stat(filepath.Join(allocDir, "main", "local")); err == nil {
			mainUID = li.Sys().(*syscall.Stat_t).Uid
		}
		t.Logf("%s is owned by uid %d; the main task ran as uid %d", pkg, owner, mainUID)
		if owner < 1000 || owner == mainUID {
			t.Errorf("the library is owned by uid %d, want the restore task's own UID (the main task is %d)", owner, mainUID)
		}
	})

	// The package cache: two restores at once both fill it (neither breaks
	// the other), and a third, with the repository emptied, installs from it.
	t.Run("cache", func(t *testing.T) {
		example, err := os.ReadFile(filepath.Join(repoRoot, "example", "restore", "restore.nomad.hcl"))
		if err != nil {
			t.Fatal(err)
		}
		restore := func(job string) string {
			return writeJob(t, job, strings.Replace(string(example), `job "restore" {`, fmt.Sprintf("job %q {", job), 1))
		}
		vars := []string{"-var", "repo=file://" + repo, "-var", fmt.Sprintf("repo_mounts=[%q]", repo), "-var", "use_cache=true"}
		runRestore := func(job string) {
			a.mustNomad(t, append(append([]string{"job", "run", "-detach"}, vars...), restore(job))...)
			t.Cleanup(func() { a.stopJob(job) })
		}
		check := func(job string) (restoreLog string) {
			al := a.waitAlloc(t, job, 4*time.Minute, "terminal", terminal)
			restoreLog, _ = a.nomad("alloc", "logs", al.ID, "restore")
			restoreErr, _ := a.nomad("alloc", "logs", "-stderr", al.ID, "restore")
			if al.ClientStatus != "complete" {
				t.Fatalf("%s: want complete, got:\n%s\nrestore's stdout:\n%s\nrestore's stderr:\n%s", job, al, restoreLog, restoreErr)
			}
			if out, _ := a.nomad("alloc", "logs", al.ID, "main"); strings.TrimSpace(out) != "hello from mypkg" {
				t.Errorf("%s: main said %q", job, out)
			}
			var event string
			for _, e := range al.TaskStates["restore"].Events {
				if strings.Contains(e.DisplayMessage, "R package cache") {
					event = e.DisplayMessage
				}
			}
			if !strings.Contains(event, "R package cache: /r-cache (writable)") {
				t.Errorf("%s: no task event naming the writable cache: %q", job, event)
			}
			t.Logf("%s restore: %s", job, strings.TrimSpace(restoreLog))
			return restoreLog
		}
		runRestore("restore-c1")
		runRestore("restore-c2")
		first := check("restore-c1") + check("restore-c2")
		if !strings.Contains(first, "downloaded mypkg into the cache") {
			t.Errorf("neither concurrent restore filled the cache: %q", first)
		}
		key := filepath.Join(cacheDir, "R-4.2", "x86_64-pc-linux-gnu")
		entries, _ := os.ReadDir(key)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if len(names) != 1 || names[0] != "mypkg_0.1.0.tar.gz" {
			t.Fatalf("the cache %s holds %q, want only mypkg_0.1.0.tar.gz", key, names)
		}

		// The repository loses its packages: only the cache can serve them.
		contrib := filepath.Join(repo, "src", "contrib")
		files, _ := os.ReadDir(contrib)
		for _, f := range files {
			os.Remove(filepath.Join(contrib, f.Name()))
		}
		runRestore("restore-c3")
		if third := check("restore-c3"); !strings.Contains(third, "all of mypkg found in the cache") {
			t.Errorf("the third restore did not use the cache: %q", third)
		}
	})

	t.Run("r_libs-refused", func(t *testing.T) {
		outside, err := os.MkdirTemp("/tmp", "e2e-rlib-outside-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(outside) })
		if err := os.Chmod(outside, 0o755); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(root, "link-out")
		if err := os.Symlink(outside, link); err != nil {
			t.Fatal(err)
		}
		cases := []struct{ name, lib, want string }{
			{"outside", outside, fmt.Sprintf("r_libs %s: %s lies outside the plugin's r_library_roots (%s)", outside, outside, root)},
			{"dotdot", repo + "/../../etc", fmt.Sprintf(`r_libs %s: must be an absolute path without ".."`, repo+"/../../etc")},
			{"symlink", link, fmt.Sprintf("r_libs %s: %s lies outside the plugin's r_library_roots (%s)", link, outside, root)},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				job := "rlibs-" + c.name
				file := writeJob(t, job, fmt.Sprintf(`job %q {
  type = "batch"
  group "g" {
`+runOnce+`    task "t" {
      driver = "bwrap-r"
      config {
        command = "Rscript"
        args    = ["-e", "cat('ran\\n')"]
        r_libs  = [%q]
      }
      resources {
        cpu    = 100
        memory = 128
      }
    }
  }
}
`, job, c.lib))
				a.runJob(t, file, job)
				al := a.waitAlloc(t, job, time.Minute, "terminal", terminal)
				if al.ClientStatus != "failed" {
					t.Fatalf("want failed, got:\n%s", al)
				}
				if len(al.events("t", "Started")) != 0 {
					t.Errorf("the task started:\n%s", al)
				}
				var failure string
				for _, e := range al.events("t", "Driver Failure") {
					failure = e.DisplayMessage
				}
				t.Logf("%s: %s", c.lib, failure)
				if !strings.Contains(failure, c.want) {
					t.Errorf("Driver Failure event %q, want it to say %q", failure, c.want)
				}
				status := a.mustNomad(t, "alloc", "status", al.ID)
				if !strings.Contains(status, c.want) {
					t.Errorf("nomad alloc status does not show %q:\n%s", c.want, status)
				}
				if logs, _ := a.nomad("alloc", "logs", al.ID, "t"); strings.Contains(logs, "ran") {
					t.Errorf("the task ran: %q", logs)
				}
			})
		}
	})
	t.Logf("TestRestorePackages took %v", time.Since(start).Round(time.Second))
}
