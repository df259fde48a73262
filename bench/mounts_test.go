//go:build bench

package bench

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Mounts left in an earlier run's dir mark a run as not a quiet machine's.
func TestLeftMountsMarkTheRun(t *testing.T) {
	points := []string{"/", "/proc", "/work/.cache/tmp/bwrap-r-bench-123/alloc/a/alloc", "/tmp/bwrap-r-bench-9/alloc/b/t/local", "/srv/bwrap-r-benchmarks"}
	left := benchMounts(points)
	if want := points[2:4]; !slices.Equal(left, want) {
		t.Fatalf("benchMounts: %q, want %q", left, want)
	}
	r := &report{machine: machine{loadStart: "0.10 0.20 0.30", leftMounts: len(left)}}
	if why := r.underLoad(); !strings.Contains(why, "2 mounts left") {
		t.Errorf("underLoad: %q, want the 2 mounts left named", why)
	}
	if why := (&report{machine: machine{loadStart: "0.10 0.20 0.30"}}).underLoad(); why != "" {
		t.Errorf("underLoad of a clean, quiet start: %q", why)
	}
}

// A run takes off what is still mounted in its dir, so the next one starts
// from the table this one found.
func TestUnmountBelow(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("mounting needs root")
	}
	base, err := os.MkdirTemp("", benchDirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	outside := t.TempDir()
	inner := filepath.Join(base, "alloc", "a")
	for _, d := range []string{inner, outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{filepath.Join(base, "alloc"), inner, outside} {
		if err := unix.Mount("tmpfs", d, "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		if d != filepath.Join(base, "alloc") {
			continue
		}
		// The inner dir again, on the tmpfs just mounted over it.
		if err := os.MkdirAll(inner, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	defer unix.Unmount(outside, unix.MNT_DETACH)
	if n := len(mountsUnder(base + "/")); n != 2 {
		t.Fatalf("%d mounts in %s before, want 2", n, base)
	}
	unmountBelow(base)
	if left := mountsUnder(base + "/"); len(left) != 0 {
		t.Errorf("left mounted: %q", left)
	}
	if len(mountsUnder(outside)) != 1 {
		t.Errorf("%s, outside the dir, was unmounted too", outside)
	}
}
