package bwrap

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mountPoints lists the mount points in a mountinfo file.
func mountPointsOf(t *testing.T, mountinfo string) []string {
	t.Helper()
	b, err := os.ReadFile(mountinfo)
	if err != nil {
		t.Fatal(err)
	}
	var points []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(line); len(f) > 4 {
			points = append(points, f[4])
		}
	}
	return points
}

// bwrap builds the sandbox in the launch's root: its mount table holds the
// host paths it binds from, /proc and the stage, and none of the host's
// other mounts (another allocation's secrets here), which the host keeps.
func TestLaunchRootHoldsOnlyWhatBwrapBindsFrom(t *testing.T) {
	bw := needSandbox(t)
	uid, gid := nobody(t)
	other := filepath.Join(t.TempDir(), "other-alloc", "secrets")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", other, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(other, syscall.MNT_DETACH) })

	dir, stage := t.TempDir(), stageDir(t)
	sb, err := Start(Launch{
		Bwrap: bw, Shim: []string{os.Args[0], ShimCommand},
		Spec: &Spec{
			Command: "/bin/sleep", Args: []string{"30"},
			Env:    map[string]string{"PATH": "/usr/bin:/bin"},
			Mounts: SystemMounts(16 << 20),
			UID:    uid, GID: gid,
		},
		StatusPath: filepath.Join(dir, "status"), Seccomp: testFilter(t), StageDir: stage,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = sb.Kill()
		sb.Wait(10 * time.Second)
	}()

	realBwrap, _ := filepath.EvalSymlinks(bw)
	allowed := []string{"/usr", "/proc", stage, realBwrap, "/etc/ld.so.cache"}
	points := mountPointsOf(t, filepath.Join("/proc", itoa(sb.Monitor.Pid), "mountinfo"))
	for _, p := range points {
		ok := p == "/"
		for _, a := range allowed {
			ok = ok || Within(p, a)
		}
		if !ok {
			t.Errorf("bwrap sees the host's mount %s", p)
		}
	}
	if len(points) < 4 {
		t.Errorf("bwrap's mount table %q: want /, /usr, /proc and the stage at least", points)
	}
	host, _ := os.ReadFile("/proc/self/mountinfo")
	if !strings.Contains(string(host), other) {
		t.Errorf("the host lost %s", other)
	}
}

// A path bwrap binds by path is looked up as the task, as bwrap would: a
// directory below one closed to the task fails the start and is not bound.
// One named through a link is bound, as bwrap binds the link's target.
func TestLaunchRootLooksUpPathsAsTheTask(t *testing.T) {
	uid, gid := nobody(t)
	closed := closedRoot(t)
	inside := filepath.Join(closed, "r")
	if err := os.Mkdir(inside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(inside, "marker"), []byte("closed"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, out, err := runIn(t, uid, gid, []Mount{{Kind: ROBind, Source: inside, Dest: "/r"}}, "cat /r/marker")
	if err == nil || !strings.Contains(err.Error(), "Permission denied") {
		t.Errorf("a path the task cannot reach: exit %d %v, output %q, start error %v; want the start refused", st.Code, st.Err, out, err)
	}

	open := stageDir(t) // root's, 0711: the task can walk through it
	real := filepath.Join(open, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(real, "marker"), []byte("open"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(open, "link")
	if err := os.Symlink("real", link); err != nil {
		t.Fatal(err)
	}
	st, out, err = runIn(t, uid, gid, []Mount{{Kind: ROBind, Source: link, Dest: "/r"}}, "cat /r/marker")
	if err != nil || st.Code != 0 || out != "open" {
		t.Errorf("a path through a link: exit %d %v, output %q, start error %v", st.Code, st.Err, out, err)
	}
}

// The launcher alone: a root entry below another is there with it (not made
// inside the host's directory), links are made, and the host's / is gone.
func TestShimRootEntries(t *testing.T) {
	stage := stageDir(t)
	stdout, stderr, _, code := runShim(t, "-uid", "65534", "-gid", "65534", "-stage", stage,
		"-root-bind", "/usr", "-root-bind", "/usr/share", "-root-link", "usr/lib64", "/lib64",
		"-root-link", "usr/lib", "/lib", "--", "/usr/bin/ls", "-A", "/")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	top := strings.SplitN(strings.TrimPrefix(stage, "/"), "/", 2)[0]
	want := []string{"lib", "lib64", "proc", "tmp", "usr"}
	if top != "usr" && top != "proc" && top != "tmp" {
		want = append(want, top)
	}
	slices.Sort(want)
	if got := strings.Fields(stdout); !slices.Equal(got, want) {
		t.Errorf("the launch's root holds %q, want %q", got, want)
	}
	for _, bad := range [][]string{
		{"-root-bind", "/usr", "--", "/usr/bin/true"},                         // no -stage
		{"-stage", stage, "-root-bind", "usr", "--", "/usr/bin/true"},         // relative
		{"-stage", stage, "-root-bind", "/", "--", "/usr/bin/true"},           // the host's root
		{"-stage", stage, "-root-bind", "/usr/../etc", "--", "/usr/bin/true"}, // not clean
	} {
		_, stderr, _, code := runShim(t, append([]string{"-uid", "65534", "-gid", "65534"}, bad...)...)
		if code != 125 {
			t.Errorf("%q: exit %d %q, want a refusal", bad, code, stderr)
		}
	}
}

// The template a launch copies in place of the host's mount namespace holds
// one tmpfs with the empty directory a launch mounts its root on, and
// nothing of the host; the host keeps its mounts.
func TestShimTemplateHoldsNothingOfTheHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the shim starts as root")
	}
	cmd := exec.Command(os.Args[0], ShimCommand, "-template", t.TempDir())
	cmd.Env = []string{}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
		t.Fatalf("template said %q: %s", line, stderr.String())
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if f := strings.Fields(lines[0]); len(lines) != 1 || len(f) < 9 || f[4] != "/" || !slices.Contains(f, "tmpfs") {
		t.Errorf("the template's mounts:\n%s\nwant one tmpfs at /", b)
	}
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/root", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "r" || !entries[0].IsDir() {
		t.Errorf("the template's root holds %v, want the directory r", entries)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Errorf("template: %v: %s", err, stderr.String())
	}
	if host := mountPointsOf(t, "/proc/self/mountinfo"); len(host) < 2 {
		t.Errorf("the host's mounts: %q", host)
	}
}
