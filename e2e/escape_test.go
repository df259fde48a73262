package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// The escape battery (SECURITY.md's "What a task cannot do", through a real
// agent): each probe is a task, in a group (an allocation) of its own, whose
// script in e2e/escape/ tries one thing a task must not do and prints
// "BLOCKED: why" (exit 0) when every attempt failed or "ESCAPED: what" (exit
// 1) when one succeeded. Some verdicts need the host's view too (a canary
// file, a listener's count, an OOM event); the test adds them. Controls
// (ctl-*) show that a probe's method works where it should, so that a
// refusal is the sandbox's and not a broken probe's.
//
// One agent (a one-node cluster) serves the battery: dynamic workload users
// and task_uid_range 83000-83099, tmp_size_mb = 16, and managed egress rules
// denying three loopback stand-ins: the "metadata" address, a probe target
// and the agent's own HTTP API. Nothing leaves loopback. Two probes run
// through `nomad alloc exec` into a running task, and agent-crash-cpu-stats
// first runs in a dev agent of its own. The test prints "N probes, M
// blocked" and fails when a probe escaped, gave no verdict, or a control
// failed.

const (
	escUIDMin, escUIDMax = 83000, 83099
	// escOutsideUID is a host UID outside the pool, for the unsandboxed
	// control of the keyring probe.
	escOutsideUID = 83500
)

// escProbe is one probe or control of the battery.
type escProbe struct {
	name string // group name; the script is e2e/escape/<name>.sh
	// control: a control's verdict is OK or FAIL, and it is not counted
	// among the probes.
	control bool
	config  string // extra task config lines
	memory  int    // MiB; 64 when 0
	// special builds the whole group (lifecycle tasks); the verdict comes
	// from the host's checks.
	special func() string
}

type escVerdict struct {
	name, verdict, why string
	control            bool
}

// escRand returns n random bytes in hex.
func escRand(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// escScript reads a probe's script with lib.sh in front of it.
func escScript(t *testing.T, name string) string {
	t.Helper()
	read := func(n string) string {
		b, err := os.ReadFile(filepath.Join(repoRoot, "e2e", "escape", n+".sh"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	s := read("lib") + "\n" + read(name)
	// Nomad interpolates ${...} in a task's config at run time, and HCL
	// both ${...} and %{...}: the scripts must not hold either.
	if strings.Contains(s, "${") || strings.Contains(s, "%{") {
		t.Fatalf("e2e/escape/%s.sh (or lib.sh) holds ${ or %%{, which Nomad would interpolate", name)
	}
	return s
}

// hclStr quotes s as an HCL string.
func hclStr(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`, "\r", `\r`, "${", "$${", "%{", "%%{")
	return `"` + r.Replace(s) + `"`
}

// hclEnv is an env block.
func hclEnv(env map[string]string, indent string) string {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(indent + "env {\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s  %s = %s\n", indent, k, hclStr(env[k]))
	}
	b.WriteString(indent + "}\n")
	return b.String()
}

const escGroupHead = `  group %q {
` + runOnce + `    ephemeral_disk {
      size = 10
    }
`

// escTask is a bwrap-r task running /bin/sh -c script.
func escTask(name, lifecycle, script, config string, env map[string]string, memory int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "    task %q {\n      driver = \"bwrap-r\"\n", name)
	if lifecycle != "" {
		fmt.Fprintf(&b, "      lifecycle {\n        hook    = %q\n        sidecar = false\n      }\n", lifecycle)
	}
	fmt.Fprintf(&b, "      config {\n        command = \"/bin/sh\"\n        args    = [\"-c\", %s]\n", hclStr(script))
	if config != "" {
		b.WriteString(config + "\n")
	}
	b.WriteString("      }\n")
	if len(env) > 0 {
		b.WriteString(hclEnv(env, "      "))
	}
	// Logs within the group's 10 MB ephemeral disk.
	b.WriteString("      logs {\n        max_files     = 2\n        max_file_size = 2\n      }\n")
	fmt.Fprintf(&b, "      resources {\n        cpu    = 20\n        memory = %d\n      }\n    }\n", memory)
	return b.String()
}

// escListener counts what reaches a loopback TCP or UDP port.
type escListener struct {
	port  int
	count atomic.Int64
	close func()
}

func escListenTCP(t *testing.T, port int) *escListener {
	t.Helper()
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	el := &escListener{port: l.Addr().(*net.TCPAddr).Port, close: func() { l.Close() }}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			el.count.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(el.close)
	return el
}

func escListenUDP(t *testing.T, port int) *escListener {
	t.Helper()
	c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	el := &escListener{port: c.LocalAddr().(*net.UDPAddr).Port, close: func() { c.Close() }}
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := c.ReadFrom(buf); err != nil {
				return
			}
			el.count.Add(1)
		}
	}()
	t.Cleanup(el.close)
	return el
}

// escListenUnix listens on a UNIX socket (path, or "@name" for an abstract
// one) that every host UID may connect to.
func escListenUnix(t *testing.T, path string) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(path, "@") {
		if err := os.Chmod(path, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		if !strings.HasPrefix(path, "@") {
			os.Remove(path)
		}
	})
	// The host reaches it: the probes' refusals are the sandbox's.
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		t.Fatalf("the host cannot connect to its own %s: %v", path, err)
	}
	c.Close()
}

// escFind returns the first path below root (at most depth levels down)
// whose base name is name and whose type matches dir.
func escFind(root, name string, dir bool, depth int) string {
	var found string
	base := strings.Count(root, "/")
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || found != "" {
			return filepath.SkipDir
		}
		if d.Name() == name && d.IsDir() == dir && p != root {
			found = p
			return filepath.SkipAll
		}
		if d.IsDir() && strings.Count(p, "/")-base >= depth {
			return filepath.SkipDir
		}
		return nil
	})
	return found
}

// escPidsCgroup finds a task's pids cgroup (v1: the one bwrap-r makes in
// the pids hierarchy; v2: the task's scope), or "".
func escPidsCgroup(allocID, task string) string {
	for _, pattern := range []string{
		"/sys/fs/cgroup/pids/nomad/" + allocID + "." + task,
		"/sys/fs/cgroup/nomad.slice/*/" + allocID + "." + task + ".scope",
	} {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			return m[0]
		}
	}
	return ""
}

// escKeyed reads the value of key in a "key value" file (0 if missing).
func escKeyed(path, key string) uint64 {
	b, _ := os.ReadFile(path)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == key {
			n, _ := strconv.ParseUint(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// escLogs returns a task's whole stdout or stderr through the client's API.
func (a *agent) escLogs(allocID, task, typ string) string {
	c := http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get(fmt.Sprintf("%s/v1/client/fs/logs/%s?task=%s&type=%s&origin=start&offset=0&plain=true", a.addr, allocID, task, typ))
	if err != nil {
		return fmt.Sprintf("(logs: %v)", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("(logs: %s: %s)", resp.Status, strings.TrimSpace(string(b)))
	}
	return string(b)
}

type escAllocStub struct{ ID, TaskGroup, ClientStatus string }

// escAllocs returns the job's allocations by group.
func (a *agent) escAllocs(job string) (map[string]escAllocStub, error) {
	var stubs []escAllocStub
	if err := a.get("/v1/job/"+job+"/allocations", &stubs); err != nil {
		return nil, err
	}
	m := map[string]escAllocStub{}
	for _, s := range stubs {
		m[s.TaskGroup] = s
	}
	return m, nil
}

// escVerdictOf reads a task's verdict line and checks it against its exit.
func escVerdictOf(out string, exitCode int, control bool) (string, string) {
	want := map[string]int{"BLOCKED": 0, "ESCAPED": 1}
	if control {
		want = map[string]int{"OK": 0, "FAIL": 1}
	}
	for _, line := range strings.Split(out, "\n") {
		for v, code := range want {
			if why, ok := strings.CutPrefix(line, v+": "); ok {
				if exitCode != code {
					return "ERROR", fmt.Sprintf("printed %s but exited %d: %s", v, exitCode, why)
				}
				return v, why
			}
		}
	}
	return "ERROR", fmt.Sprintf("no verdict line (exit %d); output: %q", exitCode, strings.TrimSpace(out))
}

// escNft reports the managed egress table, "" when there is none.
func escNft(table string) string {
	out, err := exec.Command("nft", "list", "table", "inet", table).CombinedOutput()
	if err != nil {
		return ""
	}
	return string(out)
}

// escDeleteNftTables removes the battery's egress tables: the plugin's, and
// the per-task ones of egress_deny should a task's stop have left one.
func escDeleteNftTables(t *testing.T) {
	out, _ := exec.Command("nft", "list", "tables").Output()
	for _, line := range strings.Split(string(out), "\n") {
		fs := strings.Fields(line)
		if len(fs) != 3 || fs[0] != "table" || fs[1] != "inet" {
			continue
		}
		name := fs[2]
		if name == "bwrap_r" || strings.HasPrefix(name, "bwrap_r_uid83") {
			if out, err := exec.Command("nft", "delete", "table", "inet", name).CombinedOutput(); err != nil {
				t.Errorf("nft delete table inet %s: %v: %s", name, err, out)
			}
		}
	}
}

// TestEscapeBattery runs every probe as a task of a real agent. See the
// comment at the top of this file.
func TestEscapeBattery(t *testing.T) {
	setup(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatal("the battery needs nft: its agent manages egress rules")
	}
	start := time.Now()
	rnd := escRand(t, 6)

	// First, in a dev agent of its own: can a task crash the agent?
	var crashVerdict, crashWhy string
	t.Run("agent-crash-cpu-stats", func(t *testing.T) {
		crashVerdict, crashWhy = escAgentCrashProbe(t)
		if crashVerdict != "BLOCKED" {
			t.Errorf("%s: %s", crashVerdict, crashWhy)
		}
	})
	if crashVerdict == "" {
		crashVerdict, crashWhy = "ERROR", "the probe did not run to its end"
	}
	t.Logf("agent-crash-cpu-stats: %s: %s", crashVerdict, crashWhy)

	// The loopback stand-ins the egress config denies, and two it does not.
	meta := escListenTCP(t, 0)
	metaUDP := escListenUDP(t, meta.port)
	probeTarget := escListenTCP(t, 0)
	open := escListenTCP(t, 0)
	openUDP := escListenUDP(t, open.port)
	taskDeny := escListenTCP(t, 0)

	// UNIX sockets on the host: in /tmp, in /run, abstract.
	sockTmp := "/tmp/bwrap-r-probe-" + rnd + ".sock"
	sockRun := "/run/bwrap-r-probe-" + rnd + ".sock"
	abstract := "bwrap-r-probe-" + rnd
	escListenUnix(t, sockTmp)
	escListenUnix(t, sockRun)
	escListenUnix(t, "@"+abstract)

	// A key in root's user keyring that every UID may read (keyrings are
	// not namespaced).
	keyDesc := "bwrap-r-probe-" + rnd
	keySecret := "key-secret-" + rnd
	keyID, err := unix.AddKey("user", keyDesc, []byte(keySecret), unix.KEY_SPEC_USER_KEYRING)
	if err != nil {
		t.Fatalf("add_key: %v", err)
	}
	t.Cleanup(func() {
		if _, err := unix.KeyctlInt(unix.KEYCTL_INVALIDATE, keyID, 0, 0, 0); err != nil {
			t.Errorf("invalidating key %d: %v", keyID, err)
		}
	})
	if err := unix.KeyctlSetperm(keyID, 0x3f3f3f3f); err != nil {
		t.Fatalf("keyctl setperm: %v", err)
	}
	// Unsandboxed, a UID outside the pool reads it: the probe is not vacuous.
	if out, err := exec.Command("setpriv", "--reuid", strconv.Itoa(escOutsideUID), "--regid", strconv.Itoa(escOutsideUID), "--clear-groups",
		"perl", "-e", `my $b = "\0" x 256; my $r = syscall(250, 11, $ARGV[0] + 0, $b, 256); print $r >= 0 ? substr($b, 0, $r) : "error: $!"`,
		strconv.Itoa(keyID)).CombinedOutput(); err != nil || string(out) != keySecret {
		t.Logf("note: unsandboxed uid %d could not read key %d either (%v: %s)", escOutsideUID, keyID, err, out)
	} else {
		t.Logf("unsandboxed, uid %d reads key %d (%s): only the sandbox stands between a task and it", escOutsideUID, keyID, keyDesc)
	}

	// Canaries for the planted-link probes.
	canarySecret := "canary-secret-" + rnd
	canaryFifo := "/tmp/bwrap-r-canary-" + rnd + "-fifo"
	canaryFile := "/tmp/bwrap-r-canary-" + rnd + "-file"
	canaryDir := "/tmp/bwrap-r-canary-" + rnd + ".d"
	for _, c := range []string{canaryFifo, canaryFile} {
		if err := os.WriteFile(c, []byte("host file "+c+"\n"+canarySecret+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(canaryDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range []string{canaryFifo, canaryFile, canaryDir} {
			if err := os.RemoveAll(c); err != nil {
				t.Errorf("removing canary %s: %v", c, err)
			}
		}
	})
	canaryBefore := map[string][]byte{}
	for _, c := range []string{canaryFifo, canaryFile} {
		canaryBefore[c], _ = os.ReadFile(c)
	}

	// In the agent's environment, and so never in a task's.
	t.Setenv("BWRAP_R_PROBE_AGENT_SECRET", "agent-secret-"+rnd)

	// Removed after the agent has stopped (cleanups run last-in first-out).
	t.Cleanup(func() { escDeleteNftTables(t) })
	// A one-node cluster: unlike a dev agent, it does not force
	// publish_allocation_metrics on (see escAgentCrashProbe), and its client
	// state and server keyring are on disk for the probes to try.
	a := newAgentOpts(t, agentOpts{server: true, pluginFor: func(http int) string {
		return fmt.Sprintf(`    tmp_size_mb    = 16
    task_uid_range = "%d-%d"
    egress {
      metadata     = "127.0.0.1:%d"
      probe        = ["127.0.0.1:%d", "127.0.0.1:%d"]
      manage_rules = true
      deny         = ["127.0.0.1:%d", "127.0.0.1:%d", "127.0.0.1:%d"]
      remove_rules_on_shutdown = true
    }`, escUIDMin, escUIDMax, meta.port, probeTarget.port, http, meta.port, probeTarget.port, http)
	}, client: fmt.Sprintf("  # The battery's allocations stay (and their logs readable) until the end.\n  gc_max_allocs = 500\n  users {\n    dynamic_user_min = %d\n    dynamic_user_max = %d\n  }", escUIDMin, escUIDMax)})
	apiPort, _ := strconv.Atoi(a.addr[strings.LastIndexByte(a.addr, ':')+1:])
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", a.cmd.Process.Pid)); err != nil || !bytes.Contains(b, []byte("BWRAP_R_PROBE_AGENT_SECRET=agent-secret-"+rnd)) {
		t.Fatalf("the agent's environment lacks BWRAP_R_PROBE_AGENT_SECRET (%v): agent-env would prove nothing", err)
	}
	if err := a.waitDriver(true, 90*time.Second); err != nil {
		d, _ := a.driver()
		t.Fatalf("bwrap-r is not healthy (its preflight must find every egress target blocked): %v\n%+v", err, d)
	}
	rules := escNft("bwrap_r")
	for _, p := range []int{meta.port, probeTarget.port, apiPort} {
		if !strings.Contains(rules, fmt.Sprintf("dport %d ", p)) {
			t.Fatalf("the managed egress table does not deny port %d:\n%s", p, rules)
		}
	}
	t.Logf("agent %s (pid %d), egress table inet bwrap_r denies 127.0.0.1:%d (metadata), :%d (probe), :%d (API)",
		a.addr, a.cmd.Process.Pid, meta.port, probeTarget.port, apiPort)

	// The victim: a running task with secrets in /local, /secrets,
	// alloc/data and its log.
	victimSecret := "victim-secret-" + rnd
	const victimJob = "escape-victim"
	victimFile := writeJob(t, victimJob, fmt.Sprintf(`job %q {
  type = "service"
%s%s  }
}
`, victimJob, fmt.Sprintf(escGroupHead, "victim"), escTask("victim", "",
		`echo "$VICTIM_SECRET" > /local/secret.txt && echo "$VICTIM_SECRET" > /alloc/data/secret.txt && echo "$VICTIM_SECRET" && exec sleep 3600`,
		"", map[string]string{"VICTIM_SECRET": victimSecret}, 32)))
	a.runJob(t, victimFile, victimJob)
	victim := a.waitRunning(t, victimJob, "victim", time.Minute)
	victimAlloc := escFind(a.dir, victim.ID, true, 4)
	if victimAlloc == "" {
		t.Fatalf("no alloc dir %s below %s", victim.ID, a.dir)
	}
	victimDir := filepath.Join(victimAlloc, "victim")
	// The victim's /secrets is read-only: its token comes as the client's
	// do, written on the host as root.
	if err := os.WriteFile(filepath.Join(victimDir, "secrets", "token"), []byte(victimSecret+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var victimUID, victimPID int
	eventually(30*time.Second, 250*time.Millisecond, func() bool {
		b, err := os.ReadFile(filepath.Join(victimDir, "secrets", "token"))
		if err != nil || strings.TrimSpace(string(b)) != victimSecret {
			return false
		}
		fi, err := os.Stat(filepath.Join(victimDir, "local"))
		if err != nil {
			return false
		}
		victimUID = int(fi.Sys().(*syscall.Stat_t).Uid)
		if p, err := processNamed(victimUID, "sleep"); err == nil {
			victimPID = p.pid
		}
		return victimPID != 0
	})
	if victimPID == 0 {
		t.Fatalf("the victim's secrets or its sleep (uid %d) did not show on the host below %s", victimUID, victimDir)
	}
	for _, f := range []string{"local/secret.txt", "secrets/token"} {
		if b, err := os.ReadFile(filepath.Join(victimDir, f)); err != nil || strings.TrimSpace(string(b)) != victimSecret {
			t.Fatalf("the victim's %s on the host: %q, %v", f, b, err)
		}
	}
	t.Logf("victim: alloc %s, host task dir %s, uid %d, sleep pid %d", victim.ID, victimDir, victimUID, victimPID)

	agentData := filepath.Dir(victimAlloc)
	// The client's state and the server's raft store (jobs, variables, the
	// wrapped root keys that sign workload identities).
	agentState := escFind(filepath.Join(a.dir, "data"), "state.db", false, 3)
	raftDB := escFind(filepath.Join(a.dir, "data"), "raft.db", false, 4)
	if agentState == "" || raftDB == "" {
		t.Fatalf("no client state.db (%q) or server raft.db (%q) below %s", agentState, raftDB, a.dir)
	}
	blockDev, blockMajMin := "vda", ""
	if devs, _ := filepath.Glob("/sys/block/*/dev"); len(devs) > 0 {
		for _, d := range devs {
			name := filepath.Base(filepath.Dir(d))
			if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "zram") || strings.HasPrefix(name, "ram") {
				continue
			}
			b, _ := os.ReadFile(d)
			blockDev, blockMajMin = name, strings.TrimSpace(string(b))
			break
		}
	}
	if blockMajMin == "" {
		blockMajMin = "253:0"
	}

	env := map[string]string{
		"AGENT_DIR":       a.dir,
		"AGENT_DATA":      agentData,
		"AGENT_CONF":      a.conf,
		"AGENT_LOG":       a.log,
		"PLUGIN_STATE":    "/run/bwrap-r",
		"AGENT_STATE":     agentState,
		"AGENT_RAFT":      raftDB,
		"AGENT_PID":       strconv.Itoa(a.cmd.Process.Pid),
		"VICTIM_DIR":      victimDir,
		"VICTIM_ALLOC":    victimAlloc,
		"VICTIM_ALLOC_ID": victim.ID,
		"VICTIM_PID":      strconv.Itoa(victimPID),
		"VICTIM_UID":      strconv.Itoa(victimUID),
		"SOCK_TMP":        sockTmp,
		"SOCK_RUN":        sockRun,
		"ABSTRACT":        abstract,
		"PORT_META":       strconv.Itoa(meta.port),
		"PORT_PROBE":      strconv.Itoa(probeTarget.port),
		"PORT_API":        strconv.Itoa(apiPort),
		"PORT_OPEN":       strconv.Itoa(open.port),
		"PORT_TASKDENY":   strconv.Itoa(taskDeny.port),
		"BLOCK_DEV":       blockDev,
		"BLOCK_MAJMIN":    blockMajMin,
		"KEY_SERIAL":      strconv.Itoa(keyID),
		"KEY_DESC":        keyDesc,
	}
	for _, p := range []string{a.conf, a.log, "/run/bwrap-r", agentState, raftDB} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("host path for the probes: %v", err)
		}
	}

	// The planted-link probes: a prestart task plants, the main task writes
	// its output, a poststop task shows what the allocation can read.
	withCanary := func(planter, canaryEnv, canary, mainConfig string, collect bool) func() string {
		return func() string {
			s := escTask("plant", "prestart", escScript(t, planter), "", map[string]string{canaryEnv: canary}, 32) +
				escTask("main", "", `echo "main-output-$MARKER"; echo "main-error-$MARKER" >&2`, mainConfig, map[string]string{"MARKER": rnd}, 32)
			if collect {
				s += escTask("collect", "poststop", escScript(t, "collect-logs"), "", nil, 32)
			}
			return s
		}
	}
	probes := []escProbe{
		{name: "read-shadow"},
		{name: "read-agent-config"},
		{name: "read-agent-datadir"},
		{name: "read-victim-local"},
		{name: "read-victim-secrets"},
		{name: "read-victim-alloc"},
		{name: "find-victim-secret"},
		{name: "host-dirs"},
		{name: "proc-kernel"},
		{name: "agent-env"},
		{name: "write-usr"},
		{name: "write-etc"},
		{name: "write-root"},
		{name: "write-proc-sys"},
		{name: "write-sys"},
		{name: "write-dev"},
		{name: "write-self"},
		{name: "mknod"},
		{name: "see-processes"},
		{name: "kill-host-pid"},
		{name: "ptrace"},
		{name: "launcher-leftovers"},
		{name: "mount"},
		{name: "userns"},
		{name: "setns-chroot"},
		{name: "caps"},
		{name: "setuid-binaries"},
		{name: "setuid-syscalls"},
		{name: "unix-socket-tmp"},
		{name: "unix-socket-run"},
		{name: "abstract-socket", config: `        network = "none"`},
		{name: "raw-socket"},
		{name: "packet-socket"},
		{name: "net-admin"},
		{name: "egress-metadata"},
		{name: "egress-probe-target"},
		{name: "egress-nomad-api"},
		{name: "task-api"},
		{name: "secrets-plant"},
		{name: "egress-v4mapped"},
		{name: "egress-udp"},
		{name: "egress-task-deny", config: fmt.Sprintf(`        egress_deny = ["127.0.0.1:%d"]`, taskDeny.port)},
		{name: "devices"},
		{name: "tty-tiocsti"},
		{name: "keyring"},
		{name: "kernel-syscalls"},
		{name: "tmp-exhaust", memory: 128},
		{name: "fork-bomb", config: `        pids_limit = 64`},
		{name: "memory-bomb", memory: 64},
		{name: "logfifo-symlink", special: withCanary("plant-logfifo", "CANARY", canaryFifo, "", true)},
		{name: "logfile-symlink", special: withCanary("plant-logfile", "CANARY", canaryFile, "", false)},
		{name: "rlib-symlink", special: withCanary("plant-rlib", "CANARY_DIR", canaryDir, `        r_lib_writable = "/alloc/lib/pkgs"`, false)},
		{name: "ctl-tcp", control: true},
		{name: "ctl-task-deny-other", control: true},
		{name: "ctl-abstract-host", control: true},
		{name: "ctl-unix-self", control: true, config: `        network = "none"`},
		{name: "ctl-udp", control: true},
		{name: "ctl-syscalls", control: true},
		{name: "ctl-writable", control: true},
	}

	const job = "escape"
	var hcl strings.Builder
	fmt.Fprintf(&hcl, "job %q {\n  type = \"batch\"\n", job)
	for _, p := range probes {
		fmt.Fprintf(&hcl, escGroupHead, p.name)
		if p.special != nil {
			hcl.WriteString(p.special())
		} else {
			probeEnv := env
			if p.name == "find-victim-secret" {
				probeEnv = map[string]string{"VICTIM_SECRET": victimSecret}
			}
			mem := p.memory
			if mem == 0 {
				mem = 64
			}
			hcl.WriteString(escTask("probe", "", escScript(t, p.name), p.config, probeEnv, mem))
		}
		hcl.WriteString("  }\n")
	}
	hcl.WriteString("}\n")
	file := writeJob(t, job, hcl.String())

	// While the battery runs: the agent's API latency (is the node
	// responsive during the bombs?) and the fork bomb's host processes.
	stopMon := make(chan struct{})
	var monWG sync.WaitGroup
	var maxLatency time.Duration
	var apiFailures int
	var bombUID, bombMax int
	// The fork bomb's pids cgroup: the most processes it held at once
	// (pids.current, the kernel's own count) and how often the limit
	// refused a fork (pids.events "max").
	var bombCgroup string
	var bombPidsMax, bombRefused uint64
	monWG.Add(1)
	go func() {
		defer monWG.Done()
		c := http.Client{Timeout: 30 * time.Second}
		var bombDir string
		for {
			select {
			case <-stopMon:
				return
			case <-time.After(500 * time.Millisecond):
			}
			t0 := time.Now()
			resp, err := c.Get(a.addr + "/v1/agent/health")
			if err != nil {
				apiFailures++
			} else {
				resp.Body.Close()
			}
			if d := time.Since(t0); d > maxLatency {
				maxLatency = d
			}
			if bombUID == 0 {
				if bombDir == "" {
					if allocs, err := a.escAllocs(job); err == nil {
						if s, ok := allocs["fork-bomb"]; ok {
							if d := escFind(agentData, s.ID, true, 1); d != "" {
								bombDir = filepath.Join(d, "probe", "local")
							}
						}
					}
				}
				if fi, err := os.Stat(bombDir); bombDir != "" && err == nil {
					if uid := int(fi.Sys().(*syscall.Stat_t).Uid); uid >= escUIDMin {
						bombUID = uid
					}
				}
			}
			if bombUID != 0 {
				if n := len(procsOfUID(bombUID)); n > bombMax {
					bombMax = n
				}
			}
		}
	}()
	// The fork bomb's pids cgroup, read often: the bomb lasts 10 s.
	monWG.Add(1)
	go func() {
		defer monWG.Done()
		var bombAlloc string
		for {
			select {
			case <-stopMon:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if bombAlloc == "" {
				if allocs, err := a.escAllocs(job); err == nil {
					bombAlloc = allocs["fork-bomb"].ID
				}
				continue
			}
			if bombCgroup == "" {
				bombCgroup = escPidsCgroup(bombAlloc, "probe")
				continue
			}
			if b, err := os.ReadFile(filepath.Join(bombCgroup, "pids.current")); err == nil {
				if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n > bombPidsMax {
					bombPidsMax = n
				}
			}
			if n := escKeyed(filepath.Join(bombCgroup, "pids.events"), "max"); n > bombRefused {
				bombRefused = n
			}
		}
	}()

	a.runJob(t, file, job)
	var allocs map[string]escAllocStub
	var last string
	done := eventually(5*time.Minute, time.Second, func() bool {
		var err error
		allocs, err = a.escAllocs(job)
		if err != nil {
			last = err.Error()
			return false
		}
		pending := []string{}
		for _, p := range probes {
			s, ok := allocs[p.name]
			if !ok || (s.ClientStatus != "complete" && s.ClientStatus != "failed" && s.ClientStatus != "lost") {
				pending = append(pending, p.name)
			}
		}
		last = fmt.Sprintf("%d of %d groups not done: %v", len(pending), len(probes), pending)
		return len(pending) == 0
	})
	close(stopMon)
	monWG.Wait()
	if !done {
		t.Fatalf("the battery did not finish in 5 minutes: %s", last)
	}
	t.Logf("battery done after %v", time.Since(start).Round(time.Second))

	var verdicts []escVerdict
	add := func(name, verdict, why string, control bool) {
		verdicts = append(verdicts, escVerdict{name: name, verdict: verdict, why: why, control: control})
	}
	add("agent-crash-cpu-stats", crashVerdict, crashWhy, false)
	for _, p := range probes {
		s := allocs[p.name]
		var al allocation
		if err := a.get("/v1/allocation/"+s.ID, &al); err != nil {
			add(p.name, "ERROR", err.Error(), p.control)
			continue
		}
		if p.special != nil {
			v, why := escSpecial(a, p.name, &al, canaryFifo, canaryFile, canaryDir, canaryBefore)
			add(p.name, v, why, false)
			if p.name == "logfifo-symlink" {
				v, why := escLogLeak(a, &al, agentData, canaryFifo, canarySecret)
				add(p.name+"-read", v, why, false)
			}
			continue
		}
		exit := -1
		if term := al.events("probe", "Terminated"); len(term) > 0 {
			exit = term[len(term)-1].ExitCode
		}
		stdout := a.escLogs(s.ID, "probe", "stdout")
		v, why := escVerdictOf(stdout, exit, p.control)
		if v == "ERROR" {
			why += "; stderr: " + strings.TrimSpace(a.escLogs(s.ID, "probe", "stderr")) + "; events: " + al.allEvents("probe")
		}
		// The host's side of some verdicts.
		switch p.name {
		case "memory-bomb":
			v, why = escOOMVerdict(&al, stdout)
		case "fork-bomb":
			// Listings of /proc (inside, or the host's per uid) take time
			// while the bomb churns, so they can count more processes than
			// ever existed at once: the cgroup's own count decides.
			switch {
			case bombCgroup == "":
				v, why = "ERROR", "no pids cgroup found for the fork bomb's task; "+why
			case bombPidsMax > 64:
				v, why = "ESCAPED", fmt.Sprintf("the bomb's pids cgroup held %d processes (pids_limit = 64); %s", bombPidsMax, why)
			case bombRefused == 0:
				v, why = "ERROR", fmt.Sprintf("the bomb never reached its limit (pids.events max = 0, pids.current at most %d); %s", bombPidsMax, why)
			case v == "BLOCKED":
				why = fmt.Sprintf("the pids cgroup held at most %d processes and refused %d forks (pids_limit = 64); %s; listed on the host: at most %d processes of uid %d", bombPidsMax, bombRefused, why, bombMax, bombUID)
			}
		case "egress-metadata":
			if n := meta.count.Load(); n > 0 {
				v, why = "ESCAPED", fmt.Sprintf("the metadata stand-in 127.0.0.1:%d accepted %d connections; %s", meta.port, n, why)
			}
		case "egress-probe-target":
			if n := probeTarget.count.Load(); n > 0 {
				v, why = "ESCAPED", fmt.Sprintf("the probe target 127.0.0.1:%d accepted %d connections; %s", probeTarget.port, n, why)
			}
		case "egress-udp":
			if n := metaUDP.count.Load(); n > 0 {
				v, why = "ESCAPED", fmt.Sprintf("%d datagrams reached udp 127.0.0.1:%d; %s", n, meta.port, why)
			}
		case "net-admin":
			if r := escNft("bwrap_r"); !strings.Contains(r, fmt.Sprintf("dport %d ", meta.port)) {
				v, why = "ESCAPED", "after the battery the egress table inet bwrap_r is gone or changed (deleted by the probe, or replaced by another agent):\n"+r
			}
		case "ctl-tcp":
			if v == "OK" && open.count.Load() == 0 {
				v, why = "FAIL", "the task connected, but the listener counted nothing"
			}
		case "ctl-udp":
			if n := openUDP.count.Load(); v == "OK" && n < 3 {
				v, why = "FAIL", fmt.Sprintf("only %d of 3 datagrams arrived", n)
			}
		}
		add(p.name, v, why, p.control)
	}

	// Through `nomad alloc exec` into the running victim.
	execEnv := fmt.Sprintf("EXPECT_UID=%d; AGENT_PID=%d; ", victimUID, a.cmd.Process.Pid)
	for _, name := range []string{"exec-tiocsti", "exec-confinement"} {
		out, err := a.nomad("alloc", "exec", "-i=false", "-t=false", "-task", "victim", victim.ID, "/bin/sh", "-c", execEnv+escScript(t, name))
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			code = -1
		}
		v, why := escVerdictOf(out, code, false)
		add(name, v, why, false)
	}
	t.Logf("informational, TIOCSTI in `nomad alloc exec -t` (a terminal of its own): %s", escExecTTY(a, victim.ID))

	// The node stayed responsive through the bombs.
	var node struct{ Status string }
	if err := a.get("/v1/node/"+a.nodeID, &node); err != nil || node.Status != "ready" {
		t.Errorf("after the battery the node is %q (%v)", node.Status, err)
	}
	t.Logf("agent API during the battery: max latency %v, %d failed requests", maxLatency.Round(time.Millisecond), apiFailures)
	if apiFailures > 0 || maxLatency > 10*time.Second {
		t.Errorf("the node was not responsive during the battery: max API latency %v, %d failed requests", maxLatency, apiFailures)
	}

	var probesN, blocked int
	var report strings.Builder
	for _, v := range verdicts {
		kind := "probe  "
		if v.control {
			kind = "control"
		} else {
			probesN++
			if v.verdict == "BLOCKED" {
				blocked++
			}
		}
		fmt.Fprintf(&report, "%s %-20s %-7s %s\n", kind, v.name, v.verdict, v.why)
		switch {
		case v.verdict == "ESCAPED":
			t.Errorf("probe %s ESCAPED: %s", v.name, v.why)
		case v.verdict == "ERROR":
			t.Errorf("%s %s gave no verdict: %s", strings.TrimSpace(kind), v.name, v.why)
		case v.verdict == "FAIL":
			t.Errorf("control %s failed: %s", v.name, v.why)
		}
	}
	t.Logf("verdicts:\n%s", report.String())
	t.Logf("battery took %v", time.Since(start).Round(time.Second))
	summary := fmt.Sprintf("%d probes, %d blocked", probesN, blocked)
	fmt.Println(summary)
	// go test shows a passing package's output only with -v: make test
	// prints this file after the run.
	appendSummary(t, "escape battery: "+summary)
}

// escOOMVerdict: the memory bomb must end OOM-killed (exit 137, and the
// plugin's OOM event or Terminated's oom_killed) without printing ESCAPED.
func escOOMVerdict(al *allocation, stdout string) (string, string) {
	if strings.Contains(stdout, "ESCAPED") {
		return "ESCAPED", strings.TrimSpace(stdout)
	}
	var oom bool
	exit := -1
	for _, e := range al.events("probe", "Driver") {
		if strings.Contains(e.DisplayMessage, "OOM") {
			oom = true
		}
	}
	for _, e := range al.events("probe", "Terminated") {
		exit = e.ExitCode
		if e.Details["oom_killed"] == "true" {
			oom = true
		}
	}
	if oom && exit == 137 {
		return "BLOCKED", "OOM-killed at memory = 64 (exit 137, OOM event)"
	}
	return "ERROR", fmt.Sprintf("want an OOM kill with exit 137, got exit %d, OOM event %v; events: %s", exit, oom, al.allEvents("probe"))
}

// escSpecial decides the planted-link probes from the host's view.
func escSpecial(a *agent, name string, al *allocation, canaryFifo, canaryFile, canaryDir string, before map[string][]byte) (string, string) {
	events := "plant: " + al.allEvents("plant") + " | main: " + al.allEvents("main")
	planted := a.escLogs(al.ID, "plant", "stdout")
	refused := strings.Contains(planted, "cannot plant") && strings.Contains(planted, "Read-only file system")
	if !strings.Contains(planted, "planted") && !refused {
		return "ERROR", fmt.Sprintf("the prestart task did not plant its link: %q; %s", planted, events)
	}
	mainState := "not started"
	if len(al.events("main", "Started")) > 0 {
		mainState = "started"
	}
	for _, typ := range []string{"Driver Failure", "Setup Failure"} {
		for _, e := range al.events("main", typ) {
			mainState = typ + ": " + e.DisplayMessage
		}
	}
	switch name {
	case "logfifo-symlink", "logfile-symlink":
		canary := canaryFifo
		if name == "logfile-symlink" {
			canary = canaryFile
		}
		now, err := os.ReadFile(canary)
		if err != nil {
			return "ESCAPED", fmt.Sprintf("the canary %s is gone: %v (main: %s)", canary, err, mainState)
		}
		if !bytes.Equal(now, before[canary]) {
			who := "the plugin opening the main task's log FIFO"
			if name == "logfile-symlink" {
				who = "Nomad's logmon appending the main task's output to alloc/logs/main.std{out,err}.0"
			}
			return "ESCAPED", fmt.Sprintf("the host file %s was written as root through the planted link (%s): now %q (main: %s)", canary, who, now, mainState)
		}
		if refused {
			return "BLOCKED", fmt.Sprintf("%s unchanged: /alloc/logs is read-only, no link planted (%s)", canary, strings.TrimSpace(planted))
		}
		if mainState == "started" {
			return "BLOCKED", fmt.Sprintf("%s unchanged: the main task's output went to its own log (main: %s)", canary, mainState)
		}
		return "BLOCKED", fmt.Sprintf("%s unchanged, the main task did not start (main: %s)", canary, mainState)
	case "rlib-symlink":
		entries, err := os.ReadDir(canaryDir)
		if err != nil {
			return "ESCAPED", fmt.Sprintf("the canary dir %s: %v", canaryDir, err)
		}
		if len(entries) > 0 {
			return "ESCAPED", fmt.Sprintf("the plugin created %s/%s through the planted link (main: %s)", canaryDir, entries[0].Name(), mainState)
		}
		fi, err := os.Stat(canaryDir)
		if err != nil {
			return "ESCAPED", err.Error()
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 0 || st.Gid != 0 || fi.Mode().Perm() != 0o755 {
			return "ESCAPED", fmt.Sprintf("the canary dir is now %d:%d %v (main: %s)", st.Uid, st.Gid, fi.Mode(), mainState)
		}
		if mainState == "started" {
			return "ESCAPED", "the main task started with r_lib_writable through a planted link"
		}
		return "BLOCKED", fmt.Sprintf("%s untouched; main: %s", canaryDir, mainState)
	}
	return "ERROR", "unknown special probe " + name
}

// escLogLeak: after logfifo-symlink, is the host file's content in what the
// allocation (its poststop task, reading /alloc/logs) and the job's author
// (`nomad alloc logs`) can read of the main task's log? Nomad's logmon (root)
// opens the FIFO path for reading, following the planted link.
func escLogLeak(a *agent, al *allocation, agentData, canary, canarySecret string) (string, string) {
	var leaks []string
	for _, typ := range []string{"stdout", "stderr"} {
		if l := a.escLogs(al.ID, "main", typ); strings.Contains(l, canarySecret) {
			leaks = append(leaks, "nomad alloc logs main ("+typ+")")
		}
	}
	collected := a.escLogs(al.ID, "collect", "stdout")
	if !strings.Contains(collected, "== /alloc/logs/main.stdout.0") {
		return "ERROR", fmt.Sprintf("the poststop task did not run: %q; %s", collected, al.allEvents("collect"))
	}
	if strings.Contains(collected, canarySecret) {
		leaks = append(leaks, "the poststop task's read of /alloc/logs")
	}
	if allocDir := escFind(agentData, al.ID, true, 1); allocDir != "" {
		for _, f := range []string{"main.stdout.0", "main.stderr.0"} {
			if b, err := os.ReadFile(filepath.Join(allocDir, "alloc", "logs", f)); err == nil && bytes.Contains(b, []byte(canarySecret)) {
				leaks = append(leaks, "alloc/logs/"+f)
			}
		}
	}
	if len(leaks) > 0 {
		return "ESCAPED", fmt.Sprintf("the host file %s was read through the planted .main.stdout.fifo link (by Nomad's logmon, as root) into the main task's log: its content shows in %s",
			canary, strings.Join(leaks, ", "))
	}
	return "BLOCKED", fmt.Sprintf("nothing of %s in the main task's log, as the allocation or `nomad alloc logs` sees it", canary)
}

// escExecTTY runs TIOCSTI in `nomad alloc exec -i -t` under a terminal of
// the test's own, and says what happened. The exec session gets a fresh pty
// from the plugin whose only reader is the sandboxed command itself.
func escExecTTY(a *agent, allocID string) string {
	cmd := exec.Command(nomadBin, "alloc", "exec", "-i", "-t", "-task", "victim", allocID, "perl", "-e",
		`my $c = "#"; my $r = ioctl(STDIN, 0x5412, $c); print $r ? "TIOCSTI on fd 0 succeeded\n" : "TIOCSTI on fd 0 failed: $!\n";`)
	cmd.Env = append(cleanEnv(), "NOMAD_ADDR="+a.addr)
	f, err := pty.Start(cmd)
	if err != nil {
		return "could not start under a pty: " + err.Error()
	}
	defer f.Close()
	out, err := drainPty(cmd, f)
	return fmt.Sprintf("%q (exit: %v)", strings.TrimSpace(out.String()), err)
}

// escAgentCrashProbe: a task must not be able to crash the Nomad agent. A
// dev agent publishes allocation metrics (publish_allocation_metrics, as
// production agents feeding Prometheus do), and Nomad adds each sample's
// CpuStats.TotalTicks to a counter, which panics on a negative value. The
// task burns CPU in short-lived children, so that CPU time leaves the
// sandbox's live process tree between two samples. The agent must still run
// 30 seconds later.
func escAgentCrashProbe(t *testing.T) (string, string) {
	a := newAgent(t, "")
	if err := a.waitDriver(true, time.Minute); err != nil {
		t.Fatal(err)
	}
	const job = "escape-crash"
	file := writeJob(t, job, fmt.Sprintf("job %q {\n  type = \"batch\"\n%s%s  }\n}\n", job, fmt.Sprintf(escGroupHead, "burn"),
		escTask("burn", "", `end=$(( $(date +%s) + 45 )); while [ "$(date +%s)" -lt "$end" ]; do perl -e 'my $t = time; 1 while time - $t < 2'; done; echo done`,
			"", nil, 64)))
	a.runJob(t, file, job)
	al := a.waitAlloc(t, job, time.Minute, "running", func(al *allocation) bool {
		ts := al.TaskStates["burn"]
		return terminal(al) || (ts != nil && ts.State == "running")
	})
	// Should the agent die, its task's processes stay behind: end them
	// (cleanups run last-in first-out, so before the agent's stop).
	t.Cleanup(func() { killAllocCgroups([]string{al.ID}) })
	select {
	case <-a.exited:
	case <-time.After(30 * time.Second):
	}
	select {
	case <-a.exited:
		var panicLine string
		if b, err := os.ReadFile(a.log); err == nil {
			lines := strings.Split(string(b), "\n")
			for i, l := range lines {
				if strings.HasPrefix(l, "panic: ") {
					panicLine = l
					for _, m := range lines[i+1:] {
						if strings.Contains(m, "nomad/client") {
							panicLine += " at " + strings.TrimSpace(m)
							break
						}
					}
					break
				}
			}
		}
		return "ESCAPED", fmt.Sprintf("the task crashed the Nomad agent (%v): %s", a.cmd.ProcessState, panicLine)
	default:
	}
	if err := a.get("/v1/agent/health", &struct{}{}); err != nil {
		return "ESCAPED", fmt.Sprintf("the agent runs but its API fails: %v", err)
	}
	return "BLOCKED", "the agent survived 30 s of a task whose CPU time comes and goes with its children"
}

// appendSummary adds a battery's summary line to $BWRAP_R_SUMMARY, which
// make test prints (it empties the file's dir first).
func appendSummary(t *testing.T, line string) {
	f := os.Getenv("BWRAP_R_SUMMARY")
	if f == "" {
		return
	}
	sf, err := os.OpenFile(f, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err == nil {
		_, err = fmt.Fprintln(sf, line)
		if cerr := sf.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Errorf("summary: %v", err)
	}
}

// drainPty collects what a command started under the pty f prints until it
// exits (killed after a minute), and how it ended.
func drainPty(cmd *exec.Cmd, f *os.File) (bytes.Buffer, error) {
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() { io.Copy(&out, f); close(copied) }()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var err error
	select {
	case err = <-waited:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		err = <-waited
	}
	f.Close()
	select {
	case <-copied:
	case <-time.After(2 * time.Second):
	}
	return out, err
}
