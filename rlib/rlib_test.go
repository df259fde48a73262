package rlib

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestExpand(t *testing.T) {
	if got := Expand("/srv/r-libs/{minor}/common", "4.4"); got != "/srv/r-libs/4.4/common" {
		t.Fatal(got)
	}
}

func TestCheckWritable(t *testing.T) {
	for _, ok := range []string{"/alloc/lib", "/local/R/lib"} {
		if err := CheckWritable(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"/alloc", "/etc/lib", "/alloc/../etc", "alloc/lib", "/alloc/lib/", "/localx/lib"} {
		if err := CheckWritable(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestMakeDirRefusesSymlinks(t *testing.T) {
	base := t.TempDir()
	target := t.TempDir()
	os.Symlink(target, filepath.Join(base, "lib"))
	if err := MakeDir(base, "lib/x", os.Getuid(), os.Getgid()); err == nil {
		t.Fatal("followed a planted symlink")
	}
	if _, err := os.Stat(filepath.Join(target, "x")); err == nil {
		t.Fatal("created a directory through the symlink")
	}
	if err := MakeDir(base, "R/lib", os.Getuid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(base, "R", "lib")); err != nil || !fi.IsDir() {
		t.Fatal("not created", err)
	}
}

func TestMakeCacheDir(t *testing.T) {
	root := filepath.Join(t.TempDir(), "cache")
	dir, err := MakeCacheDir(root, "R-4.4", "x86_64-pc-linux-gnu")
	if err != nil {
		t.Fatal(err)
	}
	if dir != filepath.Join(root, "R-4.4", "x86_64-pc-linux-gnu") {
		t.Fatalf("dir %s", dir)
	}
	for p, want := range map[string]os.FileMode{root: 0o711, filepath.Dir(dir): 0o755, dir: 0o777 | os.ModeSticky} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() & (os.ModePerm | os.ModeSticky); got != want {
			t.Errorf("%s: mode %v, want %v", p, got, want)
		}
	}
	// Again: nothing changes, nothing fails.
	if _, err := MakeCacheDir(root, "R-4.4", "x86_64-pc-linux-gnu"); err != nil {
		t.Fatal(err)
	}
	// A link where a key should be is refused, and its target untouched.
	target := t.TempDir()
	os.Chmod(target, 0o700)
	if err := os.Symlink(target, filepath.Join(root, "R-4.3")); err != nil {
		t.Fatal(err)
	}
	if _, err := MakeCacheDir(root, "R-4.3", "x86_64-pc-linux-gnu"); err == nil {
		t.Error("a symlinked key was followed")
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o700 {
		t.Errorf("the link's target is now %v", fi.Mode())
	}
	if entries, _ := os.ReadDir(target); len(entries) != 0 {
		t.Errorf("made %s in the link's target", entries[0].Name())
	}
	for _, bad := range []string{"..", ".", "", "a/b"} {
		if _, err := MakeCacheDir(root, bad); err == nil {
			t.Errorf("element %q accepted", bad)
		}
	}
}

// A library dir the plugin makes is 0755 whatever the agent's umask: the
// allocation's other tasks read what the task installs there.
func TestMakeDirModeIgnoresUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	base := t.TempDir()
	if err := MakeDir(base, "lib/4.2", os.Getuid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"lib", "lib/4.2"} {
		fi, err := os.Stat(filepath.Join(base, p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v, want 0755", p, fi.Mode().Perm())
		}
	}
}
