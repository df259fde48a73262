package bwrap

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bwrap-r/bwrap-r/syscallfilter"
)

func TestMain(m *testing.M) {
	// The launcher re-executes this test binary as the shim and the enter
	// launcher (shim.c and enter.c act before this runs).
	if os.Getenv(startHelperEnv) != "" {
		startHelper()
	}
	os.Exit(m.Run())
}

// needSandbox skips unless bwrap exists and the test runs as root (the shim
// drops from root to the task's UID, as in production).
func needSandbox(t *testing.T) string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("sandbox tests need root")
	}
	p, err := exec.LookPath("bwrap")
	if err != nil {
		t.Skip("bwrap not installed")
	}
	return p
}

func nobody(t *testing.T) (uint32, uint32) {
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uint32(uid), uint32(gid)
}

type testBox struct {
	*Sandbox
	local  string
	stdout string
}

func (b *testBox) output(t *testing.T) string {
	t.Helper()
	out, err := os.ReadFile(b.stdout)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// startBox runs a command as uid:gid in a sandbox with the system mounts and
// a /local of its own.
func startBox(t *testing.T, uid, gid uint32, net Network, command string, args ...string) *testBox {
	t.Helper()
	return startBoxWith(t, uid, gid, net, nil, command, args...)
}

// startBoxWith is startBox with edit changing the spec before the start.
func startBoxWith(t *testing.T, uid, gid uint32, net Network, edit func(*Spec), command string, args ...string) *testBox {
	t.Helper()
	bw := needSandbox(t)
	// bwrap runs as the task's UID and must traverse to the binds' sources.
	dir, err := os.MkdirTemp("", "bwrap-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(dir, "local")
	if err := os.Mkdir(local, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(local, int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}
	stdoutPath := filepath.Join(dir, "stdout")
	stdout, err := os.Create(stdoutPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	spec := &Spec{
		Command: command, Args: args,
		Env:    map[string]string{"PATH": "/usr/bin:/bin", "HOME": "/local", "MARK": "sandbox"},
		Mounts: append(SystemMounts(16<<20), Mount{Kind: Bind, Source: local, Dest: "/local"}),
		UID:    uid, GID: gid, Hostname: "boxed", Dir: "/local", Network: net,
	}
	if edit != nil {
		edit(spec)
	}
	filter, err := syscallfilter.Program()
	if err != nil {
		t.Fatal(err)
	}
	sb, err := Start(Launch{
		Bwrap: bw, Shim: []string{os.Args[0], ShimCommand}, Spec: spec,
		Stdout: stdout, Stderr: stdout, StatusPath: filepath.Join(dir, "status"),
		Seccomp: filter, StageDir: stageDir(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Kill(); sb.Wait(10 * time.Second) })
	return &testBox{Sandbox: sb, local: local, stdout: stdoutPath}
}

func run(t *testing.T, script string) (ExitStatus, string) {
	t.Helper()
	uid, gid := nobody(t)
	b := startBox(t, uid, gid, NetworkShared, "/bin/sh", "-c", script)
	if !b.Wait(30 * time.Second) {
		t.Fatal("sandbox did not end")
	}
	return b.Status(), b.output(t)
}

// kernelKeepsExitStatus reports whether a pidfd holder can read a reaped
// process's wait status (PIDFD_INFO_EXIT, Linux 6.15+).
func kernelKeepsExitStatus(t *testing.T) bool {
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	_ = cmd.Wait()
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	_, ok := exitWaitStatus(fd)
	return ok
}

// An exit code of 128+N that was no signal is told apart by the command's
// own wait status, where the kernel keeps it (the command runs long enough
// to be watched).
func TestExitCodeIsNotASignal(t *testing.T) {
	if !kernelKeepsExitStatus(t) {
		t.Skip("this kernel keeps no exit status for pidfd holders (PIDFD_INFO_EXIT, Linux 6.15+): 128+N reads as signal N")
	}
	for _, c := range []struct {
		script string
		code   int
	}{{"sleep 0.3; exit 137", 137}, {"sleep 0.3; exit 143", 143}} {
		st, out := run(t, c.script)
		if st.Code != c.code || st.Signal != 0 || st.Err != nil {
			t.Errorf("%q: got %+v (output %q), want code %d and no signal", c.script, st, out, c.code)
		}
	}
}

func TestExitCodes(t *testing.T) {
	for _, c := range []struct {
		script       string
		code, signal int
	}{
		{"exit 0", 0, 0},
		{"exit 3", 3, 0},
		{"kill -KILL $$", 137, 9},
		{"kill -TERM $$", 143, 15},
		{"sleep 0.3; kill -KILL $$", 137, 9},
	} {
		st, out := run(t, c.script)
		if st.Err != nil || st.Code != c.code || st.Signal != c.signal {
			t.Errorf("%q: got %+v (output %q), want code %d signal %d", c.script, st, out, c.code, c.signal)
		}
	}
}

func TestCommandNotFoundIsSandboxFailure(t *testing.T) {
	uid, gid := nobody(t)
	b := startBox(t, uid, gid, NetworkShared, "/usr/bin/no-such-command")
	b.Wait(10 * time.Second)
	st := b.Status()
	if st.Err == nil {
		t.Fatalf("want a sandbox error, got %+v", st)
	}
	if out := b.output(t); !strings.Contains(out, "no-such-command") {
		t.Fatalf("bwrap's message should name the command: %q", out)
	}
}

func TestIdentityUIDMap(t *testing.T) {
	uid, gid := nobody(t)
	b := startBox(t, uid, gid, NetworkShared, "/bin/sh", "-c", "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; echo up; sleep 30")
	waitFor(t, b, "up")
	cmd, err := b.Command()
	if err != nil {
		t.Fatal(err)
	}
	// The host's view of the task and of bwrap's monitor: UID N, not root.
	for _, pid := range []int{cmd.Pid, b.Monitor.Pid, b.Init.Pid} {
		status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			t.Fatal(err)
		}
		want := "Uid:\t" + strconv.Itoa(int(uid)) + "\t" + strconv.Itoa(int(uid))
		if !strings.Contains(string(status), want) {
			t.Errorf("pid %d: host sees %q, want %q", pid, grepLine(string(status), "Uid:"), want)
		}
	}
	if err := b.Stop(syscall.SIGTERM, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(b.output(t))
	u, g := strconv.Itoa(int(uid)), strconv.Itoa(int(gid))
	want := []string{u, g, u, u, "1", g, g, "1", "up"}
	if strings.Join(f, " ") != strings.Join(want, " ") {
		t.Fatalf("inside: %q, want %q", f, want)
	}
}

func grepLine(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func TestStopGraceful(t *testing.T) {
	uid, gid := nobody(t)
	b := startBox(t, uid, gid, NetworkShared, "/bin/sh", "-c", `trap "echo got-term; exit 7" TERM; echo ready; while :; do sleep 0.05; done`)
	waitFor(t, b, "ready")
	start := time.Now()
	if err := b.Stop(syscall.SIGTERM, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	st := b.Status()
	if st.Code != 7 || !strings.Contains(b.output(t), "got-term") {
		t.Fatalf("the command should have handled SIGTERM: %+v %q", st, b.output(t))
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("graceful stop took %v", time.Since(start))
	}
}

func TestStopIgnoredIsKilledAfterTimeout(t *testing.T) {
	uid, gid := nobody(t)
	b := startBox(t, uid, gid, NetworkShared, "/bin/sh", "-c", `trap "" TERM; echo ready; while :; do sleep 0.05; done`)
	waitFor(t, b, "ready")
	start := time.Now()
	if err := b.Stop(syscall.SIGTERM, time.Second); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if took < time.Second || took > 10*time.Second {
		t.Fatalf("stop took %v, want about the 1s timeout", took)
	}
	if st := b.Status(); st.Err == nil && st.Code == 0 {
		t.Fatalf("killed task reported success: %+v", st)
	}
	if b.Init.Alive() || b.Monitor.Alive() {
		t.Fatal("sandbox processes left after stop")
	}
}

func TestBackgroundChildrenDieWithTask(t *testing.T) {
	uid, gid := nobody(t)
	b := startBox(t, uid, gid, NetworkShared, "/bin/sh", "-c", `sleep 1000 & echo $! > /local/bg; exit 0`)
	b.Wait(10 * time.Second)
	if st := b.Status(); st.Code != 0 || st.Err != nil {
		t.Fatalf("status %+v", st)
	}
	if b.Init.Alive() {
		t.Fatal("the sandbox's pid 1 (and the background sleep) outlived the command")
	}
}

func TestReattachReadsExitCode(t *testing.T) {
	uid, gid := nobody(t)
	b := startBox(t, uid, gid, NetworkShared, "/bin/sh", "-c", `while [ ! -e /local/go ]; do sleep 0.05; done; exit 42`)
	// A second view of the same sandbox, as a restarted plugin would have it.
	re := Reattach(b.Monitor, b.Init, b.StatusPath)
	if re.Wait(200 * time.Millisecond) {
		t.Fatal("reattached sandbox reported an end while the task runs")
	}
	if err := os.WriteFile(filepath.Join(b.local, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if !re.Wait(10 * time.Second) {
		t.Fatal("reattached sandbox never ended")
	}
	if st := re.Status(); st.Code != 42 || st.Err != nil {
		t.Fatalf("reattached status %+v, want 42", st)
	}
	// Reattaching after the end still reads the code.
	if st := Reattach(b.Monitor, b.Init, b.StatusPath).Status(); st.Code != 42 {
		t.Fatalf("late reattach: %+v", st)
	}
}

func TestReusedPidIsNotSignalled(t *testing.T) {
	needSandbox(t)
	victim := exec.Command("sleep", "30")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	defer victim.Process.Kill()
	p, err := ProcOf(victim.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	stale := Proc{Pid: p.Pid, StartTime: p.StartTime - 1}
	if err := stale.Signal(syscall.SIGKILL); err == nil {
		t.Fatal("signalled a process whose start time differs")
	}
	sb := &Sandbox{Init: stale, Monitor: stale}
	_ = sb.Kill()
	time.Sleep(100 * time.Millisecond)
	if !p.Alive() {
		t.Fatal("a process with the same pid but another start time was killed")
	}
}

func waitFor(t *testing.T, b *testBox, text string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(b.output(t), text) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %q; output %q", text, b.output(t))
}

func TestOnlyStdioReachesTheTask(t *testing.T) {
	// bwrap hands every inherited descriptor to the task; the launcher's
	// status, info and args descriptors must not be among them.
	st, out := run(t, "ls /proc/self/fd")
	if st.Code != 0 {
		t.Fatalf("status %+v: %s", st, out)
	}
	// ls itself holds one descriptor (3) for the directory it reads.
	if got := strings.Join(strings.Fields(out), " "); got != "0 1 2 3" {
		t.Fatalf("descriptors inside: %q, want 0 1 2 and ls's own 3", got)
	}
}

func TestEnvironmentNotOnHostCommandLine(t *testing.T) {
	uid, gid := nobody(t)
	b := startBox(t, uid, gid, NetworkShared, "/bin/sh", "-c", "echo ready; sleep 30")
	waitFor(t, b, "ready")
	for _, pid := range []int{b.Monitor.Pid, b.Init.Pid} {
		cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(cmdline), "MARK") || strings.Contains(string(cmdline), "sandbox") {
			t.Fatalf("the task's environment is visible in pid %d's command line: %q", pid, cmdline)
		}
	}
}

// A task's umask is 022 whatever the launcher's (an agent started with
// umask 077), and so is an exec'd command's.
func TestTaskUmaskIsNotTheAgents(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	uid, gid := nobody(t)
	b := startBox(t, uid, gid, NetworkShared, "/bin/sh", "-c", "umask; echo up; exec sleep 60")
	waitFor(t, b, "up")
	if out := b.output(t); !strings.HasPrefix(out, "0022\n") {
		t.Errorf("the task's umask: %q", out)
	}
	out, _ := enter(t, b, Enter{UID: uid, GID: gid, Env: map[string]string{"PATH": "/usr/bin:/bin"}, Command: []string{"sh", "-c", "umask"}})
	if out != "0022\n" {
		t.Errorf("an exec'd command's umask: %q", out)
	}
}

// v2CgroupRoot is a cgroup2 hierarchy to test in: /sys/fs/cgroup on a v2
// host, /sys/fs/cgroup/unified on a hybrid one; "" when there is none.
func v2CgroupRoot() string {
	for _, p := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(p, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return p
		}
	}
	return ""
}

// On cgroups v2 bwrap's monitor, the sandbox's pid 1 and the command are all
// in the task's cgroup.
func TestStartInV2Cgroup(t *testing.T) {
	needSandbox(t)
	root := v2CgroupRoot()
	if root == "" {
		t.Skip("no cgroup2 hierarchy")
	}
	cg := filepath.Join(root, fmt.Sprintf("bwrap-r-clone-test-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Skipf("no cgroup to test with: %v", err)
	}
	t.Cleanup(func() {
		for i := 0; i < 100 && os.Remove(cg) != nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	})
	uid, gid := nobody(t)
	bw := needSandbox(t)
	dir := stageDir(t)
	out := filepath.Join(dir, "out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sb, err := Start(Launch{
		Bwrap: bw, Shim: []string{os.Args[0], ShimCommand},
		Spec: &Spec{Command: "/bin/sh", Args: []string{"-c", "grep '^0::' /proc/self/cgroup; read x"},
			Env: map[string]string{"PATH": "/usr/bin:/bin"}, Mounts: SystemMounts(16 << 20), UID: uid, GID: gid},
		Stdin: mustPipeReader(t, "go\n", 500*time.Millisecond), Stdout: f, Stderr: f,
		StatusPath: filepath.Join(dir, "status"), Seccomp: testFilter(t), StageDir: stageDir(t),
		Cgroups: []string{cg},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "0::" + strings.TrimPrefix(cg, root)
	for _, p := range []Proc{sb.Monitor, sb.Init} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.Pid))
		if err != nil || !strings.Contains(string(b), want+"\n") {
			t.Errorf("pid %d is not in %s: %q %v", p.Pid, cg, b, err)
		}
	}
	if !sb.Wait(30 * time.Second) {
		_ = sb.Kill()
		t.Fatal("sandbox did not end")
	}
	if b, _ := os.ReadFile(out); strings.TrimSpace(string(b)) != want {
		t.Errorf("the command is in %q, want %q", b, want)
	}
}
