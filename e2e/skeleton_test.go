package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func example(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(repoRoot, "example", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBatchJobLogs runs example/batch.nomad.hcl to completion and compares
// the task's log with what the same R script prints on the host.
func TestBatchJobLogs(t *testing.T) { batchJobLogs(t, sharedAgent(t)) }

func batchJobLogs(t *testing.T, a *agent) {
	t.Helper()
	// The script of example/batch.nomad.hcl, after HCL's unescaping.
	host, err := exec.Command("Rscript", "-e", `cat(R.version.string, '\n'); cat('sum:', sum(1:100), '\n')`).Output()
	if err != nil {
		t.Fatalf("Rscript on the host: %v", err)
	}
	want := string(host)
	if !strings.Contains(want, "sum: 5050") {
		t.Fatalf("Rscript on the host printed %q", want)
	}

	start := time.Now()
	a.runJob(t, example(t, "batch.nomad.hcl"), "batch")
	al := a.waitAlloc(t, "batch", 2*time.Minute, "terminal", terminal)
	t.Logf("batch: %s after %v", al.ClientStatus, time.Since(start).Round(time.Millisecond))
	if al.ClientStatus != "complete" {
		t.Fatalf("want client status complete, got:\n%s", al)
	}
	term := al.events("compute", "Terminated")
	if len(term) != 1 || term[0].Details["exit_code"] != "0" {
		t.Fatalf("want one Terminated event with exit code 0, got:\n%s", al)
	}

	var got string
	eventually(10*time.Second, 250*time.Millisecond, func() bool {
		got = a.mustNomad(t, "alloc", "logs", al.ID, "compute")
		return got == want
	})
	if got != want {
		t.Fatalf("nomad alloc logs:\n got %q\nwant %q (Rscript on the host)", got, want)
	}
}

// TestShinyAnswers runs example/shiny.nomad.hcl, fetches the app's page on
// the port Nomad assigned, stops the job and checks that none of the task's
// processes survive.
func TestShinyAnswers(t *testing.T) { shinyAnswers(t, sharedAgent(t)) }

func shinyAnswers(t *testing.T, a *agent) {
	t.Helper()
	start := time.Now()
	a.runJob(t, example(t, "shiny.nomad.hcl"), "shiny")
	al := a.waitAlloc(t, "shiny", 2*time.Minute, "running", func(al *allocation) bool {
		if terminal(al) {
			t.Fatalf("shiny ended:\n%s", al)
		}
		ts := al.TaskStates["shiny"]
		return al.ClientStatus == "running" && ts != nil && ts.State == "running"
	})

	port, hostIP := al.port("http")
	if port == 0 {
		t.Fatalf("allocation %s has no port labelled http: %+v", al.ID, al.AllocatedResources.Shared.Ports)
	}
	if hostIP != "127.0.0.1" {
		t.Errorf("port http on %s, want 127.0.0.1", hostIP)
	}

	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	body, last, ok := waitHTTP(url, 60*time.Second)
	if !ok {
		logs, _ := a.nomad("alloc", "logs", "-stderr", al.ID, "shiny")
		t.Fatalf("GET %s: no 200 after 60s (last: %s); task stderr:\n%s", url, last, logs)
	}
	t.Logf("shiny answered on port %d after %v", port, time.Since(start).Round(time.Millisecond))
	if !strings.Contains(body, "Hello from bwrap-r") {
		t.Fatalf("GET %s: the page lacks the app's title:\n%.2000s", url, body)
	}

	// The task's processes: those of the UID that listens on the port.
	uid, err := listenerUID(port)
	if err != nil {
		t.Fatal(err)
	}
	if uid < 80000 || uid > 89999 {
		t.Errorf("the task listens as uid %d, want a dynamic workload uid in 80000-89999", uid)
	}
	procs := procsOfUID(uid)
	if len(procs) == 0 {
		t.Fatalf("no process of uid %d while the task runs", uid)
	}
	t.Logf("task processes (uid %d): %s", uid, strings.Join(procs, "; "))
	wantPreloadedLaunch(t, a, procs)

	a.mustNomad(t, "job", "stop", "-detach", "shiny")
	al = a.waitAlloc(t, "shiny", time.Minute, "terminal", terminal)
	if al.ClientStatus != "complete" {
		t.Errorf("after job stop: want client status complete, got:\n%s", al)
	}
	if !eventually(15*time.Second, 250*time.Millisecond, func() bool {
		procs = procsOfUID(uid)
		return len(procs) == 0
	}) {
		t.Fatalf("15s after the stop, processes of uid %d remain: %s", uid, strings.Join(procs, "; "))
	}
}

// wantPreloadedLaunch checks, for a plugin built with the preloaded
// launcher (make build; make test sets BWRAP_R_WANT_PRELOAD), that the node
// says so and that the task's bwrap monitor (among procs, "PID NAME") came
// from a preloaded spare: it maps the launcher object.
func wantPreloadedLaunch(t *testing.T, a *agent, procs []string) {
	t.Helper()
	if os.Getenv("BWRAP_R_WANT_PRELOAD") == "" {
		return
	}
	d, err := a.driver()
	if err != nil || d == nil {
		t.Fatalf("the node's bwrap-r driver: %v", err)
	}
	if v := d.Attributes["driver.bwrap-r.launcher.preloaded"]; v != "true" {
		t.Errorf("driver.bwrap-r.launcher.preloaded = %q, want true", v)
	}
	for _, p := range procs {
		pid, name, _ := strings.Cut(p, " ")
		if name != "bwrap" {
			continue
		}
		maps, err := os.ReadFile("/proc/" + pid + "/maps")
		if err == nil && strings.Contains(string(maps), "memfd:bwrap-r-launcher") {
			return
		}
	}
	t.Errorf("no bwrap of the task maps the preloaded launcher: %s", strings.Join(procs, "; "))
}

// TestStandardClient runs the examples on a client set up as Nomad sets one
// up and its hardening guide asks: not in dev mode, a data_dir Nomad makes
// itself (0700, root's), and an agent started with umask 077. No task UID
// can walk a path below the data_dir.
func TestStandardClient(t *testing.T) {
	setup(t)
	a := newAgentOpts(t, agentOpts{server: true, umask: "077"})
	data := filepath.Join(a.dir, "data")
	fi, err := os.Stat(data)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("data_dir %s is %v, want Nomad's 0700", data, fi.Mode().Perm())
	}
	t.Run("batch", func(t *testing.T) { batchJobLogs(t, a) })
	t.Run("shiny", func(t *testing.T) { shinyAnswers(t, a) })
}

// listenerUID returns the UID of the TCP socket listening on the port.
func listenerUID(port int) (int, error) {
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0, err
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local rem st queues timer retrnsmt uid ...
			fs := strings.Fields(line)
			if len(fs) < 8 || fs[3] != "0A" {
				continue
			}
			i := strings.LastIndexByte(fs[1], ':')
			if p, err := strconv.ParseInt(fs[1][i+1:], 16, 32); err != nil || int(p) != port {
				continue
			}
			return strconv.Atoi(fs[7])
		}
	}
	return 0, fmt.Errorf("nothing listens on port %d", port)
}

// procsOfUID lists the processes (as "PID NAME") any of whose UIDs is uid.
func procsOfUID(uid int) []string {
	var procs []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "status"))
		if err != nil {
			continue // gone
		}
		var name string
		for _, line := range strings.Split(string(b), "\n") {
			fs := strings.Fields(line)
			if len(fs) == 0 {
				continue
			}
			switch fs[0] {
			case "Name:":
				name = strings.Join(fs[1:], " ")
			case "Uid:":
				for _, u := range fs[1:] {
					if u == strconv.Itoa(uid) {
						procs = append(procs, filepath.Base(d)+" "+name)
						break
					}
				}
			}
		}
	}
	return procs
}

// TestBadTaskConfigRefused submits task configs that the plugin's schema
// rejects. Nomad checks a driver's task config on the client, so the job is
// refused either at submission or by the client, with a "Failed Validation"
// task event; either way the message must name the problem.
func TestBadTaskConfigRefused(t *testing.T) {
	a := sharedAgent(t)
	for _, tc := range []struct {
		name, config, mention string
	}{
		{"no-command", `args = ["-e", "1"]`, "command"},
		{"unknown-key", "comand = \"x\"\n        command = \"Rscript\"", "comand"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := "bad-" + tc.name
			file := writeJob(t, job, fmt.Sprintf(`job %q {
  type = "batch"
  group "g" {
`+runOnce+`    task "t" {
      driver = "bwrap-r"
      config {
        %s
      }
    }
  }
}
`, job, tc.config))
			out, err := a.nomad("job", "run", "-detach", file)
			t.Cleanup(func() { a.stopJob(job) })
			if err != nil {
				t.Logf("nomad job run refused the job: %v\n%s", err, out)
				if !strings.Contains(out, tc.mention) {
					t.Fatalf("the refusal does not mention %q", tc.mention)
				}
				return
			}
			al := a.waitAlloc(t, job, time.Minute, "terminal", terminal)
			if al.ClientStatus != "failed" {
				t.Fatalf("want the allocation failed, got:\n%s", al)
			}
			if started := al.events("t", "Started"); len(started) != 0 {
				t.Errorf("the task started:\n%s", al)
			}
			evs := al.events("t", "Failed Validation")
			if len(evs) == 0 {
				t.Fatalf("no Failed Validation event:\n%s", al)
			}
			t.Logf("Nomad says: %s", evs[0].DisplayMessage)
			if !strings.Contains(evs[0].DisplayMessage, tc.mention) {
				t.Fatalf("the validation error does not mention %q: %s", tc.mention, evs[0].DisplayMessage)
			}
		})
	}
}

// TestCommandNotFound runs a task whose command does not exist: the
// allocation fails and Nomad shows the command's name.
func TestCommandNotFound(t *testing.T) {
	a := sharedAgent(t)
	const cmd = "no-such-program-xyz"
	file := writeJob(t, "notfound", `job "notfound" {
  type = "batch"
  group "g" {
`+runOnce+`    task "t" {
      driver = "bwrap-r"
      config {
        command = "`+cmd+`"
      }
    }
  }
}
`)
	a.runJob(t, file, "notfound")
	al := a.waitAlloc(t, "notfound", time.Minute, "terminal", terminal)
	if al.ClientStatus != "failed" {
		t.Fatalf("want the allocation failed, got:\n%s", al)
	}
	var msgs []string
	for _, typ := range []string{"Driver Failure", "Setup Failure"} {
		for _, e := range al.events("t", typ) {
			msgs = append(msgs, e.DisplayMessage)
		}
	}
	t.Logf("failure events: %q", msgs)
	if !strings.Contains(strings.Join(msgs, "\n"), cmd) {
		t.Errorf("no Driver Failure or Setup Failure event names %s:\n%s", cmd, al)
	}
	status := a.mustNomad(t, "alloc", "status", al.ID)
	if !strings.Contains(status, cmd) {
		t.Errorf("nomad alloc status does not name %s:\n%s", cmd, status)
	}
}

// TestBwrapMissingUndetected starts an agent whose bwrap_path does not exist:
// the node must show bwrap-r as undetected or unhealthy, saying why.
func TestBwrapMissingUndetected(t *testing.T) {
	a := newAgent(t, `bwrap_path = "/nonexistent/bwrap"`)
	d, err := a.driver()
	if err != nil || d == nil {
		t.Fatalf("driver info: %+v, %v", d, err)
	}
	t.Logf("bwrap-r on the node: detected %v, healthy %v: %s", d.Detected, d.Healthy, d.HealthDescription)
	if d.Detected && d.Healthy {
		t.Errorf("bwrap-r is detected and healthy without bwrap")
	}
	if !strings.Contains(d.HealthDescription, "/nonexistent/bwrap") {
		t.Errorf("the health description does not name /nonexistent/bwrap: %q", d.HealthDescription)
	}
	out := a.mustNomad(t, "node", "status", "-verbose", a.nodeID)
	if !strings.Contains(out, "/nonexistent/bwrap") {
		t.Errorf("nomad node status -verbose does not show the reason:\n%s", out)
	}
}
