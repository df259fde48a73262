package driver

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// agentGreeting is what the stand-in for the client's Task API says.
const agentGreeting = "task-api-answers"

// listenTaskAPI stands in for the client's api hook: a unix listener at
// secrets/api.sock that greets every connection. The harness's path is too
// long for a socket address, so it binds through a descriptor of the dir.
func listenTaskAPI(t *testing.T, secrets string) (net.Listener, error) {
	t.Helper()
	dir, err := os.Open(secrets)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	path := fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), taskAPISocket)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	// The client's fallback when it cannot give the socket to the task.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	// Its name is gone with the descriptor: the client removes it itself.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, agentGreeting)
			c.Close()
		}
	}()
	return l, nil
}

// connectTaskAPI is a task's script line that connects to /secrets/api.sock
// and prints "<label>: connected <greeting>" or "<label>: refused ...".
func connectTaskAPI(label string) string {
	return `perl -MIO::Socket::UNIX -e '$s = IO::Socket::UNIX->new(Peer => "/secrets/api.sock") or do { print "$ARGV[0]: refused $!\n"; exit }; print "$ARGV[0]: connected ", scalar(<$s>)' "` + label + `"`
}

// mountsAt lists the mount points of this process's namespace at path.
func mountsAt(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			n++
		}
	}
	return n
}

// With task_api = "deny" the task cannot reach the Task API, also after the
// client re-creates the socket as its api hook does after an agent restart,
// and again when the task restarts; DestroyTask leaves no mount behind.
func TestHarnessTaskAPIHidden(t *testing.T) {
	h, _ := newHarness(t, Config{TaskAPI: taskAPIDeny})
	script := `for r in 1 2; do while [ ! -e /local/go$r ]; do sleep 0.05; done; ` + connectTaskAPI("round $r") + `; done`
	task := newTask(t, h, "api", sh(script))
	secrets := task.TaskDir().SecretsDir
	sock := filepath.Join(secrets, taskAPISocket)
	if _, err := listenTaskAPI(t, secrets); err != nil {
		t.Fatal(err)
	}
	start(t, h, task)
	goRound := func(r int) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(task.TaskDir().LocalDir, fmt.Sprintf("go%d", r)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		waitLog(t, task, "stdout", fmt.Sprintf("round %d: ", r))
	}
	goRound(1)

	// The client's api hook after an agent restart: remove, listen anew.
	if err := os.RemoveAll(sock); err == nil {
		t.Errorf("the client removed %s while the task runs", sock)
	}
	if _, err := listenTaskAPI(t, secrets); err == nil {
		t.Errorf("the client listened again at %s while the task runs", sock)
	}
	goRound(2)
	waitExit(t, h, task.ID, 20*time.Second)
	out := logs(t, task, "stdout")
	if strings.Contains(out, "connected") || strings.Count(out, ": refused") != 2 {
		t.Errorf("the task reached the Task API: %q", out)
	}

	if err := h.DestroyTask(task.ID, true); err != nil {
		t.Fatal(err)
	}
	if n := mountsAt(t, sock); n != 0 {
		t.Fatalf("%d mount(s) left at %s after DestroyTask", n, sock)
	}
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("after DestroyTask %s is %v (%v), want the client's socket again", sock, fi, err)
	}

	// A restart: Nomad starts the same task again after DestroyTask (the
	// harness's logmon is done with the first run: the result goes to a file).
	again := sh(connectTaskAPI("restarted") + " > /local/restarted")
	if err := task.EncodeConcreteDriverConfig(&again); err != nil {
		t.Fatal(err)
	}
	start(t, h, task)
	waitExit(t, h, task.ID, 20*time.Second)
	b, err := os.ReadFile(filepath.Join(task.TaskDir().LocalDir, "restarted"))
	if err != nil || !strings.HasPrefix(string(b), "restarted: refused") {
		t.Errorf("the restarted task: %q (%v), want refused", b, err)
	}
	if err := h.DestroyTask(task.ID, true); err != nil {
		t.Fatal(err)
	}
	if n := mountsAt(t, sock); n != 0 {
		t.Fatalf("%d mount(s) left at %s after the second DestroyTask", n, sock)
	}
}

// The cover outlives the plugin (it is the agent's mount namespace's), and
// the recovering plugin's DestroyTask takes it off.
func TestHarnessTaskAPICoverAcrossPluginRestart(t *testing.T) {
	needRoot(t)
	state := stateDir(t)
	h1, _ := newHarness(t, Config{StateDir: state, TaskAPI: taskAPIDeny})
	task := newTask(t, h1, "survivor", sh(`while [ ! -e /local/go ]; do sleep 0.05; done; `+connectTaskAPI("after")+` > /local/out`))
	sock := filepath.Join(task.TaskDir().SecretsDir, taskAPISocket)
	if _, err := listenTaskAPI(t, task.TaskDir().SecretsDir); err != nil {
		t.Fatal(err)
	}
	handle, _, err := h1.StartTask(task)
	if err != nil {
		t.Fatal(err)
	}
	h1.Kill()
	h2, d2 := newHarness(t, Config{StateDir: state, TaskAPI: taskAPIDeny})
	t.Cleanup(func() { _ = d2.DestroyTask(task.ID, true) })
	if err := h2.RecoverTask(handle); err != nil {
		t.Fatal(err)
	}
	if n := mountsAt(t, sock); n != 1 {
		t.Fatalf("%d mounts at %s after the plugin's restart, want the cover", n, sock)
	}
	if err := os.WriteFile(filepath.Join(task.TaskDir().LocalDir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitExit(t, h2, task.ID, 20*time.Second)
	if b, err := os.ReadFile(filepath.Join(task.TaskDir().LocalDir, "out")); err != nil || !strings.HasPrefix(string(b), "after: refused") {
		t.Errorf("the recovered task: %q (%v), want refused", b, err)
	}
	if err := h2.DestroyTask(task.ID, true); err != nil {
		t.Fatal(err)
	}
	if n := mountsAt(t, sock); n != 0 {
		t.Fatalf("%d mount(s) left at %s after the recovering plugin's DestroyTask", n, sock)
	}
}

// With task_api = "allow", and by default without managed egress rules, a
// task reaches the Task API through the read-only /secrets.
func TestHarnessTaskAPIVisible(t *testing.T) {
	for _, setting := range []string{taskAPIAllow, ""} {
		h, _ := newHarness(t, Config{TaskAPI: setting})
		task := newTask(t, h, "api", sh(connectTaskAPI("once")))
		if _, err := listenTaskAPI(t, task.TaskDir().SecretsDir); err != nil {
			t.Fatal(err)
		}
		start(t, h, task)
		waitExit(t, h, task.ID, 20*time.Second)
		waitLog(t, task, "stdout", "once: ")
		if out := logs(t, task, "stdout"); !strings.Contains(out, "once: connected "+agentGreeting) {
			t.Errorf("task_api %q: the task did not reach the Task API: %q", setting, out)
		}
	}
}

// A failed start takes its cover off again.
func TestHarnessTaskAPIFailedStartUncovers(t *testing.T) {
	h, _ := newHarness(t, Config{TaskAPI: taskAPIDeny})
	// The sandbox cannot start: its logs dir is a link.
	task := newTask(t, h, "fails", sh("true"))
	plantLogsLink(t, task)
	if _, err := listenTaskAPI(t, task.TaskDir().SecretsDir); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.StartTask(task); err == nil {
		t.Fatal("the task started with a link for its logs dir")
	}
	if n := mountsAt(t, filepath.Join(task.TaskDir().SecretsDir, taskAPISocket)); n != 0 {
		t.Fatalf("a failed start left %d mount(s) on the Task API socket", n)
	}
}

func TestTaskAPISetting(t *testing.T) {
	for _, c := range []struct {
		setting string
		rules   bool
		hidden  bool
	}{
		{"", false, false},
		{"", true, true},
		{taskAPIAuto, true, true},
		{taskAPIAllow, true, false},
		{taskAPIDeny, false, true},
	} {
		conf := Config{TaskAPI: c.setting, TmpSizeMB: 64}
		if c.rules {
			conf.Egress = &EgressConfig{ManageRules: true, Deny: []string{"127.0.0.1:4646"}}
		}
		if err := conf.normalize(); err != nil {
			t.Fatal(err)
		}
		if got := conf.hidesTaskAPI(); got != c.hidden {
			t.Errorf("task_api %q, manage_rules %v: hidden %v, want %v", c.setting, c.rules, got, c.hidden)
		}
	}
	bad := Config{TaskAPI: "maybe", TmpSizeMB: 64}
	if err := bad.normalize(); err == nil || !strings.Contains(err.Error(), "task_api") {
		t.Errorf("task_api = \"maybe\" accepted: %v", err)
	}
	def, err := DefaultConfig()
	if err != nil || def.TaskAPI != taskAPIAuto {
		t.Errorf("default task_api %q (%v), want auto", def.TaskAPI, err)
	}
}

// fakeAllocDir makes <alloc>/task/secrets as the client would, with root's
// modes, below a dir removed when the test ends.
func fakeAllocDir(t *testing.T) (alloc, secrets string) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("mounts need root")
	}
	alloc = t.TempDir()
	secrets = filepath.Join(alloc, "task", "secrets")
	if err := os.MkdirAll(secrets, 0o711); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unhideTaskAPI(alloc, secrets) })
	return alloc, secrets
}

// The cover goes on the socket found below the allocation dir, never
// through a link: a link at api.sock, or in place of secrets/, is refused
// and nothing is mounted anywhere.
func TestHideTaskAPIRefusesLinks(t *testing.T) {
	alloc, secrets := fakeAllocDir(t)
	elsewhere := t.TempDir()
	hostSock := filepath.Join(elsewhere, "s")
	l, err := net.Listen("unix", hostSock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sock := filepath.Join(secrets, taskAPISocket)
	if err := os.Symlink(hostSock, sock); err != nil {
		t.Fatal(err)
	}
	if err := hideTaskAPI(alloc, secrets); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("api.sock as a link to %s: %v, want an error naming the link", hostSock, err)
	}
	if n := mountsAt(t, hostSock); n != 0 {
		t.Errorf("the cover went onto the link's target %s", hostSock)
	}

	// secrets/ itself a link to a dir with a socket.
	os.Remove(sock)
	linked := filepath.Join(alloc, "task", "linked")
	if err := os.Symlink(elsewhere, linked); err != nil {
		t.Fatal(err)
	}
	if err := hideTaskAPI(alloc, linked); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("secrets dir as a link: %v, want an error naming the link", err)
	}
	if n := mountsAt(t, hostSock); n != 0 {
		t.Errorf("the cover went through the secrets link onto %s", hostSock)
	}
	// A link in the path above it.
	if err := hideTaskAPI(alloc, filepath.Join(linked, "sub")); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("a link in the secrets dir's path: %v", err)
	}
}

// hideTaskAPI twice mounts one cover; the client's remove and listen fail
// on it; unhideTaskAPI takes it off and the socket is reachable again.
func TestHideTaskAPIOnceAndBack(t *testing.T) {
	alloc, secrets := fakeAllocDir(t)
	sock := filepath.Join(secrets, taskAPISocket)
	if _, err := listenTaskAPI(t, secrets); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := hideTaskAPI(alloc, secrets); err != nil {
			t.Fatal(err)
		}
	}
	if n := mountsAt(t, sock); n != 1 {
		t.Fatalf("%d mounts at %s after two hides, want 1", n, sock)
	}
	if _, err := net.Dial("unix", sock); err == nil {
		t.Error("connected to the covered socket")
	}
	if err := os.RemoveAll(sock); err == nil || !strings.Contains(err.Error(), syscall.EBUSY.Error()) {
		t.Errorf("RemoveAll of the covered socket: %v, want EBUSY", err)
	}
	if err := os.WriteFile(sock, []byte("x"), 0o600); err == nil {
		t.Error("wrote through the cover")
	}
	if err := unhideTaskAPI(alloc, secrets); err != nil {
		t.Fatal(err)
	}
	if n := mountsAt(t, sock); n != 0 {
		t.Fatalf("%d mounts left at %s", n, sock)
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("the socket is not back: %v", err)
	}
	defer c.Close()
	if line, _ := bufio.NewReader(c).ReadString('\n'); line != agentGreeting+"\n" {
		t.Fatalf("the socket answered %q", line)
	}
}

// Where the client made no socket, a placeholder is covered, so that an
// agent restart cannot make one there while the task runs.
func TestHideTaskAPIWithoutSocket(t *testing.T) {
	alloc, secrets := fakeAllocDir(t)
	sock := filepath.Join(secrets, taskAPISocket)
	if err := hideTaskAPI(alloc, secrets); err != nil {
		t.Fatal(err)
	}
	if n := mountsAt(t, sock); n != 1 {
		t.Fatalf("%d mounts at %s, want the cover", n, sock)
	}
	if err := os.RemoveAll(sock); err == nil {
		t.Error("the client could remove the placeholder")
	}
	if _, err := listenTaskAPI(t, secrets); err == nil {
		t.Error("the client could listen where the placeholder is")
	}
}
