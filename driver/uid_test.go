package driver

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/plugins/drivers"
)

func hostUID(t *testing.T, pid string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Uid:") {
			return strings.Fields(l)[1]
		}
	}
	return ""
}

func TestHarnessTasksRunAsTheirOwnUIDs(t *testing.T) {
	h, d := newHarness(t, Config{})
	script := `id -u; id -g; cat /proc/self/uid_map; echo mine > /local/f; echo up; sleep 60`
	a := startAs(t, h, "a", "nomad-80001", sh(script))
	b := startAs(t, h, "b", "nomad-80002", sh(script))
	waitLog(t, a, "stdout", "up")
	waitLog(t, b, "stdout", "up")
	// As the client writes a token (the task's /secrets is read-only).
	if err := os.WriteFile(filepath.Join(b.TaskDir().SecretsDir, "s"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}

	for task, uid := range map[*drivers.TaskConfig]string{a: "80001", b: "80002"} {
		f := strings.Fields(logs(t, task, "stdout"))
		if len(f) < 5 || f[0] != uid || f[1] != uid || f[2] != uid || f[3] != uid || f[4] != "1" {
			t.Errorf("task %s inside: %q, want uid/gid %s and the identity map", task.Name, f, uid)
		}
		th, _ := d.tasks.Get(task.ID)
		cmd, err := th.sandbox.Command()
		if err != nil {
			t.Fatal(err)
		}
		if got := hostUID(t, strconv.Itoa(cmd.Pid)); got != uid {
			t.Errorf("task %s: the host sees uid %s, want %s", task.Name, got, uid)
		}
		if th.state.UID != mustAtoi(uid) {
			t.Errorf("handle state uid %d", th.state.UID)
		}
		// local/ and secrets/ belong to the task alone.
		for _, dir := range []string{task.TaskDir().LocalDir, task.TaskDir().SecretsDir} {
			fi, err := os.Stat(dir)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o700 {
				t.Errorf("%s mode %v", dir, fi.Mode().Perm())
			}
		}
	}

	// Another task's UID cannot read B's files, even knowing the host path.
	for _, p := range []string{filepath.Join(b.TaskDir().LocalDir, "f"), filepath.Join(b.TaskDir().SecretsDir, "s")} {
		out, err := exec.Command("setpriv", "--reuid=80001", "--regid=80001", "--clear-groups", "cat", p).CombinedOutput()
		if err == nil {
			t.Errorf("uid 80001 read %s: %q", p, out)
		}
	}

	// From inside another task, B's processes do not exist: no signal, no
	// ptrace.
	tb, _ := d.tasks.Get(b.ID)
	bcmd, _ := tb.sandbox.Command()
	probe := startAs(t, h, "probe", "nomad-80003", sh(
		"kill -0 "+strconv.Itoa(bcmd.Pid)+" 2>/dev/null && echo SIGNALLED; ls /proc/"+strconv.Itoa(bcmd.Pid)+" >/dev/null 2>&1 && echo VISIBLE; ls -d /proc/[0-9]* | wc -l"))
	waitExit(t, h, probe.ID, 20*time.Second)
	out := logs(t, probe, "stdout")
	if strings.Contains(out, "SIGNALLED") || strings.Contains(out, "VISIBLE") {
		t.Fatalf("task A reached task B's process: %q", out)
	}
	if n, _ := strconv.Atoi(strings.TrimSpace(out)); n > 4 {
		t.Fatalf("task sees %d processes", n)
	}
}

func mustAtoi(s string) uint32 {
	n, _ := strconv.Atoi(s)
	return uint32(n)
}

func TestHarnessDeniedUIDs(t *testing.T) {
	h, _ := newHarness(t, Config{DeniedHostUIDs: "80000-80010"})
	task := newTask(t, h, "denied", sh("true"))
	task.User = "nomad-80005"
	if _, _, err := h.StartTask(task); err == nil || !strings.Contains(err.Error(), "denied") {
		t.Fatalf("a denied uid started: %v", err)
	}
	task = startAs(t, h, "allowed", "nomad-80011", sh("true"))
	if res := waitExit(t, h, task.ID, 20*time.Second); res.ExitCode != 0 {
		t.Fatalf("allowed uid: %+v", res)
	}
}

// A real owner-match firewall rule tells tasks apart by their host UID.
func TestHarnessOwnerMatchRuleSeesTaskUID(t *testing.T) {
	ipt, err := exec.LookPath("iptables")
	if err != nil {
		t.Skip("iptables not installed")
	}
	h, _ := newHarness(t, Config{})
	port := loopbackListener(t)
	rule := []string{"OUTPUT", "-p", "tcp", "-d", "127.0.0.1", "--dport", port, "-m", "owner", "--uid-owner", "80021", "-j", "REJECT", "--reject-with", "tcp-reset"}
	if out, err := exec.Command(ipt, append([]string{"-I"}, rule...)...).CombinedOutput(); err != nil {
		t.Skipf("cannot add an iptables rule here: %v %s", err, out)
	}
	defer func() {
		if out, err := exec.Command(ipt, append([]string{"-D"}, rule...)...).CombinedOutput(); err != nil {
			t.Errorf("removing the rule: %v %s", err, out)
		}
	}()
	connect := sh(`if bash -c 'exec 3<>/dev/tcp/127.0.0.1/` + port + `' 2>/dev/null; then echo connected; else echo refused; fi`)
	blocked := startAs(t, h, "blocked", "nomad-80021", connect)
	other := startAs(t, h, "other", "nomad-80022", connect)
	waitExit(t, h, blocked.ID, 20*time.Second)
	waitExit(t, h, other.ID, 20*time.Second)
	if got := strings.TrimSpace(logs(t, blocked, "stdout")); got != "refused" {
		t.Errorf("task with the blocked uid: %q, want refused", got)
	}
	if got := strings.TrimSpace(logs(t, other, "stdout")); got != "connected" {
		t.Errorf("task with another uid: %q, want connected", got)
	}
}

// A task's egress_deny holds that task's UID alone, and goes with the task.
func TestHarnessTaskEgressDeny(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		if _, err := exec.LookPath("iptables"); err != nil {
			t.Skip("neither nft nor iptables")
		}
	}
	h, _ := newHarness(t, Config{})
	port := loopbackListener(t)
	connect := `if bash -c 'exec 3<>/dev/tcp/127.0.0.1/` + port + `' 2>/dev/null; then echo connected; else echo refused; fi`
	denied := startAs(t, h, "denied", "nomad-80061", TaskConfig{Command: "/bin/sh", Args: []string{"-c", connect + "; sleep 60"}, EgressDeny: []string{"127.0.0.1:" + port}})
	other := startAs(t, h, "other", "nomad-80062", sh(connect))
	waitLog(t, denied, "stdout", "refused")
	waitLog(t, other, "stdout", "connected")
	if err := h.StopTask(denied.ID, time.Second, "SIGKILL"); err != nil {
		t.Fatal(err)
	}
	waitExit(t, h, denied.ID, 10*time.Second)
	if err := h.DestroyTask(denied.ID, true); err != nil {
		t.Fatal(err)
	}
	// The rule went with the task: the same UID connects again.
	again := startAs(t, h, "again", "nomad-80061", sh(connect))
	waitLog(t, again, "stdout", "connected")

	bad := newTask(t, h, "bad", TaskConfig{Command: "/bin/true", EgressDeny: []string{"example.com"}})
	if _, _, err := h.StartTask(bad); err == nil || !strings.Contains(err.Error(), "egress_deny") {
		t.Fatalf("bad egress_deny accepted: %v", err)
	}
}

// A task cannot plant links (or anything) in the allocation's logs/, where
// logmon and the plugin open files as root; the rest of /alloc stays shared.
func TestHarnessAllocLogsReadOnly(t *testing.T) {
	h, _ := newHarness(t, Config{})
	task := newTask(t, h, "logs", sh(`ln -s /etc/shadow /alloc/logs/.other.stdout.fifo 2>/dev/null && echo LINKED
ln -s /etc/shadow /alloc/logs/other.stdout.0 2>/dev/null && echo LINKED
touch /alloc/logs/new 2>/dev/null && echo WROTE
mv /alloc/logs /alloc/moved 2>/dev/null && echo MOVED
echo x > /alloc/data/shared && echo SHARED-OK
for i in 1 2 3 4 5 6 7 8 9 10; do ls -a /alloc/logs | grep -q '^logs.stdout.0$' && echo LIST-OK && break; sleep 0.2; done`))
	start(t, h, task)
	waitExit(t, h, task.ID, 20*time.Second)
	out := logs(t, task, "stdout")
	for _, bad := range []string{"LINKED", "WROTE", "MOVED"} {
		if strings.Contains(out, bad) {
			t.Errorf("task changed the allocation's logs/: %q", out)
		}
	}
	if !strings.Contains(out, "SHARED-OK") || !strings.Contains(out, "LIST-OK") {
		t.Errorf("the shared alloc dir should stay writable and the logs readable: %q", out)
	}
	for _, name := range []string{"new", ".other.stdout.fifo", "other.stdout.0"} {
		if _, err := os.Lstat(filepath.Join(task.TaskDir().LogDir, name)); err == nil {
			t.Errorf("%s appeared in the host's logs/", name)
		}
	}
}
