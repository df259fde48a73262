package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// apiProbe is a shell line that connects to the Task API's socket and
// prints "connected" or the error.
const apiProbe = `perl -MIO::Socket::UNIX -e 'IO::Socket::UNIX->new(Peer => "/secrets/api.sock") ? print "connected\n" : print "refused: $!\n"'`

// TestSecretsAndTaskAPI runs a one-node cluster whose plugin manages egress
// rules denying the agent's own HTTP address, and shows through the real
// client:
//   - token-link: a task that links /secrets/nomad_token (and a second
//     identity's file) to host files and fails does not have the client
//     write through the links when it restarts;
//   - task-api: the Task API socket, which reaches that denied address, is
//     hidden from a task (task_api = "auto"), also after the agent restarts
//     and its api hook tries to make the socket again, and the cover goes
//     when the task does.
func TestSecretsAndTaskAPI(t *testing.T) {
	setup(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft not installed: the managed egress rules need it")
	}
	// Registered before the agent: it runs after the agent's stop.
	t.Cleanup(func() { escDeleteNftTables(t) })
	const lo, hi = 84000, 84099
	a := newAgentOpts(t, agentOpts{
		server: true,
		client: fmt.Sprintf("  users {\n    dynamic_user_min = %d\n    dynamic_user_max = %d\n  }", lo, hi),
		pluginFor: func(http int) string {
			return fmt.Sprintf(`    task_uid_range = "%d-%d"
    egress {
      metadata     = ""
      manage_rules = true
      deny         = ["127.0.0.1:%d"]
      remove_rules_on_shutdown = true
    }`, lo, hi, http)
		},
	})
	if err := a.waitDriver(true, time.Minute); err != nil {
		d, _ := a.driver()
		t.Fatalf("bwrap-r not healthy with managed egress rules: %v (%+v)", err, d)
	}

	t.Run("token-link", func(t *testing.T) { secretsTokenLink(t, a) })
	t.Run("task-api", func(t *testing.T) { taskAPIAcrossAgentRestart(t, a) })
}

func secretsTokenLink(t *testing.T, a *agent) {
	rnd := escRand(t, 6)
	// One canary exists (a write through the link would truncate it), one
	// does not (a write would create it).
	existing := "/tmp/bwrap-r-canary-" + rnd + "-token"
	missing := "/tmp/bwrap-r-canary-" + rnd + "-jwt"
	const content = "canary: only root writes this\n"
	if err := os.WriteFile(existing, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(existing); os.Remove(missing) })

	const job = "token-link"
	script := fmt.Sprintf(`if [ -e /local/ran ]; then echo second-run; head -c 3 /secrets/nomad_token; echo; exit 0; fi
touch /local/ran
ls -la /secrets
ln -sf %s /secrets/nomad_token && echo planted-token
ln -sf %s /secrets/nomad_extra.jwt && echo planted-jwt
exit 1`, existing, missing)
	a.runJob(t, writeJob(t, job, fmt.Sprintf(`job %q {
  type = "batch"
  group "g" {
    restart {
      attempts = 1
      delay    = "1s"
      mode     = "fail"
    }
    reschedule {
      attempts  = 0
      unlimited = false
    }
    task "t" {
      driver = "bwrap-r"
      identity {
        file = true
      }
      identity {
        name = "extra"
        aud  = ["bwrap-r-e2e"]
        file = true
      }
      config {
        command = "/bin/sh"
        args    = ["-c", %q]
      }
      resources {
        cpu    = 100
        memory = 32
      }
    }
  }
}
`, job, script)), job)
	al := a.waitAlloc(t, job, 2*time.Minute, "terminal", terminal)
	logs, _ := a.nomad("alloc", "logs", al.ID, "t")
	stderr, _ := a.nomad("alloc", "logs", "-stderr", al.ID, "t")
	t.Logf("%s\nstdout:\n%s\nstderr:\n%s", al, logs, stderr)
	if ts := al.TaskStates["t"]; ts == nil || ts.Restarts != 1 {
		t.Errorf("want the task restarted once (its first run fails), got %+v", ts)
	}
	if strings.Contains(logs, "planted") {
		t.Errorf("the task planted a link in /secrets: %q", logs)
	}
	if !strings.Contains(logs, "second-run\neyJ") {
		t.Errorf("the second run did not read its token (a JWT) from /secrets: %q", logs)
	}
	if b, err := os.ReadFile(existing); err != nil || string(b) != content {
		t.Errorf("canary %s now holds %q (%v): the client wrote through a link", existing, b, err)
	}
	if fi, err := os.Lstat(existing); err == nil {
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || fi.Mode().Perm() != 0o644 {
			t.Errorf("canary %s is now uid %d mode %v", existing, st.Uid, fi.Mode().Perm())
		}
	}
	if _, err := os.Lstat(missing); err == nil {
		t.Errorf("%s exists: the client created it through a link", missing)
	}
}

func taskAPIAcrossAgentRestart(t *testing.T, a *agent) {
	const job = "task-api"
	script := `i=0; while :; do i=$((i+1)); echo "probe $i: $(` + apiProbe + `)"; sleep 1; done`
	a.runJob(t, writeJob(t, job, shJob(job, "service", script, 32)), job)
	al := a.waitRunning(t, job, "t", time.Minute)
	allocDir := escFind(filepath.Join(a.dir, "data"), al.ID, true, 3)
	if allocDir == "" {
		t.Fatalf("no alloc dir %s below %s", al.ID, a.dir)
	}
	sock := filepath.Join(allocDir, "t", "secrets", "api.sock")
	probes := func() []string {
		out, _ := a.nomad("alloc", "logs", al.ID, "t")
		var lines []string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "probe ") {
				lines = append(lines, l)
			}
		}
		return lines
	}
	waitProbes := func(n int) []string {
		t.Helper()
		var lines []string
		if !eventually(30*time.Second, 500*time.Millisecond, func() bool {
			lines = probes()
			return len(lines) >= n
		}) {
			t.Fatalf("the task printed %d probe lines, want %d: %q", len(lines), n, lines)
		}
		return lines
	}
	waitProbes(2)
	if n := mountsAtPath(sock); n != 1 {
		t.Errorf("%d mounts at %s, want the plugin's cover", n, sock)
	}

	if !a.interrupt() {
		t.Fatal("the agent ignored SIGINT")
	}
	logSize := fileSize(a.log)
	if err := a.launch(); err != nil {
		t.Fatal(err)
	}
	if err := a.waitDriver(true, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	// The restored client's api hook tried to make the socket again.
	var hookLog string
	if !eventually(30*time.Second, 500*time.Millisecond, func() bool {
		b, _ := os.ReadFile(a.log)
		if int64(len(b)) > logSize {
			b = b[logSize:]
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "error creating task api socket") && strings.Contains(l, al.ID) {
				hookLog = l
				return true
			}
		}
		return false
	}) {
		t.Errorf("the restarted agent's log shows no failed re-creation of %s", sock)
	}
	t.Logf("after the restart: %s", hookLog)
	// Three probes more, all after the hook's new try.
	after := waitProbes(len(probes()) + 3)
	t.Logf("probes: %q", after)
	for _, l := range after {
		if !strings.Contains(l, "refused") {
			t.Errorf("the task reached the Task API: %q", l)
		}
	}
	if al := a.waitRunning(t, job, "t", time.Minute); al.TaskStates["t"].Restarts != 0 {
		t.Errorf("the task restarted across the agent's restart:\n%s", al)
	}

	a.stopJob(job)
	a.waitAlloc(t, job, time.Minute, "terminal", terminal)
	if !eventually(30*time.Second, 250*time.Millisecond, func() bool { return mountsAtPath(sock) == 0 }) {
		t.Errorf("the cover at %s outlived its task", sock)
	}
}

// TestTaskAPIVisibleWithoutRules is the control: with the plugin's defaults
// (no managed egress rules, task_api = "auto") a task reaches the Task API,
// which answers HTTP.
func TestTaskAPIVisibleWithoutRules(t *testing.T) {
	a := sharedAgent(t)
	const job = "task-api-visible"
	script := apiProbe + `; curl -s -m 5 --unix-socket /secrets/api.sock http://localhost/v1/agent/self; echo`
	a.runJob(t, writeJob(t, job, shJob(job, "batch", script, 32)), job)
	al := a.waitAlloc(t, job, time.Minute, "terminal", terminal)
	logs, _ := a.nomad("alloc", "logs", al.ID, "t")
	t.Logf("%s\n%s", al, logs)
	// Without a token the Task API refuses the request, but it answers.
	if !strings.HasPrefix(logs, "connected\n") || len(strings.TrimSpace(strings.TrimPrefix(logs, "connected\n"))) == 0 {
		t.Errorf("the task did not reach the Task API: %q", logs)
	}
}

// mountsAtPath counts the mounts at path in this process's (the host's)
// mount namespace.
func mountsAtPath(path string) int {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return -1
	}
	n := 0
	for _, line := range bytes.Split(b, []byte("\n")) {
		if f := strings.Fields(string(line)); len(f) > 4 && f[4] == path {
			n++
		}
	}
	return n
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
