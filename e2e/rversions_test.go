package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// makeRig builds a rig-shaped R root (<root>/<x.y.z>/{bin,lib/R}) that task
// UIDs can traverse, removed when the test ends. It holds:
//
//   - 4.2.2: Debian's R (/usr/lib/R), as rig would install it. Plain symlinks
//     (bin/R -> /usr/bin/R, lib/R -> /usr/lib/R) run, but Debian's R front
//     end hard-codes R_HOME_DIR=/usr/lib/R: given the plugin's
//     R_HOME=<root>/4.2.2/lib/R it prints "WARNING: ignoring environment
//     value of R_HOME" on stdout and runs as /usr/lib/R. So lib/R is a real
//     directory of symlinks into /usr/lib/R, except lib/R/bin/R, a copy of
//     Debian's front end with R_HOME_DIR=<root>/4.2.2/lib/R (what a rig
//     install has); bin/R links to it, and bin/Rscript is a wrapper that
//     sets RHOME (Rscript's way to find R) and execs /usr/bin/Rscript.
//   - 4.4.1: a fake: shell scripts answering --version and RHOME.
func makeRig(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/lib/R/bin/R"); err != nil {
		t.Fatalf("Debian's R: %v", err)
	}
	root, err := os.MkdirTemp("/tmp", "e2e-rig-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	// /tmp is 1777; the root is made 0700 by MkdirTemp.
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mkdir := func(p string) { must(os.MkdirAll(p, 0o755)) }
	write := func(p, body string) { must(os.WriteFile(p, []byte(body), 0o755)) }

	v := filepath.Join(root, "4.2.2")
	home := filepath.Join(v, "lib", "R")
	mkdir(filepath.Join(v, "bin"))
	mkdir(filepath.Join(home, "bin"))
	link := func(dir, skip, into string) {
		entries, err := os.ReadDir(dir)
		must(err)
		for _, e := range entries {
			if e.Name() != skip {
				must(os.Symlink(filepath.Join(dir, e.Name()), filepath.Join(into, e.Name())))
			}
		}
	}
	link("/usr/lib/R", "bin", home)
	link("/usr/lib/R/bin", "R", filepath.Join(home, "bin"))
	front, err := os.ReadFile("/usr/lib/R/bin/R")
	must(err)
	const line = "\nR_HOME_DIR=/usr/lib/R\n"
	if !strings.Contains(string(front), line) {
		t.Fatalf("/usr/lib/R/bin/R does not set %q", strings.TrimSpace(line))
	}
	write(filepath.Join(home, "bin", "R"), strings.Replace(string(front), line, "\nR_HOME_DIR="+home+"\n", 1))
	must(os.Symlink("../lib/R/bin/R", filepath.Join(v, "bin", "R")))
	write(filepath.Join(v, "bin", "Rscript"), fmt.Sprintf("#!/bin/sh\nRHOME=%s exec /usr/bin/Rscript \"$@\"\n", home))

	fake := filepath.Join(root, "4.4.1")
	mkdir(filepath.Join(fake, "bin"))
	mkdir(filepath.Join(fake, "lib", "R"))
	script := fmt.Sprintf(`#!/bin/sh
case "$1" in
--version) echo "R version 4.4.1 (2024-06-14) -- fake" ;;
RHOME) echo %s ;;
*) echo "fake R 4.4.1" ;;
esac
`, filepath.Join(fake, "lib", "R"))
	write(filepath.Join(fake, "bin", "R"), script)
	write(filepath.Join(fake, "bin", "Rscript"), script)
	return root
}

// batchJob is a batch job of one task, neither restarted nor rescheduled;
// extra goes into the job block, config into the task's config block.
func batchJob(id, extra, config string) string {
	return fmt.Sprintf(`job %q {
  type = "batch"
%s
  group "g" {
`+runOnce+`    task "t" {
      driver = "bwrap-r"
      config {
%s
      }
      resources {
        cpu    = 100
        memory = 256
      }
    }
  }
}
`, id, extra, config)
}

// allEvents joins the display messages of all of a task's events.
func (al *allocation) allEvents(task string) string {
	var msgs []string
	if ts := al.TaskStates[task]; ts != nil {
		for _, e := range ts.Events {
			msgs = append(msgs, e.Type+": "+e.DisplayMessage)
		}
	}
	return strings.Join(msgs, "\n")
}

// TestRVersions starts an agent whose r_root is a rig-shaped root with
// Debian's R as 4.2.2 and a fake 4.4.1, and checks the fingerprint, a pinned
// version, a constraint no node meets and a version the node lacks.
func TestRVersions(t *testing.T) {
	setup(t)
	root := makeRig(t)
	a := newAgentOpts(t, agentOpts{plugin: fmt.Sprintf("    r_root = %q", root)})
	if err := a.waitDriver(true, time.Minute); err != nil {
		t.Fatal(err)
	}

	t.Run("fingerprint", func(t *testing.T) {
		want := map[string]string{
			"driver.bwrap-r.r.versions":      "4.2.2,4.4.1",
			"driver.bwrap-r.r.default":       "4.2.2",
			"driver.bwrap-r.r.minor.4.4":     "4.4.1",
			"driver.bwrap-r.r.minor.4.2":     "4.2.2",
			"driver.bwrap-r.r.version.4.2.2": filepath.Join(root, "4.2.2"),
			"driver.bwrap-r.r.version.4.4.1": filepath.Join(root, "4.4.1"),
		}
		var node struct {
			Attributes map[string]string
			Drivers    map[string]*driverInfo
		}
		if err := a.get("/v1/node/"+a.nodeID, &node); err != nil {
			t.Fatal(err)
		}
		d := node.Drivers["bwrap-r"]
		if d == nil {
			t.Fatalf("no bwrap-r driver on the node")
		}
		t.Logf("bwrap-r health: %s", d.HealthDescription)
		for k, v := range want {
			// Constraints see the node's attributes, where the client
			// copies its drivers' attributes.
			if got := node.Attributes[k]; got != v {
				t.Errorf("node attribute %s = %q, want %q", k, got, v)
			}
			if got := d.Attributes[k]; got != v {
				t.Errorf("bwrap-r driver attribute %s = %q, want %q", k, got, v)
			}
		}
	})

	t.Run("pinned", func(t *testing.T) {
		const job = "rver-42"
		file := writeJob(t, job, batchJob(job, "", `        command   = "Rscript"
        r_version = "4.2"
        args      = ["-e", "cat(R.version.string, '\\n'); cat('home:', R.home(), '\\n')"]`))
		a.runJob(t, file, job)
		al := a.waitAlloc(t, job, 2*time.Minute, "terminal", terminal)
		if al.ClientStatus != "complete" {
			logs, _ := a.nomad("alloc", "logs", "-stderr", al.ID, "t")
			t.Fatalf("want complete, got:\n%s\nstderr:\n%s", al, logs)
		}
		wantEvent := fmt.Sprintf("R 4.2 requested: %s (minor match)", filepath.Join(root, "4.2.2"))
		if !strings.Contains(al.allEvents("t"), wantEvent) {
			t.Errorf("no task event %q:\n%s", wantEvent, al)
		}
		logs := a.mustNomad(t, "alloc", "logs", al.ID, "t")
		t.Logf("task stdout:\n%s", logs)
		if !strings.Contains(logs, "R version 4.2.2") {
			t.Errorf("the task's R is not 4.2.2")
		}
		home := filepath.Join(root, "4.2.2", "lib", "R")
		if !strings.Contains(logs, "home: "+home+" \n") {
			t.Errorf("R.home() is not %s", home)
		}
		if strings.Contains(logs, "WARNING") {
			t.Errorf("R warned")
		}
	})

	t.Run("constraint-unmet", func(t *testing.T) {
		const job = "rver-unmet"
		file := writeJob(t, job, batchJob(job, `  constraint {
    attribute = "${attr.driver.bwrap-r.r.versions}"
    operator  = "set_contains"
    value     = "9.9.9"
  }`, `        command = "Rscript"
        args    = ["-e", "1"]`))
		a.runJob(t, file, job)
		m := a.waitPlacementFailure(t, job, "g")
		const constraint = "${attr.driver.bwrap-r.r.versions} set_contains 9.9.9"
		if m.ConstraintFiltered[constraint] != 1 {
			t.Errorf("ConstraintFiltered = %v, want {%q: 1}", m.ConstraintFiltered, constraint)
		}
		var allocs []struct{ ID string }
		if err := a.get("/v1/job/"+job+"/allocations", &allocs); err != nil {
			t.Fatal(err)
		}
		if len(allocs) != 0 {
			t.Errorf("the job got allocations: %+v", allocs)
		}
		status := a.mustNomad(t, "job", "status", job)
		if !strings.Contains(status, "Placement Failure") || !strings.Contains(status, constraint) {
			t.Errorf("nomad job status shows no placement failure naming %q:\n%s", constraint, status)
		} else {
			i := strings.Index(status, "Placement Failure")
			t.Logf("nomad job status: %s", strings.TrimSpace(status[i:]))
		}
	})

	t.Run("missing-version", func(t *testing.T) {
		const job = "rver-99"
		file := writeJob(t, job, batchJob(job, "", `        command   = "Rscript"
        r_version = "9.9"
        args      = ["-e", "1"]`))
		a.runJob(t, file, job)
		al := a.waitAlloc(t, job, time.Minute, "terminal", terminal)
		if al.ClientStatus != "failed" {
			t.Fatalf("want failed, got:\n%s", al)
		}
		if started := al.events("t", "Started"); len(started) != 0 {
			t.Errorf("the task started:\n%s", al)
		}
		status := a.mustNomad(t, "alloc", "status", al.ID)
		for _, want := range []string{"9.9", "4.2.2, 4.4.1"} {
			if !strings.Contains(status, want) {
				t.Errorf("nomad alloc status does not show %q:\n%s", want, status)
			}
		}
		t.Logf("events:\n%s", al.allEvents("t"))
	})

	t.Run("example", func(t *testing.T) {
		// example/r-version.nomad.hcl pins 4.2 and wants a node with a 4.2.
		const job = "r-version"
		a.runJob(t, example(t, "r-version.nomad.hcl"), job)
		al := a.waitAlloc(t, job, 2*time.Minute, "terminal", terminal)
		if al.ClientStatus != "complete" {
			t.Fatalf("want complete, got:\n%s", al)
		}
		logs := a.mustNomad(t, "alloc", "logs", al.ID, "report")
		t.Logf("task stdout:\n%s", logs)
		if !strings.Contains(logs, "R version 4.2.2") {
			t.Errorf("the example did not run R 4.2.2")
		}
		if !strings.Contains(al.allEvents("report"), "R 4.2 requested: "+filepath.Join(root, "4.2.2")) {
			t.Errorf("no task event for the R choice:\n%s", al)
		}
	})

	t.Run("example-on-the-distribution-r", func(t *testing.T) {
		// On a node with only Debian's R 4.2.2 (the shared agent's default
		// r_root holds none), the example's constraint is met by that R.
		if m, _ := filepath.Glob("/opt/R/*/bin/R"); len(m) > 0 {
			t.Skipf("this machine has %v", m)
		}
		b := sharedAgent(t)
		const job = "r-version"
		b.runJob(t, example(t, "r-version.nomad.hcl"), job)
		al := b.waitAlloc(t, job, 2*time.Minute, "terminal", terminal)
		if al.ClientStatus != "complete" {
			t.Fatalf("want complete, got:\n%s", al)
		}
		if !strings.Contains(al.allEvents("report"), "R 4.2 requested: /usr/lib/R (minor match)") {
			t.Errorf("no task event for the R choice:\n%s", al)
		}
	})
}

type allocMetric struct {
	NodesEvaluated, NodesFiltered int
	ConstraintFiltered            map[string]int
}

// waitPlacementFailure waits for the job's evaluation that failed to place
// the group, and returns its metrics.
func (a *agent) waitPlacementFailure(t *testing.T, job, group string) *allocMetric {
	t.Helper()
	type evalT struct {
		ID, Status     string
		FailedTGAllocs map[string]*allocMetric
	}
	var failed *evalT
	var last string
	if !eventually(30*time.Second, 250*time.Millisecond, func() bool {
		var evals []evalT
		if err := a.get("/v1/job/"+job+"/evaluations", &evals); err != nil {
			last = err.Error()
			return false
		}
		last = fmt.Sprintf("%+v", evals)
		for i := range evals {
			if evals[i].Status == "complete" && len(evals[i].FailedTGAllocs) > 0 {
				failed = &evals[i]
				return true
			}
		}
		return false
	}) {
		t.Fatalf("job %s: no evaluation with failed placements after 30s: %s", job, last)
	}
	m := failed.FailedTGAllocs[group]
	if m == nil {
		t.Fatalf("evaluation %s: no failed placement of group %s: %+v", failed.ID, group, failed.FailedTGAllocs)
	}
	t.Logf("evaluation %s: group %s: %d node(s) evaluated, %d filtered: %v", failed.ID, group, m.NodesEvaluated, m.NodesFiltered, m.ConstraintFiltered)
	return m
}

// TestDistributionR: on a node with only Debian's R, that R is a version
// like any rig install: in driver.bwrap-r.r.versions (so a set_contains
// constraint matches the node) and what r_version = "4.2" resolves to.
func TestDistributionR(t *testing.T) {
	a := sharedAgent(t)
	var node struct{ Attributes map[string]string }
	if err := a.get("/v1/node/"+a.nodeID, &node); err != nil {
		t.Fatal(err)
	}
	if v := node.Attributes["driver.bwrap-r.r.versions"]; v != "4.2.2" {
		t.Fatalf("driver.bwrap-r.r.versions = %q, want Debian's 4.2.2", v)
	}
	if v := node.Attributes["driver.bwrap-r.r.version.4.2.2"]; v != "/usr/lib/R" {
		t.Errorf("driver.bwrap-r.r.version.4.2.2 = %q, want its R_HOME /usr/lib/R", v)
	}
	const job = "rver-debian"
	file := writeJob(t, job, batchJob(job, `  constraint {
    attribute = "${attr.driver.bwrap-r.r.versions}"
    operator  = "set_contains"
    value     = "4.2.2"
  }`, `        command   = "Rscript"
        r_version = "4.2"
        args      = ["-e", "cat(R.version.string)"]`))
	a.runJob(t, file, job)
	al := a.waitAlloc(t, job, 2*time.Minute, "terminal", terminal)
	if al.ClientStatus != "complete" {
		logs, _ := a.nomad("alloc", "logs", "-stderr", al.ID, "t")
		t.Fatalf("want complete, got:\n%s\nstderr:\n%s", al, logs)
	}
	if want := "R 4.2 requested: /usr/lib/R (minor match)"; !strings.Contains(al.allEvents("t"), want) {
		t.Errorf("no task event %q:\n%s", want, al)
	}
	if logs := a.mustNomad(t, "alloc", "logs", al.ID, "t"); !strings.Contains(logs, "R version 4.2.2") {
		t.Errorf("stdout %q", logs)
	}
}

// TestRInstallTheTaskCannotReach: the operator's default_r lies outside
// r_root, under a directory only root may enter. The fingerprint (root)
// finds it; a task must not reach it as its own UID. bwrap, as the task,
// would refuse a path it cannot walk, and the launch's root, built by root,
// must not walk it for the task: the start fails and names the path. Once
// the directory is open to all, the same job runs, so it was the permission
// that stopped it.
func TestRInstallTheTaskCannotReach(t *testing.T) {
	setup(t)
	rig := makeRig(t)
	if err := os.Chmod(rig, 0o700); err != nil {
		t.Fatal(err)
	}
	defaultR := filepath.Join(rig, "4.2.2", "bin", "R")
	a := newAgentOpts(t, agentOpts{plugin: fmt.Sprintf("    default_r = %q", defaultR)})
	if err := a.waitDriver(true, time.Minute); err != nil {
		t.Fatal(err)
	}
	config := `        command = "Rscript"
        args    = ["-e", "cat('R ran\\n')"]`

	const closed = "rhidden-closed"
	a.runJob(t, writeJob(t, closed, batchJob(closed, "", config)), closed)
	al := a.waitAlloc(t, closed, 2*time.Minute, "terminal", terminal)
	events := al.allEvents("t")
	t.Logf("events:\n%s", events)
	if al.ClientStatus != "failed" {
		logs, _ := a.nomad("alloc", "logs", al.ID, "t")
		t.Fatalf("a task reached an R under a 0700 directory: want failed, got:\n%s\nstdout:\n%s", al, logs)
	}
	if started := al.events("t", "Started"); len(started) != 0 {
		t.Errorf("the task started:\n%s", al)
	}
	if !strings.Contains(events, "Permission denied") || !strings.Contains(events, rig) {
		t.Errorf("no event names %s and the permission it lacks", rig)
	}

	if err := os.Chmod(rig, 0o755); err != nil {
		t.Fatal(err)
	}
	const open = "rhidden-open"
	a.runJob(t, writeJob(t, open, batchJob(open, "", config)), open)
	al = a.waitAlloc(t, open, 2*time.Minute, "terminal", terminal)
	logs := a.mustNomad(t, "alloc", "logs", al.ID, "t")
	if al.ClientStatus != "complete" || !strings.Contains(logs, "R ran") {
		t.Fatalf("with the directory open, want complete with R's output, got:\n%s\nstdout:\n%s", al, logs)
	}
}
