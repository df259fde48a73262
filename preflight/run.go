package preflight

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bwrap-r/bwrap-r/bwrap"
	"github.com/bwrap-r/bwrap-r/rversion"
)

// ProbeCommand is the hidden subcommand that, inside a sandbox, tries each
// target and prints one JSON line per target. No tool is needed in the
// sandbox: the probe is bwrap-r itself, bound in read-only.
const ProbeCommand = "_probe"

// Target is an address a task must not reach.
type Target struct {
	// Name is the check's name: "metadata", or the address.
	Name    string
	Address string // host:port
	// WarnOnly makes a reachable target a warning, not an error.
	WarnOnly bool
}

// Config is what the checks need.
type Config struct {
	BwrapPath string
	// Shim starts the launcher shim ({"/proc/self/exe", bwrap.ShimCommand}).
	Shim []string
	// ProbeBinary is the bwrap-r executable bound into the probe sandbox; it
	// must be reachable by the pool UID. Default: this process's executable.
	ProbeBinary string
	// UID and GID run the sandboxed checks: a UID from the task pool, so the
	// probe is held by exactly the rules that hold tasks.
	UID, GID uint32
	// StateDir is root-only scratch space for the probes' status files.
	StateDir string
	// StageDir is the launcher's staging dir for bind sources (a task's
	// dirs are bound by descriptor); see bwrap.Launch.
	StageDir string
	Targets  []Target
	// Timeout per connection attempt.
	Timeout time.Duration

	// AllocRoot is the client's alloc dir (data_dir/alloc), where the
	// task_start check makes a task's dirs as the client does; "" uses the
	// state dir.
	AllocRoot string

	RRoot, RLinkDir, DefaultR string
	// CgroupParent is the client's cgroup parent on v2, where the tasks'
	// partitions are; "" is <CgroupRoot>/nomad.slice, where Nomad v1.11
	// puts them whatever the client's cgroup_parent says.
	CgroupParent string
	// ProcSys and CgroupRoot are injectable for tests.
	ProcSys, CgroupRoot string
}

// Run runs every check.
func Run(ctx context.Context, c Config) *Report {
	if c.ProcSys == "" {
		c.ProcSys = "/proc/sys"
	}
	if c.CgroupRoot == "" {
		c.CgroupRoot = "/sys/fs/cgroup"
	}
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Second
	}
	r := &Report{}
	bwrapOK := checkBwrap(r, c.BwrapPath)
	checkUserNamespaces(r, c.ProcSys)
	if bwrapOK {
		checkUIDMapping(ctx, r, c)
		checkTaskStart(r, c)
	} else {
		r.add("uid_mapping", Error, "not run: bwrap is missing", "install bubblewrap")
		r.add("task_start", Error, "not run: bwrap is missing", "install bubblewrap")
	}
	checkR(r, c)
	checkCgroups(r, c.CgroupRoot, c.CgroupParent)
	checkEgress(ctx, r, c, bwrapOK)
	return r
}

func checkBwrap(r *Report, path string) bool {
	if path == "" {
		r.add("bwrap", Error, "bubblewrap not found", "apt-get install bubblewrap, or set bwrap_path")
		return false
	}
	version, err := bwrap.Version(path)
	if err != nil {
		r.add("bwrap", Error, err.Error(), "install bubblewrap, or fix bwrap_path")
		return false
	}
	r.add("bwrap", OK, fmt.Sprintf("bubblewrap %s at %s", version, path), "")
	return true
}

func checkR(r *Report, c Config) {
	cat, err := rversion.Discover(c.RRoot, c.RLinkDir, c.DefaultR)
	if err != nil {
		r.add("r", Warning, err.Error(), "fix default_r or r_root")
		return
	}
	have := cat.Installed()
	def := "none"
	if cat.Default != nil {
		def = cat.Default.Version
	}
	if len(have) == 0 && cat.Default == nil {
		r.add("r", Warning, "no R found under "+c.RRoot+" nor on PATH", "install R (rig, or apt-get install r-base-core) for R tasks")
		return
	}
	list := strings.Join(have, ", ")
	if list == "" {
		list = "none"
	}
	r.add("r", Info, fmt.Sprintf("under %s: %s; default R: %s", c.RRoot, list, def), "")
}

// probeRun is a command run in a sandbox as the pool UID with a task's flags and
// the probe binary bound in; the caller gets its stdin, stdout and the
// sandbox.
type probeRun struct {
	sb     *bwrap.Sandbox
	stdin  io.WriteCloser
	stdout *bufio.Reader
	closer func()
}

const probeInside = "/.bwrap-r-probe"

func startSandbox(c Config, net bwrap.Network, command string, args ...string) (*probeRun, error) {
	return startSandboxWith(c, nil, net, command, args...)
}

// startSandboxWith is startSandbox with extra mounts after the probe's.
func startSandboxWith(c Config, extra []bwrap.Mount, net bwrap.Network, command string, args ...string) (*probeRun, error) {
	if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
		return nil, err
	}
	status, err := os.CreateTemp(c.StateDir, "preflight-*.status")
	if err != nil {
		return nil, err
	}
	statusPath := status.Name()
	status.Close()
	os.Remove(statusPath)
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	mounts := bwrap.SystemMounts(1 << 20)
	if c.ProbeBinary != "" {
		mounts = append(mounts, bwrap.Mount{Kind: bwrap.ROBind, Source: c.ProbeBinary, Dest: probeInside})
	}
	mounts = append(mounts, extra...)
	sb, err := bwrap.Start(bwrap.Launch{
		Bwrap: c.BwrapPath, Shim: c.Shim,
		Spec: &bwrap.Spec{
			Command: command, Args: args,
			Env:    map[string]string{"PATH": "/usr/bin:/bin"},
			Mounts: mounts,
			UID:    c.UID, GID: c.GID, Hostname: "preflight", Network: net,
		},
		Stdin: inR, Stdout: outW, Stderr: outW,
		StatusPath: statusPath,
		StageDir:   c.StageDir,
	})
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, err
	}
	return &probeRun{sb: sb, stdin: inW, stdout: bufio.NewReader(outR), closer: func() {
		inW.Close()
		outR.Close()
		_ = sb.Kill()
		sb.Wait(10 * time.Second)
		os.Remove(statusPath)
	}}, nil
}

// checkUIDMapping starts a sandbox as the pool UID and checks both views: the
// host sees UID and GID N, and inside the map is the identity "N N 1".
func checkUIDMapping(ctx context.Context, r *Report, c Config) {
	fix := "run the plugin as root with a bwrap readable by task UIDs; see the uid_map and dumpable notes in the README"
	p, err := startSandbox(c, bwrap.NetworkShared, "/bin/sh", "-c", "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; read x")
	if err != nil {
		r.add("uid_mapping", Error, err.Error(), fix)
		return
	}
	defer p.closer()
	var lines []string
	for i := 0; i < 4; i++ {
		line, err := p.stdout.ReadString('\n')
		if err != nil {
			r.add("uid_mapping", Error, fmt.Sprintf("sandbox as uid %d printed %q: %v", c.UID, strings.Join(lines, " "), err), fix)
			return
		}
		lines = append(lines, strings.Join(strings.Fields(line), " "))
	}
	cmd, err := p.sb.Command()
	var hostUID, hostGID string
	if err == nil {
		hostUID, hostGID = statusIDs(cmd.Pid)
	}
	u, g := strconv.Itoa(int(c.UID)), strconv.Itoa(int(c.GID))
	want := []string{u, g, u + " " + u + " 1", g + " " + g + " 1"}
	if strings.Join(lines, "|") != strings.Join(want, "|") || hostUID != u || hostGID != g {
		r.add("uid_mapping", Error, fmt.Sprintf("inside %q, host sees uid %q gid %q; want uid/gid %s/%s with an identity map", lines, hostUID, hostGID, u, g), fix)
		return
	}
	r.add("uid_mapping", OK, fmt.Sprintf("a task as uid %s is host uid %s gid %s, map %q", u, hostUID, hostGID, want[2]), "")
}

// checkTaskStart starts a sandbox the way a task starts: a task's dirs made
// as the client makes them, in a root-only 0700 dir below the client's alloc
// dir (as data_dir is on a standard client), bound by descriptor, written and
// read by the task's UID.
func checkTaskStart(r *Report, c Config) {
	root := c.AllocRoot
	where := "the client's alloc dir " + root
	if root == "" {
		root, where = c.StateDir, "the state dir "+c.StateDir+" (the client's alloc dir is not known yet)"
	}
	fix := "see the error: the client's dirs must be on a local filesystem that supports bind mounts, and the state dir (" + c.StateDir + ") must be root's"
	dir, err := os.MkdirTemp(root, ".bwrap-r-preflight-")
	if err != nil {
		r.add("task_start", Error, fmt.Sprintf("making a task dir in %s: %v", where, err), fix)
		return
	}
	defer os.RemoveAll(dir)
	local := filepath.Join(dir, "local")
	err = os.Chmod(dir, 0o700)
	if err == nil {
		err = os.Mkdir(local, 0o700)
	}
	if err == nil {
		err = os.Chown(local, int(c.UID), int(c.GID))
	}
	if err != nil {
		r.add("task_start", Error, fmt.Sprintf("making a task dir in %s: %v", where, err), fix)
		return
	}
	uid := c.UID
	p, err := startSandboxWith(c, []bwrap.Mount{{Kind: bwrap.Bind, Source: local, Dest: "/local", Beneath: dir, Owner: &uid, MustBeDir: true}},
		bwrap.NetworkShared, "/bin/sh", "-c", "echo written > /local/probe && cat /local/probe")
	if err != nil {
		r.add("task_start", Error, fmt.Sprintf("a task in %s did not start: %v", where, err), fix)
		return
	}
	defer p.closer()
	p.stdin.Close()
	out, _ := io.ReadAll(io.LimitReader(p.stdout, 4096))
	st := p.sb.Status()
	if st.Err != nil || st.Code != 0 || string(out) != "written\n" {
		r.add("task_start", Error, fmt.Sprintf("a task in %s as uid %d: exit %d %v, output %q", where, c.UID, st.Code, st.Err, out), fix)
		return
	}
	r.add("task_start", OK, fmt.Sprintf("a task started as uid %d in a root-only dir in %s and wrote its /local", c.UID, where), "")
}

func statusIDs(pid int) (uid, gid string) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return "", ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && f[0] == "Uid:" {
			uid = f[1]
		}
		if len(f) > 1 && f[0] == "Gid:" {
			gid = f[1]
		}
	}
	return uid, gid
}

// probeLine is what the probe prints per target.
type probeLine struct {
	Target    string `json:"target"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
}

// checkEgress runs the probe in a sandbox as the pool UID: every target must
// be unreachable.
func checkEgress(ctx context.Context, r *Report, c Config, bwrapOK bool) {
	if len(c.Targets) == 0 {
		r.add("egress", Warning, "no blocked targets configured", "list the metadata address and the Nomad, Consul, Vault and database addresses in egress { probe = [...] }")
		return
	}
	name := func(t Target) string { return "egress." + t.Name }
	fail := func(detail, fix string) {
		for _, t := range c.Targets {
			r.add(name(t), Error, detail, fix)
		}
	}
	if !bwrapOK {
		fail("not probed: bwrap is missing", "install bubblewrap")
		return
	}
	args := []string{ProbeCommand, "-timeout", c.Timeout.String()}
	for _, t := range c.Targets {
		args = append(args, t.Address)
	}
	p, err := startSandbox(c, bwrap.NetworkShared, probeInside, args...)
	if err != nil {
		fail("probe sandbox: "+err.Error(), "see the uid_mapping check")
		return
	}
	defer p.closer()
	p.stdin.Close()
	results := map[string]probeLine{}
	for range c.Targets {
		line, err := p.stdout.ReadString('\n')
		if err != nil {
			break
		}
		var pl probeLine
		if json.Unmarshal([]byte(line), &pl) == nil {
			results[pl.Target] = pl
		}
	}
	for _, t := range c.Targets {
		pl, ok := results[t.Address]
		switch {
		case !ok:
			r.add(name(t), Error, "the probe reported nothing for "+t.Address, "check that the bwrap-r binary is readable by the task UIDs")
		case pl.Reachable && t.WarnOnly:
			r.add(name(t), Warning, fmt.Sprintf("%s is reachable from a task (uid %d)", t.Address, c.UID), "block it for the task UID range (egress { manage_rules = true }) if tasks must not reach it")
		case pl.Reachable:
			r.add(name(t), Error, fmt.Sprintf("%s is reachable from a task (uid %d)", t.Address, c.UID), "block it: egress { manage_rules = true  deny = [...] }, or your own owner-match firewall rules for the task UID range")
		default:
			r.add(name(t), OK, fmt.Sprintf("%s unreachable from a task: %s", t.Address, pl.Error), "")
		}
	}
}

// RunProbe is the probe subcommand: a TCP connect to each target with a
// timeout, one JSON line each.
func RunProbe(args []string) int {
	timeout := 2 * time.Second
	if len(args) >= 2 && args[0] == "-timeout" {
		if d, err := time.ParseDuration(args[1]); err == nil {
			timeout = d
		}
		args = args[2:]
	}
	enc := json.NewEncoder(os.Stdout)
	for _, target := range args {
		pl := probeLine{Target: target}
		conn, err := net.DialTimeout("tcp", target, timeout)
		if err == nil {
			pl.Reachable = true
			conn.Close()
		} else {
			pl.Error = shortErr(err)
		}
		_ = enc.Encode(pl)
	}
	return 0
}

func shortErr(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}

// SelfExecutable is this process's executable, for ProbeBinary.
func SelfExecutable() string {
	p, err := os.Executable()
	if err != nil {
		return ""
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}
