// Package testmounts makes, for the driver's and the agent's tests, the
// mounts a node's data_dir may stand on: a host disk shared as systemd makes
// /, and below it a directory that is a file system of its own.
package testmounts

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// HostDisk is a tmpfs of size in a new directory below base (its name starts
// with prefix), standing for the host's root file system and shared as
// systemd makes / (so that mounts below it propagate as on such a host).
// Everything mounted below it, the tasks' link guards included, goes with it
// when the test ends, however it ends short of the test binary's death.
func HostDisk(t *testing.T, base, prefix, size string) string {
	t.Helper()
	dir, err := os.MkdirTemp(base, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("host-disk", dir, "tmpfs", 0, "mode=0755,size="+size); err != nil {
		os.Remove(dir)
		t.Fatalf("tmpfs at %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
		os.Remove(dir)
	})
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	return dir
}

// OwnMount makes dir (below disk) a mount of the given kind, as an operator
// puts /var/lib/nomad on a disk of its own: a tmpfs or a loop-mounted ext4 of
// size, or a bind of disk/srv/<name>, which it returns as the other path to
// the same files ("" for the others). dir's root is then mode and root's.
func OwnMount(t *testing.T, disk, dir, kind, size string, mode os.FileMode) (other string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	switch kind {
	case "tmpfs":
		if err := unix.Mount("own-mount", dir, "tmpfs", 0, "size="+size); err != nil {
			t.Fatal(err)
		}
	case "ext4":
		if _, err := exec.LookPath("mkfs.ext4"); err != nil {
			t.Skip("no mkfs.ext4")
		}
		img := filepath.Join(disk, filepath.Base(dir)+".img")
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", img, size).CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4: %v %s", err, out)
		}
		// A loop device with autoclear: it goes when the file system is
		// unmounted (with the host disk's tmpfs at the latest).
		if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
			t.Skipf("no loop mount here: %v %s", err, out)
		}
	case "bind":
		other = filepath.Join(disk, "srv", filepath.Base(dir))
		if err := os.MkdirAll(other, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount(other, dir, "", unix.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown mount kind %q", kind)
	}
	// Detached first thing in the cleanups (they run last in, first out),
	// so that a loop device is released even before the host disk goes.
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	var st, parent unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(disk, &parent); err != nil {
		t.Fatal(err)
	}
	if kind != "bind" && st.Dev == parent.Dev {
		t.Fatalf("%s is not on a file system of its own", dir)
	}
	return other
}
