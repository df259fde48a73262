package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingListener is a TCP listener on 127.0.0.1 that accepts and closes
// every connection, counting them.
type countingListener struct {
	l     net.Listener
	port  int
	count atomic.Int64
}

// listenLoopback starts a countingListener, closed when the test ends.
func listenLoopback(t *testing.T) *countingListener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{l: l, port: l.Addr().(*net.TCPAddr).Port}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			cl.count.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return cl
}

func (cl *countingListener) addr() string { return fmt.Sprintf("127.0.0.1:%d", cl.port) }

// runPreflightCLI runs the built plugin's `preflight` subcommand and returns
// its stdout, stderr and exit code.
func runPreflightCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(pluginDir, "bwrap-r"), append([]string{"preflight"}, args...)...)
	cmd.Env = cleanEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("bwrap-r preflight %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}

type preflightCheck struct {
	Check, Result, Detail, Fix string
}

// preflightJSON runs `bwrap-r preflight -config conf -json` and returns its
// checks by name, and its exit code.
func preflightJSON(t *testing.T, conf string) (map[string]preflightCheck, int) {
	t.Helper()
	out, stderr, code := runPreflightCLI(t, "-config", conf, "-json")
	var report struct{ Checks []preflightCheck }
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("bwrap-r preflight -json: exit %d, not JSON (%v):\n%s\nstderr: %s", code, err, out, stderr)
	}
	checks := map[string]preflightCheck{}
	for _, c := range report.Checks {
		checks[c.Check] = c
	}
	return checks, code
}

// preflightAttrs waits until the node's bwrap-r fingerprint carries the
// given preflight attribute and returns the driver info.
func (a *agent) preflightAttrs(t *testing.T, attr string) *driverInfo {
	t.Helper()
	var d *driverInfo
	var last string
	if !eventually(30*time.Second, 250*time.Millisecond, func() bool {
		var err error
		d, err = a.driver()
		if err != nil || d == nil {
			last = fmt.Sprintf("no bwrap-r driver info (%v)", err)
			return false
		}
		last = fmt.Sprintf("%+v", *d)
		_, ok := d.Attributes[attr]
		return ok
	}) {
		t.Fatalf("the node's bwrap-r fingerprint has no %s after 30s: %s", attr, last)
	}
	return d
}

// wantPreflightOK checks that the basic preflight attributes are "ok: ...".
func wantPreflightOK(t *testing.T, attrs map[string]string) {
	t.Helper()
	for _, c := range []string{"bwrap", "userns", "uid_mapping", "cgroups"} {
		v, ok := attrs["driver.bwrap-r.preflight."+c]
		if !ok {
			t.Errorf("no attribute driver.bwrap-r.preflight.%s", c)
		} else if !strings.HasPrefix(v, "ok") {
			t.Errorf("driver.bwrap-r.preflight.%s = %q, want ok", c, v)
		}
	}
}

// TestPreflightEgressReachable configures a probe target the tasks can
// reach (a listener of the test on loopback): the preflight's egress check
// fails, the driver is unhealthy and names it, and no bwrap-r job is placed.
// The CLI says the same with exit status 1.
func TestPreflightEgressReachable(t *testing.T) {
	setup(t)
	target := listenLoopback(t)
	a := newAgent(t, fmt.Sprintf(`    egress {
      metadata = ""
      probe    = [%q]
    }`, target.addr()))
	check := "egress." + target.addr()
	attr := "driver.bwrap-r.preflight." + check

	d := a.preflightAttrs(t, attr)
	t.Logf("bwrap-r: detected %v, healthy %v: %s", d.Detected, d.Healthy, d.HealthDescription)
	if !d.Detected {
		t.Errorf("bwrap-r not detected")
	}
	if d.Healthy {
		t.Errorf("bwrap-r is healthy although a task reaches the probe target %s", target.addr())
	}
	if !strings.Contains(d.HealthDescription, check) {
		t.Errorf("health description %q does not name the failing check %s", d.HealthDescription, check)
	}
	wantPreflightOK(t, d.Attributes)
	if v := d.Attributes[attr]; !strings.HasPrefix(v, "error") {
		t.Errorf("%s = %q, want an error", attr, v)
	}
	// The probe really ran: it connected to the listener.
	if n := target.count.Load(); n == 0 {
		t.Errorf("no connection reached %s: the probe did not run, yet the check failed", target.addr())
	}

	// The CLI's view of the node.
	status := a.mustNomad(t, "node", "status", "-verbose", a.nodeID)
	for _, c := range []string{"bwrap", "userns", "uid_mapping", "cgroups", check} {
		if !strings.Contains(status, "driver.bwrap-r.preflight."+c) {
			t.Errorf("nomad node status -verbose lacks driver.bwrap-r.preflight.%s", c)
		}
	}
	for _, line := range strings.Split(status, "\n") {
		if strings.Contains(line, attr) {
			t.Logf("node status: %s", strings.Join(strings.Fields(line), " "))
			if !strings.Contains(line, "error") {
				t.Errorf("nomad node status -verbose: %q, want an error", line)
			}
		}
	}

	// No bwrap-r task is placed on the node.
	const job = "preflight-unhealthy"
	a.runJob(t, writeJob(t, job, batchJob(job, "", `        command = "/bin/true"`)), job)
	m := a.waitPlacementFailure(t, job, "g")
	if m.ConstraintFiltered["missing drivers"] != 1 {
		t.Errorf("placement failure: want the node filtered for %q, got %+v", "missing drivers", m)
	}
	var allocs []struct{ ID string }
	if err := a.get("/v1/job/"+job+"/allocations", &allocs); err != nil {
		t.Fatal(err)
	}
	if len(allocs) != 0 {
		t.Errorf("the job has allocations on a node whose bwrap-r is unhealthy: %v", allocs)
	}
	if out, _ := a.nomad("job", "status", job); !strings.Contains(out, "missing drivers") {
		t.Errorf("nomad job status does not mention the missing driver:\n%s", out)
	} else {
		t.Logf("nomad job status:\n%s", out)
	}

	// bwrap-r preflight over the agent's config.
	out, stderr, code := runPreflightCLI(t, "-config", a.conf)
	t.Logf("bwrap-r preflight -config %s: exit %d\n%s%s", a.conf, code, out, stderr)
	if code != 1 {
		t.Errorf("bwrap-r preflight: exit %d, want 1", code)
	}
	found := false
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == check {
			found = true
			if f[1] != "error" {
				t.Errorf("bwrap-r preflight: %q, want the result error", line)
			}
		}
	}
	if !found {
		t.Errorf("bwrap-r preflight's table has no line for %s", check)
	}
	checks, code := preflightJSON(t, a.conf)
	if code != 1 {
		t.Errorf("bwrap-r preflight -json: exit %d, want 1", code)
	}
	if c := checks[check]; c.Result != "error" || !strings.Contains(c.Detail, target.addr()) {
		t.Errorf("bwrap-r preflight -json: %s = %+v, want an error naming %s", check, c, target.addr())
	}
	for _, name := range []string{"bwrap", "userns", "uid_mapping", "cgroups"} {
		if c := checks[name]; c.Result != "ok" {
			t.Errorf("bwrap-r preflight -json: %s = %+v, want ok", name, c)
		}
	}
}

// TestPreflightEgressRules has the plugin install its owner-match deny rules
// for the task UID range: the probe target becomes unreachable from tasks
// (the preflight passes, the driver is healthy) but not from root on the
// host. The rules outlive the agent (remove_rules_on_shutdown is off): the
// test removes them.
func TestPreflightEgressRules(t *testing.T) {
	setup(t)
	const table = "bwrap_r"
	if nftHasTable(t, "inet", table) {
		t.Fatalf("an nft table inet %s exists before the test (a demo agent's?): not touching it", table)
	}
	// Registered before the agent, so it runs after the agent's stop, and
	// on failure too.
	t.Cleanup(func() {
		if !nftHasTable(t, "inet", table) {
			t.Logf("nft table inet %s: already gone", table)
			return
		}
		if out, err := exec.Command("nft", "delete", "table", "inet", table).CombinedOutput(); err != nil {
			t.Errorf("nft delete table inet %s: %v: %s", table, err, out)
		}
		if nftHasTable(t, "inet", table) {
			t.Errorf("nft table inet %s still there after its deletion", table)
		}
	})
	target := listenLoopback(t)
	const lo, hi = 82000, 82099
	a := newAgentOpts(t, agentOpts{
		client: fmt.Sprintf("  users {\n    dynamic_user_min = %d\n    dynamic_user_max = %d\n  }", lo, hi),
		plugin: fmt.Sprintf(`    task_uid_range = "%d-%d"
    egress {
      metadata     = ""
      probe        = [%q]
      manage_rules = true
      deny         = [%q]
    }`, lo, hi, target.addr(), target.addr()),
	})
	if err := a.waitDriver(true, time.Minute); err != nil {
		d, _ := a.driver()
		t.Fatalf("bwrap-r not healthy with managed egress rules: %v (%+v)", err, d)
	}
	check := "egress." + target.addr()
	attr := "driver.bwrap-r.preflight." + check
	d := a.preflightAttrs(t, attr)
	t.Logf("bwrap-r: healthy %v: %s; %s = %q", d.Healthy, d.HealthDescription, attr, d.Attributes[attr])
	wantPreflightOK(t, d.Attributes)
	if v := d.Attributes[attr]; !strings.HasPrefix(v, "ok") {
		t.Errorf("%s = %q, want ok", attr, v)
	}

	rules, err := exec.Command("nft", "list", "table", "inet", table).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list table inet %s: %v: %s", table, err, rules)
	}
	t.Logf("nft table:\n%s", rules)
	if !strings.Contains(string(rules), fmt.Sprintf("skuid %d-%d", lo, hi)) || !strings.Contains(string(rules), fmt.Sprintf("dport %d", target.port)) {
		t.Errorf("the table lacks an owner-match rule for %d-%d and port %d", lo, hi, target.port)
	}

	// A task (a dynamic user of the range) cannot connect.
	const job = "preflight-rules"
	a.runJob(t, writeJob(t, job, batchJob(job, "", fmt.Sprintf(`        command = "/bin/bash"
        args    = ["-c", "id -u; exec 3<>/dev/tcp/127.0.0.1/%d && echo connected"]`, target.port))), job)
	al := a.waitAlloc(t, job, time.Minute, "terminal", terminal)
	stdout, _ := a.nomad("alloc", "logs", al.ID, "t")
	stderr, _ := a.nomad("alloc", "logs", "-stderr", al.ID, "t")
	t.Logf("task: %s; stdout %q, stderr %q", al.ClientStatus, stdout, stderr)
	if uid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(stdout, "\n", 2)[0])); err != nil || uid < lo || uid > hi {
		t.Errorf("task printed %q, want its uid in %d-%d first", stdout, lo, hi)
	}
	if al.ClientStatus != "failed" || strings.Contains(stdout, "connected") {
		t.Errorf("the task connected to %s despite the deny rule:\n%s", target.addr(), al)
	}
	if !strings.Contains(stderr, "Connection refused") {
		t.Errorf("task stderr %q: want Connection refused (the rule's tcp reset)", stderr)
	}
	if n := target.count.Load(); n != 0 {
		t.Errorf("%d connection(s) reached %s from the probe or the task", n, target.addr())
	}
	// Root on the host can.
	c, err := net.DialTimeout("tcp", target.addr(), 5*time.Second)
	if err != nil {
		t.Fatalf("root on the host cannot connect to %s: %v", target.addr(), err)
	}
	c.Close()
	if !eventually(5*time.Second, 50*time.Millisecond, func() bool { return target.count.Load() == 1 }) {
		t.Errorf("root's connection was not accepted")
	}

	checks, code := preflightJSON(t, a.conf)
	t.Logf("bwrap-r preflight -json: exit %d, %s = %+v", code, check, checks[check])
	if code != 0 {
		t.Errorf("bwrap-r preflight -json: exit %d, want 0: %+v", code, checks)
	}
	if c := checks[check]; c.Result != "ok" {
		t.Errorf("bwrap-r preflight -json: %s = %+v, want ok", check, c)
	}
}

// nftHasTable reports whether nft lists the table.
func nftHasTable(t *testing.T, family, name string) bool {
	t.Helper()
	out, err := exec.Command("nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) == "table "+family+" "+name {
			return true
		}
	}
	return false
}
