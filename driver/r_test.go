package driver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/nomad/plugins/drivers"
)

// rigRoot builds a rig-shaped tree of fake R installs whose R and Rscript
// print their version, R_HOME and PATH. Task UIDs must be able to traverse it.
func rigRoot(t *testing.T, versions ...string) string {
	t.Helper()
	root, err := os.MkdirTemp("", "rig-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, v := range versions {
		bin := filepath.Join(root, v, "bin")
		if err := os.MkdirAll(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"R", "Rscript"} {
			script := "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'R version " + v + " (fake)'; exit 0; }\n" +
				"[ \"$1\" = RHOME ] && { echo " + filepath.Join(root, v, "lib", "R") + "; exit 0; }\n" +
				"echo \"" + name + " " + v + " R_HOME=$R_HOME PATH=$PATH R_LIBS=$R_LIBS\"; for d in $(echo $R_LIBS | tr : ' '); do ls $d; done\n"
			if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

func TestHarnessRVersionMinorMatch(t *testing.T) {
	root := rigRoot(t, "4.3.3", "4.4.1", "4.4.2")
	h, _ := newHarness(t, Config{RRoot: root, DefaultR: filepath.Join(root, "4.3.3", "bin", "R")})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := h.TaskEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	task := newTask(t, h, "rtask", TaskConfig{Command: "Rscript", Args: []string{"-e", "x"}, RVersion: "4.4"})
	start(t, h, task)
	res := waitExit(t, h, task.ID, 20*time.Second)
	if res.ExitCode != 0 {
		t.Fatalf("exit %+v: %s", res, logs(t, task, "stderr"))
	}
	out := logs(t, task, "stdout")
	want := "Rscript 4.4.2 R_HOME=" + filepath.Join(root, "4.4.2", "lib", "R") + " PATH=" + filepath.Join(root, "4.4.2", "bin") + ":"
	if !strings.HasPrefix(out, want) {
		t.Fatalf("the task ran %q, want %q...", out, want)
	}
	wantEvent := "R 4.4 requested: " + filepath.Join(root, "4.4.2") + " (minor match)"
	select {
	case ev := <-events:
		if ev.Message != wantEvent || ev.TaskID != task.ID {
			t.Fatalf("event %q for %s, want %q", ev.Message, ev.TaskID, wantEvent)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no task event about the chosen R")
	}
}

func TestHarnessRDefaultAndAbsent(t *testing.T) {
	root := rigRoot(t, "4.3.3", "4.4.1", "4.4.2")
	h, _ := newHarness(t, Config{RRoot: root, DefaultR: filepath.Join(root, "4.3.3", "bin", "R")})

	// No version: the configured default.
	task := newTask(t, h, "rdefault", TaskConfig{Command: "R"})
	start(t, h, task)
	waitExit(t, h, task.ID, 20*time.Second)
	if out := logs(t, task, "stdout"); !strings.HasPrefix(out, "R 4.3.3 ") {
		t.Fatalf("default R: %q", out)
	}

	// Absent: refused with the installed list.
	for _, tc := range []TaskConfig{
		{Command: "Rscript", RVersion: "4.5"},
		{Command: "Rscript", RVersion: "4.4.9", RVersionMatch: "exact"},
	} {
		task := newTask(t, h, "rabsent", tc)
		_, _, err := h.StartTask(task)
		if err == nil {
			t.Fatalf("%+v started", tc)
		}
		if !strings.Contains(err.Error(), "4.3.3, 4.4.1, 4.4.2") {
			t.Fatalf("error does not list the installed versions: %v", err)
		}
	}
	// Invalid: never reaches a path.
	task = newTask(t, h, "rbad", TaskConfig{Command: "Rscript", RVersion: "../4.4"})
	if _, _, err := h.StartTask(task); err == nil || !strings.Contains(err.Error(), "invalid r_version") {
		t.Fatalf("invalid version: %v", err)
	}
}

func TestFingerprintRVersions(t *testing.T) {
	needRoot(t)
	root := rigRoot(t, "4.5.10", "4.2.2", "4.5.9")
	if err := os.Symlink("4.5.10", filepath.Join(root, "current")); err != nil {
		t.Fatal(err)
	}
	d := newDriver(t, Config{RRoot: root, DefaultR: filepath.Join(root, "4.2.2", "bin", "R")})
	fp := d.buildFingerprint()
	if fp.Health != drivers.HealthStateHealthy {
		t.Fatalf("health %s: %s", fp.Health, fp.HealthDescription)
	}
	attr := func(k string) string {
		a, ok := fp.Attributes[k]
		if !ok {
			return "<missing>"
		}
		s, _ := a.GetString()
		return s
	}
	for k, want := range map[string]string{
		"driver.bwrap-r.r.versions":       "4.2.2,4.5.9,4.5.10",
		"driver.bwrap-r.r.default":        "4.2.2",
		"driver.bwrap-r.r.minor.4.5":      "4.5.10",
		"driver.bwrap-r.r.minor.4.2":      "4.2.2",
		"driver.bwrap-r.r.version.4.5.9":  filepath.Join(root, "4.5.9"),
		"driver.bwrap-r.r.version.4.5.10": filepath.Join(root, "4.5.10"),
	} {
		if got := attr(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if _, ok := fp.Attributes["driver.bwrap-r.r.version.current"]; ok {
		t.Error("rig's current symlink listed as a version")
	}

	// A version installed later shows at the next fingerprint.
	rigRootAdd(t, root, "4.4.0")
	fp = d.buildFingerprint()
	if got, _ := fp.Attributes["driver.bwrap-r.r.versions"].GetString(); got != "4.2.2,4.4.0,4.5.9,4.5.10" {
		t.Fatalf("after an install: %q", got)
	}
}

func rigRootAdd(t *testing.T, root, v string) {
	t.Helper()
	bin := filepath.Join(root, v, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "R"), []byte("#!/bin/sh\necho 'R version "+v+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestFingerprintWithoutR(t *testing.T) {
	needRoot(t)
	t.Setenv("PATH", "/nonexistent")
	d := newDriver(t, Config{RRoot: filepath.Join(t.TempDir(), "none"), BwrapPath: "/usr/bin/bwrap"})
	fp := d.buildFingerprint()
	if fp.Health != drivers.HealthStateHealthy || !strings.Contains(fp.HealthDescription, "no R found") {
		t.Fatalf("want healthy with a no-R note, got %s: %q", fp.Health, fp.HealthDescription)
	}
}

func TestFingerprintBwrapMissing(t *testing.T) {
	d := newDriver(t, Config{BwrapPath: "/nonexistent/bwrap"})
	fp := d.buildFingerprint()
	if fp.Health != drivers.HealthStateUndetected || !strings.Contains(fp.HealthDescription, "/nonexistent/bwrap") {
		t.Fatalf("want undetected naming the path, got %s: %q", fp.Health, fp.HealthDescription)
	}
	task := &drivers.TaskConfig{ID: "x", Name: "x"}
	if err := task.EncodeConcreteDriverConfig(&TaskConfig{Command: "/bin/true"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.StartTask(task); err == nil || !strings.Contains(err.Error(), "/nonexistent/bwrap") {
		t.Fatalf("start without bwrap: %v", err)
	}
}

func TestHarnessRLibraries(t *testing.T) {
	rig := rigRoot(t, "4.4.2")
	libRoot, err := os.MkdirTemp("", "r-libs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(libRoot) })
	os.Chmod(libRoot, 0o755)
	common := filepath.Join(libRoot, "4.4", "common")
	os.MkdirAll(filepath.Join(common, "mypkg"), 0o755)
	os.MkdirAll(filepath.Join(libRoot, "4.3", "common", "oldpkg"), 0o755)
	outside, _ := os.MkdirTemp("", "r-libs-outside-")
	t.Cleanup(func() { os.RemoveAll(outside) })
	os.Chmod(outside, 0o755)
	os.Symlink(outside, filepath.Join(libRoot, "escape"))

	h, _ := newHarness(t, Config{RRoot: rig, DefaultR: filepath.Join(rig, "4.4.2", "bin", "R"), RLibraryRoots: []string{libRoot}})
	task := startAs(t, h, "libs", "nomad-80051", TaskConfig{Command: "Rscript", RVersion: "4.4",
		RLibs: []string{filepath.Join(libRoot, "{minor}", "common")}, RLibWritable: "/alloc/lib"})
	waitExit(t, h, task.ID, 20*time.Second)
	out := logs(t, task, "stdout")
	if !strings.Contains(out, "R_LIBS=/alloc/lib:"+common+"\n") || !strings.Contains(out, "mypkg") || strings.Contains(out, "oldpkg") {
		t.Fatalf("libraries not as asked (want /alloc/lib then the 4.4 library): %q", out)
	}
	fi, err := os.Stat(filepath.Join(task.TaskDir().SharedAllocDir, "lib"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 80051 {
		t.Fatalf("/alloc/lib owned by %d, want the task's uid", st.Uid)
	}

	for _, bad := range []string{outside, filepath.Join(libRoot, "4.4", "..", "..", filepath.Base(outside)), filepath.Join(libRoot, "escape")} {
		task := newTask(t, h, "badlib", TaskConfig{Command: "Rscript", RLibs: []string{bad}})
		if _, _, err := h.StartTask(task); err == nil || !strings.Contains(err.Error(), "r_libs") {
			t.Errorf("library %s accepted: %v", bad, err)
		}
	}
	task = newTask(t, h, "badwritable", TaskConfig{Command: "Rscript", RLibWritable: "/etc/lib"})
	if _, _, err := h.StartTask(task); err == nil {
		t.Error("r_lib_writable outside /alloc and /local accepted")
	}
}

// The package cache: one directory per R x.y and platform, writable only by
// tasks that ask, where no task can replace or remove another's entries.
func TestHarnessRPackageCache(t *testing.T) {
	rig := rigRoot(t, "4.4.2", "4.3.1")
	tmp, err := os.MkdirTemp("", "r-cache-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	os.Chmod(tmp, 0o755)
	cacheDir := filepath.Join(tmp, "cache")
	h, _ := newHarness(t, Config{RRoot: rig, RCacheDir: cacheDir})

	run := func(name, user, version string, writable bool, script string) string {
		t.Helper()
		task := startAs(t, h, name, user, TaskConfig{Command: "sh", Args: []string{"-c", script}, RVersion: version, RCacheWritable: writable})
		waitExit(t, h, task.ID, 20*time.Second)
		return logs(t, task, "stdout")
	}
	out := run("writer", "nomad-80061", "4.4", true, `echo "$BWRAP_R_CACHE $RENV_PATHS_CACHE"; echo tarball > /r-cache/pkg_1.tar.gz && echo WROTE`)
	if out != "/r-cache /r-cache\nWROTE\n" {
		t.Fatalf("writer: %q", out)
	}
	key := filepath.Join(cacheDir, "R-4.4", rPlatform())
	fi, err := os.Stat(key)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o777 || fi.Mode()&os.ModeSticky == 0 || st.Uid != 0 {
		t.Errorf("%s: mode %v owner %d, want sticky 0777 root's", key, fi.Mode(), st.Uid)
	}

	out = run("reader", "nomad-80062", "4.4", false, `cat /r-cache/pkg_1.tar.gz
echo x > /r-cache/pkg_1.tar.gz 2>/dev/null && echo OVERWROTE
echo y > /r-cache/other 2>/dev/null && echo ADDED`)
	if out != "tarball\n" {
		t.Errorf("a task without r_cache_writable: %q, want it to read the cache and change nothing", out)
	}
	out = run("rival", "nomad-80063", "4.4", true, `mv /r-cache/pkg_1.tar.gz /r-cache/stolen 2>/dev/null && echo MOVED
echo evil > /r-cache/pkg_1.tar.gz 2>/dev/null && echo REPLACED
rm -f /r-cache/pkg_1.tar.gz 2>/dev/null; [ -e /r-cache/pkg_1.tar.gz ] || echo REMOVED
echo own > /r-cache/pkg_2.tar.gz && echo ADDED-OWN`)
	if out != "ADDED-OWN\n" {
		t.Errorf("another writing task: %q, want it to add its own entry and touch no other", out)
	}
	if b, _ := os.ReadFile(filepath.Join(key, "pkg_1.tar.gz")); string(b) != "tarball\n" {
		t.Errorf("the first entry is now %q", b)
	}
	if out := run("oldr", "nomad-80064", "4.3", false, `ls -A /r-cache | wc -l`); strings.TrimSpace(out) != "0" {
		t.Errorf("R 4.3 sees R 4.4's cache: %q", out)
	}
	if out := run("nor", "nomad-80065", "", false, `[ -e /r-cache ] && echo HAS-CACHE; echo done`); out != "done\n" {
		t.Errorf("a task without R: %q", out)
	}

	h2, _ := newHarness(t, Config{RRoot: rig})
	task := newTask(t, h2, "nocache", TaskConfig{Command: "sh", RVersion: "4.4", RCacheWritable: true})
	if _, _, err := h2.StartTask(task); err == nil || !strings.Contains(err.Error(), "r_cache_dir") {
		t.Errorf("r_cache_writable without r_cache_dir: %v", err)
	}
}
