// Package e2e runs bwrap-r in a real Nomad agent (loopback only).
//
//	BWRAP_R_E2E=1 go test -count=1 -v ./e2e/
//
// It builds the plugin, starts `nomad agent -dev` (or a one-node cluster) with
// it and runs jobs. It needs root, bubblewrap, R (with shiny) and the agent
// built by `make nomad` (or NOMAD_BIN). Without BWRAP_R_E2E=1 every test
// skips.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const skipReason = "end-to-end tests skipped: set BWRAP_R_E2E=1 to run them (they need root, bubblewrap, R and a Nomad agent built by `make nomad`)"

var (
	enabled = os.Getenv("BWRAP_R_E2E") == "1"

	setupOnce sync.Once
	setupErr  error
	repoRoot  string // the module root, ".." of this package
	nomadBin  string
	pluginDir string // holds the freshly built bwrap-r

	sharedOnce sync.Once
	shared     *agent
	sharedErr  error
)

func TestMain(m *testing.M) {
	if !enabled {
		fmt.Println(skipReason)
	}
	code := m.Run()
	if shared != nil {
		shared.stop()
	}
	if pluginDir != "" {
		os.RemoveAll(filepath.Dir(pluginDir))
	}
	os.Exit(code)
}

// setup finds the repo and the agent and builds the plugin, once.
func setup(t *testing.T) {
	t.Helper()
	if !enabled {
		t.Skip(skipReason)
	}
	if os.Geteuid() != 0 {
		t.Fatal("the e2e tests must run as root: bwrap-r runs tasks as Nomad's dynamic workload users")
	}
	setupOnce.Do(func() { setupErr = doSetup() })
	if setupErr != nil {
		t.Fatal(setupErr)
	}
}

func doSetup() error {
	root, err := filepath.Abs("..")
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "bwrap-r")); err != nil {
		return fmt.Errorf("repo root %s has no cmd/bwrap-r: %v", root, err)
	}
	repoRoot = root
	nomadBin = os.Getenv("NOMAD_BIN")
	if nomadBin == "" {
		nomadBin = filepath.Join(root, ".cache", "nomad", "nomad")
	}
	if fi, err := os.Stat(nomadBin); err != nil || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("no Nomad agent at %s (set NOMAD_BIN, or run make nomad)", nomadBin)
	}
	dir, err := os.MkdirTemp("", "bwrap-r-e2e-build-")
	if err != nil {
		return err
	}
	// Like an installed plugin dir (/opt/nomad/plugins): world-traversable.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	pluginDir = filepath.Join(dir, "plugins")
	if prebuilt := os.Getenv("BWRAP_R_PLUGIN"); prebuilt != "" {
		// Built on the host for a guest that runs the tests (make test-v2),
		// where a build would take minutes.
		return copyPlugin(prebuilt, filepath.Join(pluginDir, "bwrap-r"))
	}
	build := exec.Command("go", "build", "-tags", pluginTags, "-o", filepath.Join(pluginDir, "bwrap-r"), "./cmd/bwrap-r")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the plugin: %v\n%s", err, out)
	}
	return nil
}

// copyPlugin installs a prebuilt plugin binary as the build would (0755).
func copyPlugin(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("BWRAP_R_PLUGIN: %w", err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// agent is a running Nomad agent: `nomad agent -dev`, or a single-node
// server and client whose state survives restarts (agentOpts.server).
type agent struct {
	addr   string // http://127.0.0.1:PORT
	dir    string // its config, log, TMPDIR and (server) data_dir
	conf   string
	log    string
	server bool
	umask  string
	tty    *os.File
	nodeID string
	cmd    *exec.Cmd
	exited chan struct{}

	// dataDir is its data_dir (server agents): below dir unless
	// agentOpts.dataDir named another.
	dataDir string
}

// agentOpts configure an agent.
type agentOpts struct {
	// plugin is the body of the plugin "bwrap-r" config block; pluginFor,
	// when set, makes it from the agent's HTTP port instead.
	plugin    string
	pluginFor func(httpPort int) string
	// client holds extra lines for the client block.
	client string
	// extra holds top-level agent config lines (e.g. a consul block).
	extra string
	// server: a non-dev agent, server and client of a one-node cluster, with
	// its data_dir below its dir. Its tasks outlive the agent's process
	// unless stop stops them first; a new launch picks them up again.
	server bool
	// umask, when set (e.g. "077"), is the agent's umask, as an operator's
	// shell or unit may give it.
	umask string
	// dataDir, when set, is a server agent's data_dir instead of one below
	// its dir (a mount the test made, say); the test removes it.
	dataDir string
	// tty, when set (a pty's slave), is the agent's controlling terminal and
	// stdin, as when an operator runs it in a terminal.
	tty *os.File
}

// sharedAgent is the agent with the default plugin config, started by the
// first test that asks for it and stopped in TestMain.
func sharedAgent(t *testing.T) *agent {
	t.Helper()
	setup(t)
	sharedOnce.Do(func() {
		shared, sharedErr = startAgent(agentOpts{}) // the plugin's defaults
		if sharedErr == nil {
			sharedErr = shared.waitDriver(true, time.Minute)
		}
	})
	if sharedErr != nil {
		if shared != nil { // started, but bwrap-r is not healthy
			t.Log(shared.logTail(60))
		}
		t.Fatalf("shared agent: %v", sharedErr)
	}
	shared.dumpLogOnFailure(t)
	return shared
}

// newAgent starts a dev agent of the test's own, with the given body of the
// plugin "bwrap-r" config block, and stops it when the test ends.
func newAgent(t *testing.T, pluginConfig string) *agent {
	t.Helper()
	return newAgentOpts(t, agentOpts{plugin: pluginConfig})
}

// newAgentOpts starts an agent of the test's own and stops it when the test
// ends.
func newAgentOpts(t *testing.T, opts agentOpts) *agent {
	t.Helper()
	setup(t)
	a, err := startAgent(opts)
	if err != nil {
		t.Fatalf("agent: %v", err)
	}
	t.Cleanup(a.stop)
	a.dumpLogOnFailure(t)
	return a
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

const agentConfig = `# Written by the bwrap-r e2e tests. Loopback only.
bind_addr            = "127.0.0.1"
disable_update_check = true
%s
ports {
  http = %d
  rpc  = %d
  serf = %d
}

client {
  options = {
    "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean"
  }
%s
}

plugin "bwrap-r" {
  config {
%s
  }
}
`

// serverConfig makes a non-dev agent a one-node cluster.
const serverConfig = `
data_dir  = %q
log_level = "DEBUG"

# Outside dev mode Nomad will not advertise a loopback address by default.
advertise {
  http = "127.0.0.1"
  rpc  = "127.0.0.1"
  serf = "127.0.0.1"
}

server {
  enabled          = true
  bootstrap_expect = 1
}
`

// startAgent starts an agent and waits until its node is ready and has
// fingerprinted bwrap-r (healthy or not). On error the agent is stopped and
// the error holds the tail of its log.
func startAgent(opts agentOpts) (*agent, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	// The dev agent makes its state, alloc and keystore dirs in TMPDIR and
	// leaves them behind: its TMPDIR is this dir, removed by stop. It lies in
	// /tmp whatever the caller's TMPDIR, with a short name: a task's
	// secrets/api.sock lies below, and a socket path has at most 107 bytes.
	// It stays 0700, as Nomad makes a data_dir: no task UID can walk a path
	// through it, and bwrap-r must not need to.
	dir, err := os.MkdirTemp("/tmp", "e2e")
	if err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			os.RemoveAll(dir)
		}
	}()
	server, dataDir := "", ""
	clientConf := opts.client
	if opts.server {
		// Nomad makes its data_dir itself (0700).
		dataDir = filepath.Join(dir, "data")
		if opts.dataDir != "" {
			dataDir = opts.dataDir
		}
		server = fmt.Sprintf(serverConfig, dataDir)
		// Dev mode's choice: tasks' ports on loopback, not on the interface
		// of the default route.
		clientConf = "  enabled           = true\n  network_interface = \"lo\"\n" + clientConf
	}
	conf := filepath.Join(dir, "agent.hcl")
	plugin := opts.plugin
	if opts.pluginFor != nil {
		plugin = opts.pluginFor(ports[0])
	}
	if !strings.Contains(plugin, "egress") {
		// The plugin's default probes the cloud metadata address: never here.
		plugin += "\n    egress {\n      metadata = \"\"\n    }\n"
	}
	body := fmt.Sprintf(agentConfig, server+opts.extra, ports[0], ports[1], ports[2], clientConf, plugin)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, err
	}
	a := &agent{
		addr:   fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		dir:    dir,
		conf:   conf,
		log:    filepath.Join(dir, "agent.log"),
		server: opts.server,
		umask:  opts.umask,
		tty:    opts.tty,
	}
	a.dataDir = dataDir
	if err := a.launch(); err != nil {
		return nil, err
	}
	started = true
	// A one-node cluster's client may take half a minute to register: its
	// first try can come before the new server's keyring is ready.
	wait := time.Minute
	if a.server {
		wait = 2 * time.Minute
	}
	if err := a.waitDriver(false, wait); err != nil {
		err = fmt.Errorf("%v\n%s", err, a.logTail(60))
		a.stop()
		return nil, err
	}
	return a, nil
}

// launch starts the agent's process, appending to its log.
func (a *agent) launch() error {
	logf, err := os.OpenFile(a.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{"agent", "-config", a.conf, "-plugin-dir", pluginDir}
	if !a.server {
		args = append(args, "-dev")
	}
	a.cmd = exec.Command(nomadBin, args...)
	if a.umask != "" {
		a.cmd = exec.Command("/bin/sh", append([]string{"-c", `umask "$0" && exec "$@"`, a.umask, nomadBin}, args...)...)
	}
	a.cmd.Env = append(cleanEnv(), "TMPDIR="+a.dir)
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	// Pdeathsig: should the test binary die (panic, timeout), the agent
	// stops too, and in dev mode takes its tasks with it.
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGINT}
	if a.tty != nil {
		// The leader of a session with the terminal (its group is its pid,
		// as with Setpgid).
		a.cmd.Stdin = a.tty
		a.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Pdeathsig: syscall.SIGINT}
	}
	if err := a.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	a.exited = exited
	cmd := a.cmd
	go func() { cmd.Wait(); close(exited) }()
	return nil
}

// interrupt sends the agent SIGINT and waits up to 30s for it to exit; then
// it kills the agent's process group. It reports whether SIGINT sufficed.
func (a *agent) interrupt() bool {
	a.cmd.Process.Signal(os.Interrupt)
	select {
	case <-a.exited:
		return true
	case <-time.After(30 * time.Second):
		fmt.Fprintf(os.Stderr, "e2e: agent %s ignored SIGINT for 30s; killing it\n", a.addr)
		syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
		<-a.exited
		return false
	}
}

// waitDriver waits until the node is ready and lists bwrap-r among its
// drivers, and if healthy is set until bwrap-r is detected and healthy.
func (a *agent) waitDriver(healthy bool, timeout time.Duration) error {
	var last string
	ok := eventually(timeout, 250*time.Millisecond, func() bool {
		select {
		case <-a.exited:
			last = "the agent exited"
			return true
		default:
		}
		var nodes []struct{ ID, Status string }
		if err := a.get("/v1/nodes", &nodes); err != nil {
			last = err.Error()
			return false
		}
		if len(nodes) != 1 || nodes[0].Status != "ready" {
			last = fmt.Sprintf("nodes: %+v", nodes)
			return false
		}
		a.nodeID = nodes[0].ID
		d, err := a.driver()
		if err != nil || d == nil {
			last = fmt.Sprintf("node %s lists no bwrap-r driver (%v)", a.nodeID, err)
			return false
		}
		last = fmt.Sprintf("bwrap-r: %+v", *d)
		return !healthy || (d.Detected && d.Healthy)
	})
	select {
	case <-a.exited:
		return fmt.Errorf("the agent exited: %v", a.cmd.ProcessState)
	default:
	}
	if !ok {
		return fmt.Errorf("node not ready with bwrap-r after %v: %s", timeout, last)
	}
	return nil
}

type driverInfo struct {
	Detected, Healthy bool
	HealthDescription string
	Attributes        map[string]string
}

// driver returns the node's bwrap-r driver info, nil if it has none.
func (a *agent) driver() (*driverInfo, error) {
	var node struct {
		Drivers map[string]*driverInfo
	}
	if err := a.get("/v1/node/"+a.nodeID, &node); err != nil {
		return nil, err
	}
	return node.Drivers["bwrap-r"], nil
}

// stop stops the agent and removes its directory. A dev agent destroys its
// allocations when interrupted; a server agent would leave its tasks running,
// so stop first stops its jobs and waits for their allocations to end. Should
// the agent leave anything behind (its allocations' GC is cut short when it
// exits), stop says so, kills what is left of its process group and its
// allocations' cgroups and unmounts what is left below its directory.
func (a *agent) stop() {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	var allocIDs []string
	select {
	case <-a.exited:
	default:
		if a.server {
			allocIDs = a.stopAllJobs()
		} else {
			allocIDs = a.allocIDs()
		}
		a.interrupt()
	}
	if left := processGroup(a.cmd.Process.Pid); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: agent %s left processes behind, killing them: %s\n", a.addr, strings.Join(left, "; "))
		syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
	}
	if left := killAllocCgroups(allocIDs); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: agent %s left task processes behind, killed them: %s\n", a.addr, strings.Join(left, " "))
	}
	if os.Getenv("BWRAP_R_E2E_KEEP") != "" {
		return
	}
	if mounts := mountsBelow(a.dir); len(mounts) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: agent %s left mounts behind, unmounting them: %s\n", a.addr, strings.Join(mounts, " "))
		for i := len(mounts) - 1; i >= 0; i-- {
			syscall.Unmount(mounts[i], syscall.MNT_DETACH)
		}
	}
	if err := os.RemoveAll(a.dir); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
	}
}

// stopAllJobs stops every job of a server agent, waits up to a minute for
// their allocations to end and has the client collect them (which unmounts
// their dirs). It returns the IDs of all allocations it saw.
func (a *agent) stopAllJobs() []string {
	var jobs []struct{ ID string }
	if err := a.get("/v1/jobs", &jobs); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: agent %s: listing jobs: %v\n", a.addr, err)
		return nil
	}
	for _, j := range jobs {
		a.nomad("job", "stop", "-detach", j.ID)
	}
	var ids, running []string
	eventually(time.Minute, 500*time.Millisecond, func() bool {
		var allocs []struct{ ID, ClientStatus string }
		if err := a.get("/v1/allocations", &allocs); err != nil {
			return false
		}
		ids, running = nil, nil
		for _, al := range allocs {
			ids = append(ids, al.ID)
			if al.ClientStatus == "pending" || al.ClientStatus == "running" {
				running = append(running, al.ID)
			}
		}
		return len(running) == 0
	})
	if len(running) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: agent %s: allocations still running a minute after their jobs' stop: %v\n", a.addr, running)
	}
	// The client destroys its terminal allocations, in the background: their
	// dirs' mounts and their cgroups go.
	c := http.Client{Timeout: 30 * time.Second}
	if req, err := http.NewRequest(http.MethodPut, a.addr+"/v1/client/gc", nil); err == nil {
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	eventually(20*time.Second, 250*time.Millisecond, func() bool {
		return len(mountsBelow(a.dir)) == 0 && (a.dataDir == "" || len(mountsBelow(a.dataDir)) == 0)
	})
	return ids
}

// allocIDs lists the IDs of the agent's allocations.
func (a *agent) allocIDs() []string {
	var allocs []struct{ ID string }
	a.get("/v1/allocations", &allocs)
	var ids []string
	for _, al := range allocs {
		ids = append(ids, al.ID)
	}
	return ids
}

// killAllocCgroups kills the processes left in the cgroups of the given
// allocations (every process of a task is in its cgroup, bwrap included) and
// removes those cgroups. It returns the pids it killed.
func killAllocCgroups(allocIDs []string) []string {
	var killed []string
	for _, id := range allocIDs {
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/nomad/*/" + id + ".*")
		more, _ := filepath.Glob("/sys/fs/cgroup/*/nomad/" + id + ".*")
		unified, _ := filepath.Glob("/sys/fs/cgroup/nomad.slice/*/" + id + ".*")
		dirs = append(append(dirs, more...), unified...)
		for _, d := range dirs {
			b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && syscall.Kill(pid, syscall.SIGKILL) == nil {
					killed = append(killed, f)
				}
			}
		}
		if len(killed) > 0 {
			time.Sleep(500 * time.Millisecond)
		}
		for _, d := range dirs {
			os.Remove(d)
		}
	}
	return killed
}

// processGroup lists the live processes (as "PID NAME") of a process group.
func processGroup(pgid int) []string {
	var procs []string
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		i := bytes.LastIndexByte(b, ')')
		if err != nil || i < 0 {
			continue
		}
		// pid (name) state ppid pgrp ...
		fs := strings.Fields(string(b[i+1:]))
		if len(fs) > 2 && fs[0] != "Z" && fs[2] == strconv.Itoa(pgid) {
			procs = append(procs, strings.Replace(string(b[:i]), " (", " ", 1))
		}
	}
	return procs
}

// mountsBelow lists the mount points below dir, outermost first.
func mountsBelow(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		// id parent major:minor root mountpoint ...
		if fs := strings.Fields(line); len(fs) > 4 && strings.HasPrefix(fs[4], dir+"/") {
			mounts = append(mounts, fs[4])
		}
	}
	return mounts
}

func (a *agent) logTail(n int) string {
	b, err := os.ReadFile(a.log)
	if err != nil {
		return fmt.Sprintf("(no agent log: %v)", err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if !strings.Contains(l, "http: request complete") { // the tests' polling
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "agent log (" + a.log + ", last lines):\n" + strings.Join(lines, "\n")
}

// dumpLogOnFailure prints the tail of the agent's log if the test fails.
func (a *agent) dumpLogOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(a.logTail(60))
		}
	})
}

// get decodes the JSON of an HTTP API path.
func (a *agent) get(path string, v any) error {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(a.addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(b.String()))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// cleanEnv is the environment without NOMAD_* variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NOMAD_") {
			env = append(env, kv)
		}
	}
	return env
}

// nomad runs the CLI against the agent and returns its combined output.
func (a *agent) nomad(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nomadBin, args...)
	cmd.Env = append(cleanEnv(), "NOMAD_ADDR="+a.addr)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// mustNomad is nomad, failing the test on error.
func (a *agent) mustNomad(t *testing.T, args ...string) string {
	t.Helper()
	out, err := a.nomad(args...)
	if err != nil {
		t.Fatalf("nomad %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// runJob submits a job file without waiting, and stops the job when the
// test ends.
func (a *agent) runJob(t *testing.T, file, jobID string) {
	t.Helper()
	a.mustNomad(t, "job", "run", "-detach", file)
	t.Cleanup(func() { a.stopJob(jobID) })
}

// stopJob stops a job, without purging it: a purge has the client destroy
// the allocation in the background, and an agent stopped meanwhile leaves it
// half done; a stopped job's allocation is destroyed by the agent's stop.
func (a *agent) stopJob(jobID string) {
	a.nomad("job", "stop", "-detach", jobID)
}

// writeJob writes a job file into the test's temp dir.
func writeJob(t *testing.T, name, hcl string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name+".nomad.hcl")
	if err := os.WriteFile(p, []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

type taskEvent struct {
	Type, DisplayMessage string
	Details              map[string]string
	ExitCode             int
	Time                 int64 // Unix nanoseconds
}

type taskState struct {
	State    string
	Failed   bool
	Restarts int
	Events   []taskEvent
}

type allocation struct {
	ID, ClientStatus, DesiredStatus string
	TaskStates                      map[string]*taskState
	// DeploymentStatus is Nomad's view of the allocation's health in a
	// deployment (from its checks, with update { health_check = "checks" }).
	DeploymentStatus   *struct{ Healthy *bool }
	AllocatedResources struct {
		Shared struct {
			Ports []struct {
				Label  string
				Value  int
				HostIP string
			}
		}
	}
}

func (al *allocation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "alloc %s: client %s, desired %s", al.ID, al.ClientStatus, al.DesiredStatus)
	for name, ts := range al.TaskStates {
		fmt.Fprintf(&b, "\n  task %s: %s (failed %v, restarts %d)", name, ts.State, ts.Failed, ts.Restarts)
		for _, e := range ts.Events {
			fmt.Fprintf(&b, "\n    %s: %s %v", e.Type, e.DisplayMessage, e.Details)
		}
	}
	return b.String()
}

// events returns the task's events of the given type.
func (al *allocation) events(task, typ string) []taskEvent {
	var evs []taskEvent
	if ts := al.TaskStates[task]; ts != nil {
		for _, e := range ts.Events {
			if e.Type == typ {
				evs = append(evs, e)
			}
		}
	}
	return evs
}

// waitAlloc polls the job's (single) allocation until done returns true, and
// returns it; it fails the test after the timeout.
func (a *agent) waitAlloc(t *testing.T, jobID string, timeout time.Duration, what string, done func(*allocation) bool) *allocation {
	t.Helper()
	var al *allocation
	var last string
	ok := eventually(timeout, 250*time.Millisecond, func() bool {
		var stubs []struct{ ID string }
		if err := a.get("/v1/job/"+jobID+"/allocations", &stubs); err != nil {
			last = err.Error()
			return false
		}
		if len(stubs) == 0 {
			last = "no allocation yet"
			return false
		}
		if len(stubs) > 1 {
			last = fmt.Sprintf("%d allocations, want 1", len(stubs))
			return false
		}
		var cur allocation
		if err := a.get("/v1/allocation/"+stubs[0].ID, &cur); err != nil {
			last = err.Error()
			return false
		}
		al, last = &cur, cur.String()
		return done(al)
	})
	if !ok {
		t.Fatalf("job %s: no allocation %s after %v; last seen:\n%s", jobID, what, timeout, last)
	}
	return al
}

func terminal(al *allocation) bool {
	switch al.ClientStatus {
	case "complete", "failed", "lost":
		return true
	}
	return false
}

// eventually calls f every interval until it returns true or the timeout
// passes; it reports whether f returned true.
func eventually(timeout, interval time.Duration, f func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// runOnce is a group's restart and reschedule blocks for a task that must
// run once: its failure is the test's result, not something to retry.
const runOnce = `    restart {
      attempts = 0
      mode     = "fail"
    }
    reschedule {
      attempts  = 0
      unlimited = false
    }
`

// waitRunning waits until the job's task runs and returns its allocation;
// the test fails if the allocation ends first.
func (a *agent) waitRunning(t *testing.T, jobID, task string, timeout time.Duration) *allocation {
	t.Helper()
	return a.waitAlloc(t, jobID, timeout, "running", func(al *allocation) bool {
		if terminal(al) {
			t.Fatalf("job %s: the allocation ended before task %s ran:\n%s", jobID, task, al)
		}
		ts := al.TaskStates[task]
		return ts != nil && ts.State == "running"
	})
}

// port returns the allocation's port with the label, and its host IP; 0
// when there is none.
func (al *allocation) port(label string) (int, string) {
	for _, p := range al.AllocatedResources.Shared.Ports {
		if p.Label == label {
			return p.Value, p.HostIP
		}
	}
	return 0, ""
}

// waitHTTP fetches url until it answers 200 or timeout has passed: ok, the
// last body, and the last status or error.
func waitHTTP(url string, timeout time.Duration) (body, last string, ok bool) {
	ok = eventually(timeout, 500*time.Millisecond, func() bool {
		c := http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get(url)
		if err != nil {
			last = err.Error()
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body, last = string(b), resp.Status
		return resp.StatusCode == http.StatusOK
	})
	return body, last, ok
}
