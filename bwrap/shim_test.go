package bwrap

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// runShim runs this test binary as the shim (shim.c acts before Go starts)
// with a pipe as descriptor 3, as the launcher does, and an extra descriptor
// 9 without close-on-exec that must not reach what the shim execs.
func runShim(t *testing.T, args ...string) (stdout, stderr, info string, code int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the shim starts as root")
	}
	infoR, infoW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer infoR.Close()
	leak, err := os.Open("/etc/hostname")
	if err != nil {
		t.Fatal(err)
	}
	defer leak.Close()
	cmd := exec.Command(os.Args[0], append([]string{ShimCommand}, args...)...)
	cmd.Env = []string{"SHIM_TEST_SECRET=1"}
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	// ExtraFiles: 3 info, 4..8 placeholders, 9 the leak.
	cmd.ExtraFiles = []*os.File{infoW, nil, nil, nil, nil, nil, leak}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Run()
	infoW.Close()
	b, _ := io.ReadAll(infoR)
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatal(err)
	}
	return out.String(), errb.String(), string(b), code
}

func TestShimRefusesBadInput(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"root uid", []string{"-uid", "0", "-gid", "1000", "--", "/bin/true"}, "refusing uid 0"},
		{"root gid", []string{"-uid", "1000", "-gid", "0", "--", "/bin/true"}, "refusing uid 1000 gid 0"},
		{"no ids", []string{"--", "/bin/true"}, "refusing uid -1"},
		{"negative uid", []string{"-uid", "-5", "-gid", "1000", "--", "/bin/true"}, "refusing uid -5"},
		{"uid wraps", []string{"-uid", "4294967296", "-gid", "1000", "--", "/bin/true"}, "not an id"},
		{"uid text", []string{"-uid", "1000x", "-gid", "1000", "--", "/bin/true"}, "not an id"},
		{"relative bwrap", []string{"-uid", "1000", "-gid", "1000", "--", "true"}, "/absolute/path/to/bwrap"},
		{"no command", []string{"-uid", "1000", "-gid", "1000", "--"}, "/absolute/path/to/bwrap"},
		{"unknown flag", []string{"-uid", "1000", "-gid", "1000", "-privileged", "1", "--", "/bin/true"}, "unknown flag -privileged"},
		{"flag without value", []string{"-uid"}, "-uid needs a value"},
		{"missing cgroup", []string{"-uid", "1000", "-gid", "1000", "-cgroup", "/nonexistent", "--", "/bin/true"}, "joining cgroup"},
		{"missing netns", []string{"-uid", "1000", "-gid", "1000", "-netns", "/nonexistent", "--", "/bin/true"}, "network namespace /nonexistent"},
		{"not a netns", []string{"-uid", "1000", "-gid", "1000", "-netns", "/etc/hostname", "--", "/bin/true"}, "joining network namespace"},
		{"exec fails", []string{"-uid", "1000", "-gid", "1000", "--", "/nonexistent/bwrap"}, "exec /nonexistent/bwrap"},
	} {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, info, code := runShim(t, c.args...)
			if code != 125 {
				t.Fatalf("exit %d (stdout %q stderr %q), want 125", code, stdout, stderr)
			}
			if !strings.Contains(stderr, c.want) {
				t.Errorf("stderr %q, want %q", stderr, c.want)
			}
			var msg map[string]string
			if err := json.Unmarshal([]byte(info), &msg); err != nil || !strings.Contains(msg["shim-error"], c.want) {
				t.Errorf("info descriptor %q (%v), want a shim-error with %q", info, err, c.want)
			}
		})
	}
}

// What the shim execs runs as the task's UID and GID with no supplementary
// groups, no capabilities, no parent-death signal, an empty environment,
// and no descriptor beyond 0-6, inside the cgroup it was given.
func TestShimDropsEverything(t *testing.T) {
	cg := testCgroup(t)
	script := `id -u; id -g; grep -E '^(Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb):' /proc/self/status | tr -d '\t'
env | wc -l
ls /proc/$$/fd | sort -n | tr '\n' ' '; echo
perl -e '$b = pack("i", -1); syscall(157, 2, $b) == 0 or die; print "pdeathsig ", unpack("i", $b), "\n"'
cat /proc/self/cgroup`
	stdout, stderr, _, code := runShim(t, "-uid", "65534", "-gid", "65533", "-cgroup", cg, "--", "/bin/sh", "-c", script)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	want := []string{"65534", "65533", "Groups:", "CapInh:0000000000000000", "CapPrm:0000000000000000", "CapEff:0000000000000000"}
	for i, w := range want {
		if i >= len(lines) || strings.TrimSpace(lines[i]) != w {
			t.Fatalf("line %d: got %q, want %q (all: %q)", i, lines, w, stdout)
		}
	}
	// sh sets PWD, SHLVL and _ itself: nothing of the caller's.
	if strings.Contains(stdout, "SHIM_TEST_SECRET") {
		t.Errorf("the caller's environment reached bwrap: %q", stdout)
	}
	// 0-2, 3 (info), 4-8 unset by ExtraFiles' nils, and ls's own directory.
	for _, l := range lines {
		if strings.HasPrefix(l, "0 1 2") {
			for _, fd := range strings.Fields(l) {
				if fd == "9" {
					t.Errorf("descriptor 9 leaked through the shim: %q", l)
				}
			}
		}
	}
	if !strings.Contains(stdout, "pdeathsig 0") {
		t.Errorf("parent-death signal not cleared: %q", stdout)
	}
	if !strings.Contains(stdout, strings.TrimPrefix(cg, cgroupRoot(t))) {
		t.Errorf("not in cgroup %s: %q", cg, stdout)
	}
}

// cgroupRoot is where a test cgroup goes: the unified hierarchy on v2, the
// pids hierarchy on v1.
func cgroupRoot(t *testing.T) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs("/sys/fs/cgroup", &st); err == nil && st.Type == 0x63677270 {
		return "/sys/fs/cgroup"
	}
	return "/sys/fs/cgroup/pids"
}

func testCgroup(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(cgroupRoot(t), fmt.Sprintf("bwrap-r-shim-test-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("no cgroup to test with: %v", err)
	}
	t.Cleanup(func() { _ = os.Remove(dir) })
	return dir
}

// A closed stdin, stdout or stderr gets /dev/null: otherwise the next file
// the shim or bwrap opened would reach the task under that number.
func TestShimFillsClosedStdio(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the shim starts as root")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	closed := ^uintptr(0) // -1: closed in the child
	pid, err := syscall.ForkExec(os.Args[0], []string{os.Args[0], ShimCommand, "-uid", "65534", "-gid", "65534", "--",
		"/bin/sh", "-c", "readlink /proc/self/fd/0 >&4; readlink /proc/self/fd/2 >&4"}, &syscall.ProcAttr{
		Env: []string{},
		// Descriptor 4: 3, the launcher's failure report, closes at its exec.
		Files: []uintptr{closed, closed, closed, closed, w.Fd()},
	})
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(r)
	var ws syscall.WaitStatus
	syscall.Wait4(pid, &ws, 0, nil)
	if ws.ExitStatus() != 0 || string(out) != "/dev/null\n/dev/null\n" {
		t.Fatalf("exit %d, fds 0 and 2 of the exec'd command: %q, want /dev/null", ws.ExitStatus(), out)
	}
}
