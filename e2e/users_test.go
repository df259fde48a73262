package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDynamicUsers runs two tasks of one group in an agent whose dynamic
// workload users are 81000-81099: each task runs as a UID of its own from
// that range, on the host too. A task asking for root, or for a user that is
// not a task identity of the plugin's config, is refused.
func TestDynamicUsers(t *testing.T) {
	const lo, hi = 81000, 81099
	a := newAgentOpts(t, agentOpts{client: fmt.Sprintf(`  users {
    dynamic_user_min = %d
    dynamic_user_max = %d
  }`, lo, hi)})

	t.Run("two-tasks", func(t *testing.T) {
		const job = "users"
		task := func(name string) string {
			return fmt.Sprintf(`    task %q {
      driver = "bwrap-r"
      config {
        command = "/bin/sh"
        args    = ["-c", "id -u; id -g; exec sleep 300"]
      }
      resources {
        cpu    = 50
        memory = 32
      }
    }
`, name)
		}
		file := writeJob(t, job, `job "users" {
  type = "service"
  group "g" {
    restart {
      attempts = 0
      mode     = "fail"
    }
`+task("one")+task("two")+`  }
}
`)
		a.runJob(t, file, job)
		al := a.waitAlloc(t, job, time.Minute, "running", func(al *allocation) bool {
			if terminal(al) {
				t.Fatalf("the allocation ended:\n%s", al)
			}
			n := 0
			for _, ts := range al.TaskStates {
				if ts.State == "running" {
					n++
				}
			}
			return n == 2
		})

		uids := map[string]int{}
		for _, name := range []string{"one", "two"} {
			var out string
			// "running" comes before the command prints; a loaded machine
			// may take a while.
			eventually(30*time.Second, 250*time.Millisecond, func() bool {
				out, _ = a.nomad("alloc", "logs", al.ID, name)
				return len(strings.Fields(out)) >= 2
			})
			fs := strings.Fields(out)
			if len(fs) < 2 {
				t.Fatalf("task %s printed %q, want its uid and gid", name, out)
			}
			uid, err1 := strconv.Atoi(fs[0])
			gid, err2 := strconv.Atoi(fs[1])
			if err1 != nil || err2 != nil {
				t.Fatalf("task %s printed %q, want its uid and gid", name, out)
			}
			t.Logf("task %s: uid %d, gid %d", name, uid, gid)
			if uid < lo || uid > hi {
				t.Errorf("task %s runs as uid %d, outside dynamic_user_min/max %d-%d", name, uid, lo, hi)
			}
			if gid != uid {
				t.Errorf("task %s runs as gid %d, want its uid %d", name, gid, uid)
			}
			uids[name] = uid
		}
		if uids["one"] == uids["two"] {
			t.Errorf("both tasks run as uid %d", uids["one"])
		}

		// On the host: each task's sleep is a process of its UID, all of
		// whose real, effective, saved and filesystem IDs are that UID.
		for name, uid := range uids {
			var procs []string
			eventually(10*time.Second, 250*time.Millisecond, func() bool {
				procs = procsOfUID(uid)
				return len(procs) > 0
			})
			sleeping := false
			for _, p := range procs {
				pid, pname, _ := strings.Cut(p, " ")
				ids, err := procIDs(pid)
				if err != nil {
					continue // gone
				}
				for _, id := range ids {
					if id != uid {
						t.Errorf("task %s: process %s has Uid/Gid lines %v, want all %d", name, p, ids, uid)
						break
					}
				}
				if pname == "sleep" {
					sleeping = true
				}
			}
			t.Logf("task %s: host processes of uid %d: %s", name, uid, strings.Join(procs, "; "))
			if !sleeping {
				t.Errorf("task %s: no sleep process of uid %d on the host (%v)", name, uid, procs)
			}
		}
	})

	// Root, and any user that is not a task identity of the plugin's
	// config, fail the task at start with what the operator can allow.
	for _, c := range []struct{ name, user, want string }{
		{"root-refused", "root", "root"},
		{"nobody-refused", "nobody", `user "nobody" (uid 65534) is not a task identity on this node`},
		{"outside-range-refused", "nomad-100000", `allowed_uids = "100000"`},
	} {
		t.Run(c.name, func(t *testing.T) { refusedUser(t, a, "users-"+c.name, c.user, c.want) })
	}
}

// refusedUser runs a batch job as user and wants it failed before its task
// started, with a failure event holding want that alloc status shows too.
func refusedUser(t *testing.T, a *agent, job, user, want string) {
	t.Helper()
	file := writeJob(t, job, fmt.Sprintf(`job %q {
  type = "batch"
  group "g" {
`+runOnce+`    task "t" {
      driver = "bwrap-r"
      user   = %q
      config {
        command = "/bin/sh"
        args    = ["-c", "id -u"]
      }
    }
  }
}
`, job, user))
	a.runJob(t, file, job)
	al := a.waitAlloc(t, job, time.Minute, "terminal", terminal)
	if al.ClientStatus != "failed" {
		t.Fatalf("want failed, got:\n%s", al)
	}
	if started := al.events("t", "Started"); len(started) != 0 {
		t.Errorf("the task started:\n%s", al)
	}
	t.Logf("events:\n%s", al.allEvents("t"))
	var failure string
	for _, typ := range []string{"Driver Failure", "Setup Failure"} {
		for _, e := range al.events("t", typ) {
			if strings.Contains(e.DisplayMessage, want) {
				failure = e.DisplayMessage
			}
		}
	}
	if failure == "" {
		t.Errorf("no Driver Failure or Setup Failure event says %q", want)
	}
	status := a.mustNomad(t, "alloc", "status", al.ID)
	if failure != "" && !strings.Contains(status, failure[strings.LastIndex(failure, ":")+1:]) {
		t.Errorf("nomad alloc status does not show the failure %q:\n%s", failure, status)
	}
	// A task that ran printed its uid; one that never started has no logs.
	if logs, err := a.nomad("alloc", "logs", al.ID, "t"); err == nil && strings.TrimSpace(logs) != "" {
		t.Errorf("the task ran: %q", logs)
	}
}

// procIDs returns the real, effective, saved and filesystem UIDs and GIDs of
// a process, from /proc/PID/status.
func procIDs(pid string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	if err != nil {
		return nil, err
	}
	var ids []int
	for _, line := range strings.Split(string(b), "\n") {
		fs := strings.Fields(line)
		if len(fs) == 5 && (fs[0] == "Uid:" || fs[0] == "Gid:") {
			for _, f := range fs[1:] {
				n, err := strconv.Atoi(f)
				if err != nil {
					return nil, err
				}
				ids = append(ids, n)
			}
		}
	}
	if len(ids) != 8 {
		return nil, fmt.Errorf("/proc/%s/status: no Uid and Gid lines", pid)
	}
	return ids, nil
}

// A task's dynamic workload user has a name in its sandbox (the launcher
// writes /etc/passwd with it, read-only and root's), and a job cannot use
// its user field to put a line of its own in that file.
func TestTaskUserNamedInItsSandbox(t *testing.T) {
	a := sharedAgent(t)
	const job = "named-user"
	a.runJob(t, writeJob(t, job, batchJob(job, "", `        command = "/bin/sh"
        args    = ["-c", "id -un; grep -c \"^$(id -un):x:$(id -u):$(id -g)::/local:\" /etc/passwd; (echo evil:x:0:0::/:/bin/sh >> /etc/passwd) 2>/dev/null && echo WROTE; stat -c %a-%U /etc/passwd"]`)), job)
	al := a.waitAlloc(t, job, 2*time.Minute, "terminal", terminal)
	logs := a.mustNomad(t, "alloc", "logs", al.ID, "t")
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	if al.ClientStatus != "complete" || len(lines) != 3 || !strings.HasPrefix(lines[0], "nomad-") || lines[1] != "1" || lines[2] != "644-nobody" {
		t.Fatalf("want complete, the task's name, its one entry and a read-only root file (root is nobody in the sandbox); got %s, logs %q, events %s", al.ClientStatus, logs, al.allEvents("t"))
	}

	// The job's user field names a line of passwd: refused, never written.
	const attack = "named-user-inject"
	hcl := strings.Replace(batchJob(attack, "", `        command = "/bin/sh"
        args    = ["-c", "cat /etc/passwd"]`), `driver = "bwrap-r"`, `driver = "bwrap-r"
      user   = "nomad-80050:x:0:0::/:/bin/sh\nroot"`, 1)
	a.runJob(t, writeJob(t, attack, hcl), attack)
	al = a.waitAlloc(t, attack, 2*time.Minute, "terminal", terminal)
	events := al.allEvents("t")
	if al.ClientStatus != "failed" || len(al.events("t", "Started")) != 0 || !strings.Contains(events, "user") {
		t.Fatalf("a user field holding a passwd line: want failed before it started, with an event naming the user; got %s, events %s", al.ClientStatus, events)
	}
}
