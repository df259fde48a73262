package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// consulAgent is a Consul dev agent of the test's own, on loopback only.
type consulAgent struct {
	addr string // 127.0.0.1:port of its HTTP API
	cmd  *exec.Cmd
	log  string
}

// startConsul starts a Consul dev agent (built by `make consul`, or
// CONSUL_BIN) bound to 127.0.0.1 and stops it when the test ends. Script
// checks need it: Nomad runs them only for services registered in Consul.
func startConsul(t *testing.T) *consulAgent {
	t.Helper()
	bin := os.Getenv("CONSUL_BIN")
	if bin == "" {
		bin = filepath.Join(repoRoot, ".cache", "consul", "consul")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no Consul agent at %s (run make consul, or set CONSUL_BIN): %v", bin, err)
	}
	ports, err := freePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := &consulAgent{addr: fmt.Sprintf("127.0.0.1:%d", ports[0]), log: filepath.Join(dir, "consul.log")}
	logf, err := os.Create(c.log)
	if err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(bin, "agent", "-dev",
		"-bind", "127.0.0.1", "-client", "127.0.0.1", "-advertise", "127.0.0.1",
		"-http-port", fmt.Sprint(ports[0]), "-serf-lan-port", fmt.Sprint(ports[1]),
		"-serf-wan-port", fmt.Sprint(ports[2]), "-server-port", fmt.Sprint(ports[3]),
		"-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1", "-disable-host-node-id",
		"-hcl", "disable_update_check = true")
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			c.cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	ok := eventually(30*time.Second, 250*time.Millisecond, func() bool {
		var leader string
		return c.get("/v1/status/leader", &leader) == nil && leader != ""
	})
	if !ok {
		b, _ := os.ReadFile(c.log)
		t.Fatalf("consul has no leader after 30 s:\n%s", b)
	}
	return c
}

func (c *consulAgent) get(path string, v any) error {
	resp, err := http.Get("http://" + c.addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

type consulCheck struct {
	Name, Status, Output, ServiceName string
}

// checkJob is a service job whose task registers a service in Consul with a
// script check; Nomad's deployment health follows the check.
const checkJob = `job %[1]q {
  group "g" {
    update {
      health_check      = "checks"
      min_healthy_time  = "2s"
      healthy_deadline  = "25s"
      progress_deadline = "1m"
      auto_revert       = false
    }
` + runOnce + `    task "app" {
      driver = "bwrap-r"
      config {
        command = "/bin/sh"
        args    = ["-c", "echo ready > /local/marker; exec sleep 600"]
      }
      service {
        name     = %[1]q
        provider = "consul"
        check {
          name     = "script"
          type     = "script"
          command  = "/bin/sh"
          args     = ["-c", %[2]q]
          interval = "2s"
          timeout  = "10s"
        }
      }
      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
`

// The passing script holds only inside the task's sandbox: its /local (the
// marker the task wrote), a pool UID, no_new_privs, and a pid namespace
// where the task's sleep is pid 2 (bwrap's init is 1).
const passingScript = `test "$(cat /local/marker)" = ready && u=$(id -u) && [ "$u" -ge 80000 ] && grep -q '^NoNewPrivs:[[:space:]]*1' /proc/self/status && grep -q '^sleep' /proc/2/comm && echo "in the sandbox as uid $u"`

func TestScriptChecks(t *testing.T) {
	setup(t)
	c := startConsul(t)
	a := newAgentOpts(t, agentOpts{server: true, extra: fmt.Sprintf("\nconsul {\n  address = %q\n}\n", c.addr)})
	if err := a.waitDriver(true, time.Minute); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		job, script, consulStatus string
		healthy                   bool
		output                    string
	}{
		{"check-pass", passingScript, "passing", true, "in the sandbox as uid"},
		{"check-fail", `echo "failing on purpose"; exit 2`, "critical", false, "failing on purpose"},
		// On the host (not in the sandbox) this script would pass: the
		// check must run where the task runs.
		{"check-host", `test -d /etc/nomad.d -o -e /root && echo "ran on the host" || { echo "no /root here"; exit 2; }`, "critical", false, "no /root here"},
	} {
		t.Run(tc.job, func(t *testing.T) {
			a.runJob(t, writeJob(t, tc.job, fmt.Sprintf(checkJob, tc.job, tc.script)), tc.job)

			var check consulCheck
			ok := eventually(90*time.Second, time.Second, func() bool {
				// The local agent's view: the catalog takes a changed output
				// only with a changed status, or every check_update_interval.
				var checks map[string]consulCheck
				if c.get("/v1/agent/checks", &checks) != nil {
					return false
				}
				for _, ch := range checks {
					if ch.ServiceName == tc.job {
						check = ch
					}
				}
				return check.Status == tc.consulStatus && strings.Contains(check.Output, tc.output)
			})
			t.Logf("consul: %s check %q: %s, output %q", tc.job, check.Name, check.Status, strings.TrimSpace(check.Output))
			if !ok {
				t.Fatalf("consul's check of %s: %s %q, want %s with %q", tc.job, check.Status, check.Output, tc.consulStatus, tc.output)
			}

			al := a.waitAlloc(t, tc.job, time.Minute, "with a deployment health", func(al *allocation) bool {
				return al.DeploymentStatus != nil && al.DeploymentStatus.Healthy != nil
			})
			healthy := *al.DeploymentStatus.Healthy
			t.Logf("nomad: allocation %s healthy = %v", al.ID, healthy)
			if healthy != tc.healthy {
				t.Errorf("nomad's allocation health %v, want %v:\n%s", healthy, tc.healthy, al)
			}
		})
	}
}
