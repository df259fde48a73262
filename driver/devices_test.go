package driver

import (
	"github.com/hashicorp/nomad/client/lib/cgroupslib"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/plugins/drivers"
	"github.com/hashicorp/nomad/plugins/drivers/testutils"
	"golang.org/x/sys/unix"
)

// testDeviceNode makes a device node in /dev for the test: the tun device
// (10:200), world-readable and -writable, so that only the devices cgroup
// decides what the task may do with it.
func testDeviceNode(t *testing.T) string {
	t.Helper()
	p := "/dev/bwrap-r-test-" + strconv.Itoa(os.Getpid())
	if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(10, 200))); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(p) })
	if err := os.Chmod(p, 0o666); err != nil {
		t.Fatal(err)
	}
	return p
}

const deviceProbe = `ls -A /dev | tr '\n' ' '; echo
if (exec 3</dev/mydev); then echo READ-OK; else echo READ-REFUSED; fi
if (exec 4>/dev/mydev); then echo WRITE-OK; else echo WRITE-REFUSED; fi`

// deviceTask runs deviceProbe in a task with its cgroups and the device.
func deviceTask(t *testing.T, h *testutils.DriverHarness, node, perms string) (stdout string) {
	t.Helper()
	task := limitedTask(t, h, "dev", 64, sh(deviceProbe))
	task.Devices = []*drivers.DeviceConfig{{TaskPath: "/dev/mydev", HostPath: node, Permissions: perms}}
	start(t, h, task)
	waitExit(t, h, task.ID, 20*time.Second)
	return logs(t, task, "stdout")
}

// TestHarnessDevices: a device plugin's device is in the sandbox's /dev with
// the permissions it was given, and nothing else of the host's /dev is.
func TestHarnessDevices(t *testing.T) {
	node := testDeviceNode(t)
	h, _ := newHarness(t, Config{})
	plain := limitedTask(t, h, "nodev", 64, sh(deviceProbe))
	start(t, h, plain)
	waitExit(t, h, plain.ID, 20*time.Second)
	baseline := strings.Fields(strings.SplitN(logs(t, plain, "stdout"), "\n", 2)[0])

	for _, c := range []struct {
		perms, read, write string
	}{
		{"r", "READ-OK", "WRITE-REFUSED"},
		{"rw", "READ-OK", "WRITE-OK"},
		{"w", "READ-REFUSED", "WRITE-OK"},
	} {
		t.Run(c.perms, func(t *testing.T) {
			if c.perms != "rw" && cgroupslib.GetMode() == cgroupslib.CG2 {
				t.Skip("cgroups v2 has no devices controller: a device short of rw is refused at start there (TestHarnessDeviceRefusals)")
			}
			h, _ := newHarness(t, Config{})
			out := deviceTask(t, h, node, c.perms)
			lines := strings.Split(out, "\n")
			got := strings.Fields(lines[0])
			want := append(slices.Clone(baseline), "mydev")
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("/dev holds %v, want %v (the baseline and mydev)", got, want)
			}
			if !strings.Contains(out, c.read) || !strings.Contains(out, c.write) {
				t.Errorf("permissions %q: want %s and %s, got %q", c.perms, c.read, c.write, out)
			}
		})
	}
}

// TestHarnessDeviceRefusals: a device that cannot be made as asked fails the
// start naming it.
func TestHarnessDeviceRefusals(t *testing.T) {
	node := testDeviceNode(t)
	file := filepath.Join(t.TempDir(), "not-a-device")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A node in a directory the task's UID cannot search: bwrap binds
	// devices by path, as the task.
	closed := "/dev/bwrap-r-test-closed-" + strconv.Itoa(os.Getpid())
	if err := os.Mkdir(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(closed) })
	if err := unix.Mknod(closed+"/node", unix.S_IFCHR|0o666, int(unix.Mkdev(10, 200))); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, host, perms string
		cgroups           bool
		want              string
	}{
		{"not-a-device", file, "rw", true, "not a device node"},
		{"missing", "/dev/bwrap-r-no-such-device", "rw", true, "no such file"},
		{"bad-permissions", node, "rx", true, "permissions"},
		{"closed-dir", closed + "/node", "rw", true, "closed to the task's uid"},
		// Read-only needs the devices cgroup: without one it is refused.
		{"read-only-without-cgroup", node, "r", false, "devices cgroup"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, _ := newHarness(t, Config{})
			var task *drivers.TaskConfig
			if c.cgroups {
				task = limitedTask(t, h, "dev-bad", 64, sh("echo ran"))
			} else {
				task = newTask(t, h, "dev-bad", sh("echo ran"))
			}
			task.Devices = []*drivers.DeviceConfig{{TaskPath: "/dev/mydev", HostPath: c.host, Permissions: c.perms}}
			_, _, err := h.StartTask(task)
			if err == nil {
				_ = h.Impl().DestroyTask(task.ID, true)
				t.Fatal("the task started")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), "device /dev/mydev") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("the error does not name the device and %q: %v", c.want, err)
			}
		})
	}
}

// TestHarnessDeviceExecHeld: a command exec'd into the task is held to the
// device's permissions too (it joins the task's devices cgroup), and Nomad's
// exec conformance tests (terminals included) pass in such a task.
func TestHarnessDeviceExecHeld(t *testing.T) {
	node := testDeviceNode(t)
	h, d := newHarness(t, Config{})
	task := limitedTask(t, h, "dev-exec", 128, sh("sleep 600"))
	// v2 has no devices controller, so a read-only device is refused at start
	// there; the exec still has to see the device and pass conformance.
	perms, wantWrite := "r", "WRITE-REFUSED"
	if cgroupslib.GetMode() == cgroupslib.CG2 {
		perms, wantWrite = "rw", "WRITE-OK"
	}
	task.Devices = []*drivers.DeviceConfig{{TaskPath: "/dev/mydev", HostPath: node, Permissions: perms}}
	start(t, h, task)
	if err := h.WaitUntilStarted(task.ID, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	res, err := h.ExecTask(task.ID, []string{"/bin/sh", "-c", deviceProbe}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	out := string(res.Stdout)
	if !strings.Contains(out, "READ-OK") || !strings.Contains(out, wantWrite) {
		t.Fatalf("exec into a task with a %q device: %q %q", perms, out, res.Stderr)
	}
	execConformance(t, d, task.ID)
}
