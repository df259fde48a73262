package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// The ways in: the escape battery's second half (SECURITY.md, "The ways in
// and the job fields a tenant controls"). The first half (escape_test.go)
// asks what a task can do from inside its sandbox; this one asks what a job
// can make the node do for it: the ways into a running sandbox (`nomad alloc
// exec`, script checks, template change scripts), the client's own writes
// into task dirs (tokens across a restart, dispatch payloads, artifacts,
// templates), and every job field a tenant sets (env, user, config values).
// Each probe is an exploit run through one real agent; its verdict comes
// from the host's view where there is one (a marker only root can create, a
// file created or changed as root, a listener's count, a cgroup's limit).
// Controls show that a probe's method works where it should.
//
// The agent is a one-node cluster with Consul (script checks), dynamic
// workload users 84000-84079 inside task_uid_range 84000-84099 (so that a
// job can name a task UID no dynamic user takes), and managed egress rules
// denying loopback stand-ins for the metadata service, the agent's own HTTP
// API and Consul's. Nothing leaves loopback.
//
// The test prints "ways in: N probes, M blocked" (and appends it to
// $BWRAP_R_SUMMARY, after the first half's line) and fails when a probe
// escaped, gave no verdict, or a control failed. A probe marked upstream
// escapes through Nomad's client alone, whatever the driver does: it is
// reported, counted, and does not fail the test.

const (
	wayUIDMin, wayUIDMax = 84000, 84099
	// The dynamic users Nomad hands out: the rest of the range is for jobs
	// that name a UID.
	wayDynMax = 84079
	// wayNamedUID is a task UID that a job names (user = "nomad-84090").
	wayNamedUID = 84090
	// wayOutsideUID is outside task_uid_range.
	wayOutsideUID = 100000
)

// ways is the state of one run of the battery.
type ways struct {
	t        *testing.T
	a        *agent
	rnd      string
	hostDir  string // root-only (0700): markers and canaries only root can write
	allocDir string // the client's alloc dir
	soB64    string // the loader library, base64
	verdicts []escVerdict
	upstream map[string]bool
	apiPort  int
	taskDeny *escListener
	open     *escListener
	// submitErr: jobs whose refusal by Nomad is their verdict.
	submitErr  map[string]error
	dispatched string // the dispatched job's ID
	httpAddr   string // the test's artifact server on loopback
}

// add records a verdict.
func (w *ways) add(name, verdict, why string, control bool) {
	w.t.Helper()
	w.verdicts = append(w.verdicts, escVerdict{name: name, verdict: verdict, why: why, control: control})
	w.t.Logf("%s: %s: %s", name, verdict, why)
}

// script is a task script of e2e/waysin/ with the battery's lib.sh in front.
func (w *ways) script(name string) string {
	w.t.Helper()
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(repoRoot, "e2e", p))
		if err != nil {
			w.t.Fatal(err)
		}
		return string(b)
	}
	s := read("escape/lib.sh") + "\n" + read("waysin/"+name+".sh")
	if strings.Contains(s, "${") || strings.Contains(s, "%{") {
		w.t.Fatalf("e2e/waysin/%s.sh holds ${ or %%{, which Nomad would interpolate", name)
	}
	return s
}

// hostLocal is the host path of a task's local/, as HCL that Nomad
// interpolates with the allocation's ID at run time.
func (w *ways) hostLocal(task string) string {
	return w.allocDir + "/${NOMAD_ALLOC_ID}/" + task + "/local"
}

// wayEnv is an env block; "${NOMAD_ALLOC_ID}" in a value is left for
// Nomad to interpolate, everything else is quoted.
func wayEnv(env map[string]string) string {
	var b strings.Builder
	b.WriteString("      env {\n")
	for _, k := range slices.Sorted(maps.Keys(env)) {
		v := strings.ReplaceAll(hclStr(env[k]), "$${NOMAD_ALLOC_ID}", "${NOMAD_ALLOC_ID}")
		fmt.Fprintf(&b, "        %s = %s\n", k, v)
	}
	b.WriteString("      }\n")
	return b.String()
}

// wayTask is a bwrap-r task running /bin/sh -c script; extra holds more
// task-level blocks (templates, services, identities, artifacts).
type wayTask struct {
	name, user, script, config, extra, lifecycle string
	env                                          map[string]string
	// command and args replace /bin/sh -c script when command is set.
	command string
	args    []string
}

func (tk wayTask) hcl() string {
	var b strings.Builder
	fmt.Fprintf(&b, "    task %q {\n      driver = \"bwrap-r\"\n", tk.name)
	if tk.user != "" {
		fmt.Fprintf(&b, "      user   = %q\n", tk.user)
	}
	if tk.lifecycle != "" {
		fmt.Fprintf(&b, "      lifecycle {\n        hook    = %q\n        sidecar = false\n      }\n", tk.lifecycle)
	}
	command, args := "/bin/sh", []string{"-c", tk.script}
	if tk.command != "" {
		command, args = tk.command, tk.args
	}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = hclStr(a)
	}
	fmt.Fprintf(&b, "      config {\n        command = %s\n        args    = [%s]\n", hclStr(command), strings.Join(quoted, ", "))
	if tk.config != "" {
		b.WriteString(tk.config + "\n")
	}
	b.WriteString("      }\n")
	if len(tk.env) > 0 {
		b.WriteString(wayEnv(tk.env))
	}
	b.WriteString(tk.extra)
	b.WriteString("      logs {\n        max_files     = 2\n        max_file_size = 2\n      }\n")
	b.WriteString("      resources {\n        cpu    = 20\n        memory = 64\n      }\n    }\n")
	return b.String()
}

// wayJob is a job of one group; restart is the group's restart block ("" for
// run-once), head more job-level lines.
func wayJob(id, typ, head, restart string, tasks ...wayTask) string {
	var b strings.Builder
	fmt.Fprintf(&b, "job %q {\n  type = %q\n%s  group \"g\" {\n", id, typ, head)
	if restart == "" {
		b.WriteString(runOnce)
	} else {
		b.WriteString(restart + "    reschedule {\n      attempts  = 0\n      unlimited = false\n    }\n")
	}
	b.WriteString("    ephemeral_disk {\n      size = 10\n    }\n")
	for _, tk := range tasks {
		b.WriteString(tk.hcl())
	}
	b.WriteString("  }\n}\n")
	return b.String()
}

// submit writes and runs a job; it returns the CLI's error, if any (Nomad
// refusing a job is a verdict of its own).
func (w *ways) submit(id, hcl string) error {
	w.t.Helper()
	file := writeJob(w.t, id, hcl)
	out, err := w.a.nomad("job", "run", "-detach", file)
	w.t.Cleanup(func() { w.a.stopJob(id) })
	if err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(out))
	}
	return nil
}

// submitJSON registers a job through the HTTP API, as the CLI's JSON of
// hcl changed by edit: for what a job may hold that HCL cannot say.
func (w *ways) submitJSON(id, hcl string, edit func(job map[string]any)) error {
	w.t.Helper()
	out, err := w.a.nomad("job", "run", "-output", writeJob(w.t, id, hcl))
	if err != nil {
		w.t.Fatalf("nomad job run -output: %v\n%s", err, out)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(out), &body); err != nil {
		w.t.Fatalf("the CLI's JSON of job %s: %v", id, err)
	}
	job, _ := body["Job"].(map[string]any)
	if job == nil {
		w.t.Fatalf("no Job in the CLI's JSON: %s", out)
	}
	edit(job)
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPut, w.a.addr+"/v1/jobs", bytes.NewReader(b))
	w.t.Cleanup(func() { w.a.stopJob(id) })
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// mustSubmit is submit, failing the test when Nomad refuses the job.
func (w *ways) mustSubmit(id, hcl string) {
	w.t.Helper()
	if err := w.submit(id, hcl); err != nil {
		w.t.Fatalf("job %s: %v\n%s", id, err, hcl)
	}
}

// alloc waits until the job's allocation satisfies done (or timeout) and
// returns it, nil if none did.
func (w *ways) alloc(job string, timeout time.Duration, done func(*allocation) bool) *allocation {
	var al *allocation
	eventually(timeout, 500*time.Millisecond, func() bool {
		var stubs []struct{ ID string }
		if err := w.a.get("/v1/job/"+url.PathEscape(job)+"/allocations", &stubs); err != nil || len(stubs) == 0 {
			return false
		}
		var cur allocation
		if err := w.a.get("/v1/allocation/"+stubs[0].ID, &cur); err != nil {
			return false
		}
		al = &cur
		return done(al)
	})
	return al
}

// wayRunning: the task runs, or the allocation has ended.
func wayRunning(task string) func(*allocation) bool {
	return func(al *allocation) bool {
		ts := al.TaskStates[task]
		return terminal(al) || (ts != nil && ts.State == "running")
	}
}

// wayStarted reports whether the task ever started.
func wayStarted(al *allocation, task string) bool {
	return al != nil && len(al.events(task, "Started")) > 0
}

// wayFailure returns the task's Driver Failure or Setup Failure messages.
func wayFailure(al *allocation, task string) string {
	var msgs []string
	for _, typ := range []string{"Driver Failure", "Setup Failure", "Failed Validation"} {
		for _, e := range al.events(task, typ) {
			msgs = append(msgs, e.DisplayMessage)
		}
	}
	return strings.Join(msgs, "; ")
}

// taskDir is the host path of a task's dir in an allocation.
func (w *ways) taskDir(al *allocation, task string) string {
	return filepath.Join(w.allocDir, al.ID, task)
}

// taskUID is the owner of the task's local/ on the host (its UID).
func (w *ways) taskUID(al *allocation, task string) int {
	var uid int
	eventually(20*time.Second, 250*time.Millisecond, func() bool {
		fi, err := os.Stat(filepath.Join(w.taskDir(al, task), "local"))
		if err != nil {
			return false
		}
		uid = int(fi.Sys().(*syscall.Stat_t).Uid)
		return uid != 0
	})
	return uid
}

// markerDir makes a root-only directory for a probe's markers.
func (w *ways) markerDir(probe string) string {
	d := filepath.Join(w.hostDir, "markers", probe)
	if err := os.MkdirAll(d, 0o700); err != nil {
		w.t.Fatal(err)
	}
	return d
}

// wayMarkers lists the files in a marker dir.
func wayMarkers(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// wayNewOnly returns the names in now that are not in before.
func wayNewOnly(before, now []string) []string {
	seen := map[string]bool{}
	for _, n := range before {
		seen[n] = true
	}
	var out []string
	for _, n := range now {
		if !seen[n] {
			out = append(out, n)
		}
	}
	return out
}

// wayRecord is one line of the loader library's record.
type wayRecord map[string]string

var wayRecordField = regexp.MustCompile(`(\w+)=(\S*)`)

func wayParseRecords(s string) []wayRecord {
	var recs []wayRecord
	for _, line := range strings.Split(s, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		r := wayRecord{"line": line}
		for _, m := range wayRecordField.FindAllStringSubmatch(line, -1) {
			r[m[1]] = m[2]
		}
		recs = append(recs, r)
	}
	return recs
}

// root: the record's real UID is 0.
func (r wayRecord) root() bool { return strings.HasPrefix(r["uid"], "0,") }

// unfiltered: the record's process ran as a non-root UID without a filter
// (only the exec path's helper inside the sandbox can).
func (r wayRecord) unfiltered() bool { return r["seccomp"] == "0" && !r.root() }

func (r wayRecord) String() string {
	s := fmt.Sprintf("%s as uid %s (Seccomp %s, NoNewPrivs %s, CapEff %s, marker %s)", r["exe"], r["uid"], r["seccomp"], r["nnp"], r["capeff"], r["marker"])
	if r["unshare"] != "" {
		s += fmt.Sprintf(" [keyctl %s, unshare(NEWUSER|NEWNS) %s, tmpfs mount %s]", r["keyctl"], r["unshare"], r["mount"])
	}
	return s
}

// wayRecordFile follows a task's /local/waysin.rec from the host.
type wayRecordFile struct {
	path string
	off  int
}

// next returns what was appended since the last call.
func (rf *wayRecordFile) next() []wayRecord {
	b, _ := os.ReadFile(rf.path)
	if len(b) < rf.off {
		rf.off = 0
	}
	recs := wayParseRecords(string(b[rf.off:]))
	rf.off = len(b)
	return recs
}

// wayLoaderVerdict judges what the loader library recorded while one way in
// ran: a marker in the root-only dir, a record as uid 0, or a record of an
// unfiltered process is an escape. ranOK says that the way in did its job:
// without, a clean record proves nothing.
func wayLoaderVerdict(recs []wayRecord, newMarkers []string, ran string, ranOK bool) (string, string) {
	var bad, fine []string
	for _, r := range recs {
		switch {
		case r.root() || r["marker"] == "created":
			bad = append(bad, "as root: "+r.String())
		case r.unfiltered():
			bad = append(bad, "unfiltered: "+r.String())
		default:
			fine = append(fine, r.String())
		}
	}
	if len(newMarkers) > 0 {
		bad = append(bad, fmt.Sprintf("markers created in the root-only dir: %v", newMarkers))
	}
	if len(bad) > 0 {
		return "ESCAPED", fmt.Sprintf("%s; the task's library ran %s", ran, strings.Join(bad, "; "))
	}
	if !ranOK {
		return "ERROR", ran + "; the way in failed, so nothing was tried"
	}
	if len(fine) == 0 {
		return "BLOCKED", ran + "; no process of the way in loaded the task's library"
	}
	return "BLOCKED", fmt.Sprintf("%s; the library ran only under the filter as the task: %s", ran, wayCountLines(fine))
}

// wayDeleteNftTables removes the egress tables the agent left (bwrap_r and
// per-task ones) that did not exist before.
func wayDeleteNftTables(t *testing.T, before []string) {
	had := map[string]bool{}
	for _, n := range before {
		had[n] = true
	}
	for _, name := range wayTables() {
		if had[name] {
			continue
		}
		if out, err := exec.Command("nft", "delete", "table", "inet", name).CombinedOutput(); err != nil {
			t.Errorf("nft delete table inet %s: %v: %s", name, err, out)
		}
	}
}

// wayTables lists the inet nft tables named bwrap_r*.
func wayTables() []string {
	out, _ := exec.Command("nft", "list", "tables").Output()
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if fs := strings.Fields(line); len(fs) == 3 && fs[0] == "table" && fs[1] == "inet" && strings.HasPrefix(fs[2], "bwrap_r") {
			names = append(names, fs[2])
		}
	}
	return names
}

// TestWaysIn runs the ways-in battery. See the comment at the top of this
// file.
func TestWaysIn(t *testing.T) {
	setup(t)
	for _, bin := range []string{"nft", "gcc"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("the ways-in battery needs %s", bin)
		}
	}
	start := time.Now()
	w := &ways{t: t, rnd: escRand(t, 6), upstream: map[string]bool{}, submitErr: map[string]error{}}

	// The test's own root-only dir: only root on the host writes below it.
	hostDir, err := os.MkdirTemp("/tmp", "waysin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(hostDir) })
	if err := os.Chmod(hostDir, 0o700); err != nil {
		t.Fatal(err)
	}
	w.hostDir = hostDir

	// The loader library, built on the host: the bytes a job carries.
	so := filepath.Join(hostDir, "loader.so")
	if out, err := exec.Command("gcc", "-shared", "-fPIC", "-O2", "-s", "-o", so, filepath.Join(repoRoot, "e2e", "waysin", "loader.c")).CombinedOutput(); err != nil {
		t.Fatalf("building the loader library: %v\n%s", err, out)
	}
	soBytes, err := os.ReadFile(so)
	if err != nil {
		t.Fatal(err)
	}
	w.soB64 = base64.StdEncoding.EncodeToString(soBytes)
	w.controlMethod(so)

	// The loopback stand-ins: denied by the node's rules (metadata, the
	// agent, Consul), denied by one task's egress_deny, and open.
	meta := escListenTCP(t, 0)
	w.taskDeny = escListenTCP(t, 0)
	w.open = escListenTCP(t, 0)
	c := startConsul(t)
	_, consulPort, _ := net.SplitHostPort(c.addr)

	// Libraries for r_libs: a root the operator allows, holding a link out
	// of it, and a directory outside it (all readable by task UIDs).
	rRoot, rOutside := hostDir+"-rlib", hostDir+"-rsecret"
	for _, d := range []string{rRoot, rOutside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
	}
	if err := os.WriteFile(filepath.Join(rOutside, "secret"), []byte("rlib-secret-"+w.rnd+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(rOutside, filepath.Join(rRoot, "escape")); err != nil {
		t.Fatal(err)
	}

	tablesBefore := wayTables()
	t.Cleanup(func() { wayDeleteNftTables(t, tablesBefore) })
	w.a = newAgentOpts(t, agentOpts{server: true,
		extra: fmt.Sprintf("\nconsul {\n  address = %q\n}\n", c.addr),
		pluginFor: func(http int) string {
			return fmt.Sprintf(`    tmp_size_mb     = 16
    task_uid_range  = "%d-%d"
    r_library_roots = [%q]
    egress {
      metadata     = "127.0.0.1:%d"
      manage_rules = true
      deny         = ["127.0.0.1:%d", "127.0.0.1:%d", "127.0.0.1:%s"]
      remove_rules_on_shutdown = true
    }`, wayUIDMin, wayUIDMax, rRoot, meta.port, meta.port, http, consulPort)
		},
		client: fmt.Sprintf("  gc_max_allocs = 500\n  users {\n    dynamic_user_min = %d\n    dynamic_user_max = %d\n  }", wayUIDMin, wayDynMax),
	})
	w.apiPort, _ = strconv.Atoi(w.a.addr[strings.LastIndexByte(w.a.addr, ':')+1:])
	w.allocDir = filepath.Join(w.a.dir, "data", "alloc")
	if err := w.a.waitDriver(true, 90*time.Second); err != nil {
		d, _ := w.a.driver()
		t.Fatalf("bwrap-r is not healthy: %v\n%+v", err, d)
	}
	if rules := escNft("bwrap_r"); !strings.Contains(rules, fmt.Sprintf("dport %d ", w.apiPort)) {
		t.Fatalf("the managed egress table does not deny the agent's port %d:\n%s", w.apiPort, rules)
	}
	t.Logf("agent %s, consul %s, alloc dir %s, host dir %s", w.a.addr, c.addr, w.allocDir, hostDir)

	// Every job goes in first; the verdicts are read one after another.
	w.serveArtifacts()
	loaders := w.submitLoaderJobs()
	w.submitFieldJobs(rRoot, rOutside)
	w.submitUpstreamJobs()

	w.loaderVerdicts(loaders)
	w.userVerdicts()
	w.uidShareVerdicts()
	w.namedShareVerdicts()
	w.pidsVerdict()
	w.tokenVerdict()
	w.envMiscVerdicts()
	w.envNamesVerdict()
	w.fieldVerdicts(rRoot, rOutside)
	w.upstreamVerdicts()
	// Last: it restarts the agent.
	w.taskAPIVerdicts()

	w.finish(start)
}

// controlMethod shows that the marker dir works as the verdict needs: root
// on the host creates a marker there, a task UID cannot, and the library
// records both.
func (w *ways) controlMethod(so string) {
	t := w.t
	dir := w.markerDir("ctl-method")
	// The record lies where the other UID can write it too.
	open := w.hostDir + "-ctl"
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(open) })
	rec := filepath.Join(open, "ctl-method.rec")
	openSO := filepath.Join(open, "loader.so")
	if b, err := os.ReadFile(so); err != nil || os.WriteFile(openSO, b, 0o755) != nil {
		t.Fatalf("copying the library: %v", err)
	}
	if err := os.WriteFile(rec, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(rec, 0o666); err != nil {
		t.Fatal(err)
	}
	env := append(cleanEnv(), "WAYSIN_MARKER_DIR="+dir, "WAYSIN_REC_HOST="+rec, "WAYSIN_TAG=ctl", "LD_PRELOAD="+openSO)
	root := exec.Command("/bin/true")
	root.Env = env
	user := exec.Command("setpriv", "--reuid", strconv.Itoa(wayOutsideUID+1), "--regid", strconv.Itoa(wayOutsideUID+1), "--clear-groups", "/bin/true")
	user.Env = env
	e1, e2 := root.Run(), user.Run()
	b, _ := os.ReadFile(rec)
	recs := wayParseRecords(string(b))
	ms := wayMarkers(dir)
	var rootRec, userRec bool
	for _, r := range recs {
		if r["exe"] == "/usr/bin/true" && r.root() && r["marker"] == "created" {
			rootRec = true
		}
		if r["exe"] == "/usr/bin/true" && strings.HasPrefix(r["uid"], strconv.Itoa(wayOutsideUID+1)+",") && r["marker"] == "errno13" {
			userRec = true
		}
	}
	// Markers: root's true and setpriv, not the other UID's true.
	if e1 != nil || e2 != nil || !rootRec || !userRec || len(ms) != 2 {
		w.add("ctl-method", "FAIL", fmt.Sprintf("root %v, uid %d %v; records %q; markers %v", e1, wayOutsideUID+1, e2, b, ms), true)
		return
	}
	w.add("ctl-method", "OK", fmt.Sprintf("on the host, the library run by root created its marker in the root-only dir and one run by uid %d could not (EACCES); both recorded themselves", wayOutsideUID+1), true)
}

// wayLoaderProbe is one job whose env points a loader variable at the task's
// library.
type wayLoaderProbe struct {
	way, variable, job string // way: exec, check or change-script
	markers            string
}

func (w *ways) loaderEnv(probe, variable string) map[string]string {
	local := w.hostLocal("t")
	return map[string]string{
		// The host path of its local/ for root on the host, /local for the
		// helpers inside the sandbox: one variable reaches both.
		variable:            local + "/x.so:/local/x.so",
		"WAYSIN_REC_HOST":   local + "/waysin.rec",
		"WAYSIN_MARKER_DIR": w.markerDir(probe),
		"WAYSIN_TAG":        probe,
		"WAYSIN_SO_B64":     w.soB64,
	}
}

func (w *ways) submitLoaderJobs() []wayLoaderProbe {
	var probes []wayLoaderProbe
	for _, v := range []string{"LD_PRELOAD", "LD_AUDIT"} {
		short := map[string]string{"LD_PRELOAD": "preload", "LD_AUDIT": "audit"}[v]
		for _, way := range []string{"exec", "check", "change-script"} {
			p := wayLoaderProbe{way: way, variable: v, job: "wi-" + way + "-" + short}
			p.markers = w.markerDir(p.job)
			tk := wayTask{name: "t", script: w.script("loader-task"), env: w.loaderEnv(p.job, v)}
			switch way {
			case "check":
				// Nomad runs the script check through the driver's exec
				// every 2 s; each run leaves a line in /local/check.runs.
				tk.extra = fmt.Sprintf(`      service {
        name     = %q
        provider = "consul"
        check {
          name     = "script"
          type     = "script"
          command  = "/bin/sh"
          args     = ["-c", "date +%%s >> /local/check.runs"]
          interval = "2s"
          timeout  = "10s"
        }
      }
`, p.job)
			case "change-script":
				// The second template reads the file the first renders;
				// the task rewrites that file, the client renders again and
				// runs the change script through the driver's exec.
				tk.env["WAYSIN_TRIGGER"] = "1"
				tk.extra = w.triggerTemplates("t", "local/out", `          change_mode = "script"
          change_script {
            command       = "/bin/sh"
            args          = ["-c", "date +%s >> /local/change.runs"]
            timeout       = "20s"
            fail_on_error = false
          }
`)
			}
			w.mustSubmit(p.job, wayJob(p.job, "service", "", "", tk))
			probes = append(probes, p)
		}
	}
	return probes
}

// triggerTemplates: local/trigger (an artifact, fetched before templates
// render, and rewritten by the task), and a template at dest reading it
// through the file function by its host path, so that the task's rewrite
// makes the client render again. (A second template cannot make the file:
// the two render in no fixed order, and the file function fails on a
// missing file.)
func (w *ways) triggerTemplates(task, dest, changeMode string) string {
	return fmt.Sprintf(`      artifact {
        source      = "http://%s/trigger"
        destination = "local/trigger"
        mode        = "file"
      }
      template {
        destination = %q
        data        = "{{ file (printf \"%s/%%s/%s/local/trigger\" (env \"NOMAD_ALLOC_ID\")) }}"
%s      }
`, w.httpAddr, dest, w.allocDir, task, changeMode)
}

func (w *ways) loaderVerdicts(probes []wayLoaderProbe) {
	t := w.t
	for _, p := range probes {
		short := strings.TrimPrefix(p.job, "wi-"+p.way+"-")
		al := w.alloc(p.job, 2*time.Minute, wayRunning("t"))
		if al == nil || !wayStarted(al, "t") {
			w.add(p.job, "ERROR", fmt.Sprintf("the task did not start: %v", al), false)
			continue
		}
		rf := &wayRecordFile{path: filepath.Join(w.taskDir(al, "t"), "local", "waysin.rec")}
		uid := w.taskUID(al, "t")
		// The control: the task's own child loaded the library, as the
		// task, under its filter (one OK a variable, a FAIL for any job).
		ownChild := func(r wayRecord) bool {
			return r["exe"] == "/usr/bin/true" && strings.HasPrefix(r["uid"], strconv.Itoa(uid)+",") && r["seccomp"] == "2"
		}
		var ctl []wayRecord
		loaded := eventually(30*time.Second, 250*time.Millisecond, func() bool {
			ctl = append(ctl, rf.next()...)
			return slices.ContainsFunc(ctl, ownChild)
		})
		switch {
		case !loaded:
			w.add("ctl-task-"+short+"-"+p.way, "FAIL", fmt.Sprintf("no record of the task's own /bin/true loading the library: %v; stderr: %s", ctl, w.a.escLogs(al.ID, "t", "stderr")), true)
			continue
		case p.way == "exec":
			w.add("ctl-task-"+short, "OK", fmt.Sprintf("%s=<host local>/x.so:/local/x.so: the task's own child loaded the library as uid %d under its filter (Seccomp 2)", p.variable, uid), true)
		}
		var before []string
		switch p.way {
		case "exec":
			before = wayMarkers(p.markers)
			// nomad alloc exec, without and with a terminal.
			_, stderr, code := w.a.nomadIO(t, "", "alloc", "exec", "-i=false", "-t=false", "-task", "t", al.ID, "/bin/true")
			ran := fmt.Sprintf("`nomad alloc exec -i=false -t=false /bin/true` exited %d", code)
			if code != 0 {
				ran += " (" + strings.TrimSpace(stderr) + ")"
			}
			time.Sleep(500 * time.Millisecond)
			now := wayMarkers(p.markers)
			v, why := wayLoaderVerdict(rf.next(), wayNewOnly(before, now), ran, code == 0)
			w.add(p.job, v, why, false)
			before = now
			ran, err := w.execTTY(al.ID, "/bin/true")
			time.Sleep(500 * time.Millisecond)
			v, why = wayLoaderVerdict(rf.next(), wayNewOnly(before, wayMarkers(p.markers)), ran, err == nil)
			w.add("wi-exec-tty-"+short, v, why, false)
		case "check", "change-script":
			// The task sets this way in off itself (the check runs every
			// 2 s; the change script after the task's rewrite): wait for
			// evidence of two runs after the library was written.
			runs := filepath.Join(w.taskDir(al, "t"), "local", map[string]string{"check": "check.runs", "change-script": "change.runs"}[p.way])
			var n int
			eventually(45*time.Second, time.Second, func() bool {
				b, _ := os.ReadFile(runs)
				n = len(strings.Fields(string(b)))
				return (p.way == "check" && n >= 3) || (p.way == "change-script" && n >= 1)
			})
			time.Sleep(time.Second)
			if n == 0 {
				cur := w.alloc(p.job, time.Second, func(*allocation) bool { return true })
				w.add(p.job, "ERROR", fmt.Sprintf("the %s never ran (no %s); records: %v; allocation: %v", p.way, runs, rf.next(), cur), false)
				continue
			}
			ran := fmt.Sprintf("the %s ran %d times (set off by the task)", p.way, n)
			// The way in may have run while the control was awaited.
			v, why := wayLoaderVerdict(append(ctl, rf.next()...), wayMarkers(p.markers), ran, true)
			w.add(p.job, v, why, false)
		}
	}
	// Code before the filter, whichever way in ran it: what could it do?
	var unfiltered []string
	for _, p := range probes {
		al := w.alloc(p.job, time.Second, func(*allocation) bool { return true })
		if al == nil {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(w.taskDir(al, "t"), "local", "waysin.rec"))
		for _, r := range wayParseRecords(string(b)) {
			if r.unfiltered() {
				unfiltered = append(unfiltered, p.job+": "+r.String())
			}
		}
	}
	if len(unfiltered) > 0 {
		w.add("wi-unfiltered-helper", "ESCAPED", fmt.Sprintf("the task's library ran in %d processes of the exec path inside the sandbox before the filter: %s", len(unfiltered), strings.Join(unfiltered, "; ")), false)
	} else {
		w.add("wi-unfiltered-helper", "BLOCKED", "no process of any way in ran the task's library before the filter (Seccomp 0)", false)
	}
}

// execTTY runs `nomad alloc exec -i -t` under a terminal of the test's own:
// what happened, and the CLI's error.
func (w *ways) execTTY(allocID string, command ...string) (string, error) {
	cmd := exec.Command(nomadBin, append([]string{"alloc", "exec", "-i", "-t", "-task", "t", allocID}, command...)...)
	cmd.Env = append(cleanEnv(), "NOMAD_ADDR="+w.a.addr, "TERM=dumb")
	f, err := pty.Start(cmd)
	if err != nil {
		return "`nomad alloc exec -t` could not start under a pty: " + err.Error(), err
	}
	defer f.Close()
	_, err = drainPty(cmd, f)
	return fmt.Sprintf("`nomad alloc exec -i -t %s` under a pty: %v", strings.Join(command, " "), wayExitText(err)), err
}

func wayExitText(err error) string {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "exit 0"
	case errors.As(err, &ee):
		return fmt.Sprintf("exit %d", ee.ExitCode())
	}
	return err.Error()
}

// The job fields a tenant controls, and the ways the client writes.
func (w *ways) submitFieldJobs(rRoot, rOutside string) {
	apiEnv := map[string]string{"PORT_API": strconv.Itoa(w.apiPort)}
	// user outside the task identities.
	w.mustSubmit("wi-user-nobody", wayJob("wi-user-nobody", "batch", "", "", wayTask{name: "t", user: "nobody", script: w.script("user-api"), env: apiEnv}))
	w.mustSubmit("wi-user-outside", wayJob("wi-user-outside", "batch", "", "", wayTask{name: "t", user: fmt.Sprintf("nomad-%d", wayOutsideUID), script: w.script("user-api"), env: apiEnv}))
	// A task with a per-task egress rule, whose UID another job will take.
	w.mustSubmit("wi-uid-a", wayJob("wi-uid-a", "service", "", "", wayTask{name: "t", script: w.script("egress-loop"),
		config: fmt.Sprintf("        egress_deny = [\"127.0.0.1:%d\"]", w.taskDeny.port),
		env:    map[string]string{"PORT_TASKDENY": strconv.Itoa(w.taskDeny.port), "PORT_OPEN": strconv.Itoa(w.open.port)}}))
	// A task that names a task UID no dynamic user takes.
	w.mustSubmit("wi-named-a", wayJob("wi-named-a", "service", "", "", wayTask{name: "t", user: fmt.Sprintf("nomad-%d", wayNamedUID), script: "id -u; exec sleep 3600"}))
	// pids_limit above the plugin's.
	w.mustSubmit("wi-pids", wayJob("wi-pids", "batch", "", "", wayTask{name: "t", script: "echo started; sleep 600", config: "        pids_limit = 1000000"}))
	// The token link with a restart.
	w.mustSubmit("wi-token-link", wayJob("wi-token-link", "service", "", "    restart {\n      attempts = 2\n      delay    = \"1s\"\n      mode     = \"fail\"\n    }\n",
		wayTask{name: "t", script: w.script("token-link"),
			env: map[string]string{"TARGET_NEW": filepath.Join(w.hostDir, "token-created"), "TARGET_OLD": filepath.Join(w.hostDir, "token-canary")},
			extra: `      identity {
        file = true
      }
      identity {
        name = "extra"
        aud  = ["waysin"]
        file = true
        ttl  = "1h"
      }
`}))
	if err := os.WriteFile(filepath.Join(w.hostDir, "token-canary"), []byte("canary "+w.rnd+"\n"), 0o644); err != nil {
		w.t.Fatal(err)
	}
	// The Task API.
	w.mustSubmit("wi-task-api", wayJob("wi-task-api", "service", "", "", wayTask{name: "t", script: w.script("task-api"), env: apiEnv,
		extra: "      identity {\n        env = true\n      }\n"}))
	// Other env variables a root step would honour.
	local := w.hostLocal("t")
	envDir := w.markerDir("wi-env")
	w.mustSubmit("wi-env", wayJob("wi-env", "service", "", "", wayTask{name: "t", script: w.script("env-misc"), env: map[string]string{
		"PATH":              "/local/bin:/usr/bin:/bin",
		"BASH_ENV":          local + "/rc.sh",
		"ENV":               local + "/rc.sh",
		"LD_DEBUG":          "files",
		"LD_DEBUG_OUTPUT":   envDir + "/lddebug",
		"WAYSIN_MARKER_DIR": envDir,
		"WAYSIN_REC_HOST":   local + "/waysin.rec",
	}}))
	// Names HCL cannot write: one that holds "=" (so that a filter of
	// names would miss it, while the loader reads LD_PRELOAD=/local/x.so:...)
	// and one with a NUL.
	w.submitErr["wi-env-names"] = w.submitJSON("wi-env-names", wayJob("wi-env-names", "service", "", "",
		wayTask{name: "t", script: w.script("loader-task"), env: w.loaderEnv("wi-env-names", "WAYSIN_PLAIN")}),
		func(job map[string]any) {
			tg, _ := job["TaskGroups"].([]any)
			tg0, _ := tg[0].(map[string]any)
			tasks, _ := tg0["Tasks"].([]any)
			task, _ := tasks[0].(map[string]any)
			env, _ := task["Env"].(map[string]any)
			env["LD_PRELOAD=/local/x.so:"] = "x"
			env["WAYSIN\x00NUL"] = "y"
		})
	// config values: a command that reads as a bwrap option; r_libs out of
	// the allowed roots by ".." and by a link.
	w.mustSubmit("wi-cmd-dash", wayJob("wi-cmd-dash", "batch", "", "", wayTask{name: "t",
		command: "--ro-bind", args: []string{"/", "/host", "/bin/sh", "-c", "ls /host/root; head -1 /host/etc/shadow"}}))
	w.mustSubmit("wi-rlibs-dotdot", wayJob("wi-rlibs-dotdot", "batch", "", "", wayTask{name: "t", script: w.script("rlibs-read"),
		config: fmt.Sprintf("        r_libs = [%q]", rRoot+"/../"+filepath.Base(rOutside))}))
	w.mustSubmit("wi-rlibs-link", wayJob("wi-rlibs-link", "batch", "", "", wayTask{name: "t", script: w.script("rlibs-read"),
		config: fmt.Sprintf("        r_libs = [%q]", rRoot+"/escape")}))
	// Templates: a destination out of the task dir; a link at the
	// destination's parent and at a file the template reads, each followed
	// by a render the task sets off.
	w.submitErr["wi-tpl-dest-outside"] = w.submit("wi-tpl-dest-outside", wayJob("wi-tpl-dest-outside", "batch", "", "", wayTask{name: "t", script: "echo ran",
		extra: fmt.Sprintf("      template {\n        destination = %q\n        data        = \"rendered %s\\n\"\n      }\n",
			strings.Repeat("../", 16)+strings.TrimPrefix(filepath.Join(w.hostDir, "tpl-outside"), "/"), w.rnd)}))
	if err := os.Mkdir(filepath.Join(w.hostDir, "tpl-dir"), 0o755); err != nil {
		w.t.Fatal(err)
	}
	w.mustSubmit("wi-tpl-parent-link", wayJob("wi-tpl-parent-link", "service", "", "", wayTask{name: "t", script: w.script("tpl-link"),
		env:   map[string]string{"PLANT_AT": "/local/sub", "TARGET": filepath.Join(w.hostDir, "tpl-dir")},
		extra: w.triggerTemplates("t", "local/sub/out", "        change_mode = \"noop\"\n")}))
	if err := os.WriteFile(filepath.Join(w.hostDir, "secret"), []byte("host-secret-"+w.rnd+"\n"), 0o600); err != nil {
		w.t.Fatal(err)
	}
	w.mustSubmit("wi-tpl-file-link", wayJob("wi-tpl-file-link", "service", "", "", wayTask{name: "t", script: w.script("tpl-link"),
		env:   map[string]string{"PLANT_AT": "/local/trigger", "TARGET": filepath.Join(w.hostDir, "secret")},
		extra: w.triggerTemplates("t", "local/peek", "        change_mode = \"noop\"\n")}))
}

func (w *ways) userVerdicts() {
	for _, job := range []string{"wi-user-nobody", "wi-user-outside"} {
		al := w.alloc(job, time.Minute, terminal)
		switch {
		case al == nil:
			w.add(job, "ERROR", "the allocation did not end", false)
		case wayStarted(al, "t"):
			out := strings.TrimSpace(w.a.escLogs(al.ID, "t", "stdout"))
			w.add(job, "ESCAPED", "a job's user outside the task identities started: "+strings.ReplaceAll(out, "\n", "; "), false)
		case strings.Contains(wayFailure(al, "t"), "not a task identity on this node"):
			w.add(job, "BLOCKED", "refused at start: "+wayFailure(al, "t"), false)
		default:
			w.add(job, "ERROR", "refused, but not as a task identity: "+al.allEvents("t"), false)
		}
	}
}

func (w *ways) uidShareVerdicts() {
	a := w.alloc("wi-uid-a", time.Minute, wayRunning("t"))
	if a == nil || !wayStarted(a, "t") {
		w.add("wi-uid-share", "ERROR", fmt.Sprintf("wi-uid-a did not start: %v", a), false)
		return
	}
	uid := w.taskUID(a, "t")
	// The control: A's rule refuses what its loop tries, the open port
	// answers.
	eventually(20*time.Second, 500*time.Millisecond, func() bool { return w.open.count.Load() >= 3 })
	if n, m := w.taskDeny.count.Load(), w.open.count.Load(); n != 0 || m < 3 {
		w.add("ctl-egress-deny", "FAIL", fmt.Sprintf("before B, uid %d reached the denied port %d times and the open one %d times", uid, n, m), true)
		return
	}
	w.add("ctl-egress-deny", "OK", fmt.Sprintf("wi-uid-a (uid %d): its egress_deny port refused, the open port reached %d times", uid, w.open.count.Load()), true)

	// B takes A's UID, with an egress_deny of its own (another port).
	w.mustSubmit("wi-uid-b", wayJob("wi-uid-b", "service", "", "", wayTask{name: "t", user: fmt.Sprintf("nomad-%d", uid), script: "id -u; exec sleep 3600",
		config: fmt.Sprintf("        egress_deny = [\"127.0.0.1:%d\"]", w.open.port+1)}))
	b := w.alloc("wi-uid-b", time.Minute, wayRunning("t"))
	w.sharedVerdict("wi-uid-share", "wi-uid-a", uid, b)
	time.Sleep(3 * time.Second)
	during := w.taskDeny.count.Load()
	// B stops: A's rules must stay.
	w.a.stopJob("wi-uid-b")
	w.alloc("wi-uid-b", time.Minute, terminal)
	time.Sleep(4 * time.Second)
	after := w.taskDeny.count.Load() - during
	if during+after > 0 {
		w.add("wi-uid-share-egress", "ESCAPED", fmt.Sprintf("wi-uid-a reached its egress_deny port %d times while wi-uid-b (user nomad-%d, its own egress_deny) ran and %d times after it stopped: B's per-task rules replaced A's, and went with B (tables now: %v)", during, uid, after, wayTables()), false)
	} else {
		w.add("wi-uid-share-egress", "BLOCKED", fmt.Sprintf("wi-uid-a's egress_deny port stayed refused through wi-uid-b's start (started: %v) and stop (tables now: %v)", wayStarted(b, "t"), wayTables()), false)
	}
}

// sharedVerdict: b, which names holder's UID, must be refused with an error
// that names holder.
func (w *ways) sharedVerdict(name, holder string, uid int, b *allocation) {
	switch {
	case b == nil:
		w.add(name, "ERROR", "the second job's allocation did not start or end", false)
	case wayStarted(b, "t"):
		w.add(name, "ESCAPED", fmt.Sprintf("a second job started as uid %d while %s runs as it", uid, holder), false)
	case strings.Contains(wayFailure(b, "t"), "is held by") && strings.Contains(wayFailure(b, "t"), holder):
		w.add(name, "BLOCKED", "refused at start: "+wayFailure(b, "t"), false)
	default:
		w.add(name, "ERROR", "refused, but not naming the holder: "+b.allEvents("t"), false)
	}
}

func (w *ways) namedShareVerdicts() {
	a := w.alloc("wi-named-a", time.Minute, wayRunning("t"))
	if a == nil || !wayStarted(a, "t") {
		w.add("wi-named-share", "ERROR", fmt.Sprintf("wi-named-a (user nomad-%d, in task_uid_range) did not start: %v", wayNamedUID, a), false)
		return
	}
	// The control: an exec with no loader variables works.
	out, stderr, code := w.a.nomadIO(w.t, "", "alloc", "exec", "-i=false", "-t=false", "-task", "t", a.ID, "/bin/sh", "-c", "id -u; grep ^Seccomp: /proc/self/status")
	if f := strings.Fields(out); code == 0 && len(f) == 3 && f[0] == strconv.Itoa(wayNamedUID) && f[2] == "2" {
		w.add("ctl-exec-plain", "OK", fmt.Sprintf("nomad alloc exec into wi-named-a: uid %s, Seccomp %s", f[0], f[2]), true)
	} else {
		w.add("ctl-exec-plain", "FAIL", fmt.Sprintf("nomad alloc exec: exit %d, %q, %q", code, out, stderr), true)
	}
	w.mustSubmit("wi-named-b", wayJob("wi-named-b", "service", "", "", wayTask{name: "t", user: fmt.Sprintf("nomad-%d", wayNamedUID), script: "id -u; exec sleep 3600"}))
	w.sharedVerdict("wi-named-share", "wi-named-a", wayNamedUID, w.alloc("wi-named-b", time.Minute, wayRunning("t")))
}

func (w *ways) pidsVerdict() {
	al := w.alloc("wi-pids", time.Minute, wayRunning("t"))
	switch {
	case al == nil:
		w.add("wi-pids", "ERROR", "no allocation", false)
	case wayStarted(al, "t"):
		max := "not found"
		files, _ := filepath.Glob("/sys/fs/cgroup/pids/nomad/*" + al.ID + "*/pids.max")
		more, _ := filepath.Glob("/sys/fs/cgroup/nomad.slice/*/" + al.ID + "*/pids.max")
		if files = append(files, more...); len(files) > 0 {
			b, _ := os.ReadFile(files[0])
			max = fmt.Sprintf("%s (%s)", strings.TrimSpace(string(b)), files[0])
		}
		w.add("wi-pids", "ESCAPED", fmt.Sprintf("pids_limit = 1000000 (the plugin's is 2048) started; the task's pids.max: %s", max), false)
	case strings.Contains(wayFailure(al, "t"), "above the plugin's pids_limit"):
		w.add("wi-pids", "BLOCKED", "refused at start: "+wayFailure(al, "t"), false)
	default:
		w.add("wi-pids", "ERROR", "refused, but not for its pids_limit: "+al.allEvents("t"), false)
	}
}

func (w *ways) tokenVerdict() {
	const job = "wi-token-link"
	al := w.alloc(job, 90*time.Second, func(al *allocation) bool {
		ts := al.TaskStates["t"]
		return terminal(al) || (ts != nil && ts.Restarts >= 1 && ts.State == "running")
	})
	created := filepath.Join(w.hostDir, "token-created")
	canary := filepath.Join(w.hostDir, "token-canary")
	var hits []string
	if fi, err := os.Lstat(created); err == nil {
		b, _ := os.ReadFile(created)
		hits = append(hits, fmt.Sprintf("%s created (%v, uid %d, %d bytes: %.40q...)", created, fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid, len(b), b))
	}
	if b, _ := os.ReadFile(canary); string(b) != "canary "+w.rnd+"\n" {
		fi, _ := os.Lstat(canary)
		hits = append(hits, fmt.Sprintf("%s overwritten (%v, %d bytes: %.40q...)", canary, fi.Mode(), len(b), b))
	}
	if al == nil {
		w.add(job, "ERROR", "no allocation", false)
		return
	}
	ts := al.TaskStates["t"]
	logs := strings.TrimSpace(w.a.escLogs(al.ID, "t", "stdout"))
	if len(hits) > 0 {
		w.add(job, "ESCAPED", fmt.Sprintf("the client, writing the task's tokens as root on its restart, followed the links the task planted in /secrets: %s (task: %q)", strings.Join(hits, "; "), logs), false)
		return
	}
	if ts == nil || ts.Restarts < 1 {
		w.add(job, "ERROR", "the task did not restart, so the client never wrote its tokens again: "+al.allEvents("t"), false)
		return
	}
	w.add(job, "BLOCKED", fmt.Sprintf("after %d restarts no host file was created or changed (task: %q)", ts.Restarts, logs), false)
}

func (w *ways) envMiscVerdicts() {
	const job = "wi-env"
	dir := filepath.Join(w.hostDir, "markers", job)
	al := w.alloc(job, time.Minute, wayRunning("t"))
	if al == nil || !wayStarted(al, "t") {
		w.add(job, "ERROR", fmt.Sprintf("did not start: %v", al), false)
		return
	}
	eventually(20*time.Second, 250*time.Millisecond, func() bool {
		return strings.Contains(w.a.escLogs(al.ID, "t", "stdout"), "planted")
	})
	before := wayMarkers(dir)
	_, stderr, code := w.a.nomadIO(w.t, "", "alloc", "exec", "-i=false", "-t=false", "-task", "t", al.ID, "true")
	time.Sleep(500 * time.Millisecond)
	made := wayNewOnly(before, wayMarkers(dir))
	rec, _ := os.ReadFile(filepath.Join(w.taskDir(al, "t"), "local", "waysin.rec"))
	ran := fmt.Sprintf("`nomad alloc exec true` exited %d", code)
	if code != 0 {
		ran += " (" + strings.TrimSpace(stderr) + ")"
	}
	pick := func(prefix string) []string {
		var out []string
		for _, m := range made {
			if strings.HasPrefix(m, prefix) {
				out = append(out, m)
			}
		}
		return out
	}
	if m := pick("lddebug"); len(m) > 0 {
		w.add("wi-env-ld-debug-output", "ESCAPED", fmt.Sprintf("%s; with the job's LD_DEBUG_OUTPUT the dynamic loader wrote, as root on the host, %v into the test's root-only dir", ran, m), false)
	} else {
		w.add("wi-env-ld-debug-output", "BLOCKED", ran+"; nothing written where the job's LD_DEBUG_OUTPUT points", false)
	}
	if m := pick("rc-"); len(m) > 0 {
		w.add("wi-env-bash-env", "ESCAPED", fmt.Sprintf("%s; a root shell ran the rc file the job's BASH_ENV/ENV name: %v", ran, m), false)
	} else {
		w.add("wi-env-bash-env", "BLOCKED", ran+"; no root shell read the job's BASH_ENV or ENV", false)
	}
	var planted []string
	for _, l := range strings.Split(string(rec), "\n") {
		if strings.HasPrefix(l, "planted-true") || strings.HasPrefix(l, "rc ") {
			planted = append(planted, l)
		}
	}
	switch {
	case len(pick("planted-true")) > 0:
		w.add("wi-env-path", "ESCAPED", fmt.Sprintf("%s; the task's /local/bin/true (first on the job's PATH) ran as root: %v", ran, planted), false)
	case strings.Contains(strings.Join(planted, " "), "Seccomp:0"):
		w.add("wi-env-path", "ESCAPED", fmt.Sprintf("%s; the task's /local/bin/true ran unfiltered: %v", ran, planted), false)
	default:
		w.add("wi-env-path", "BLOCKED", fmt.Sprintf("%s; what the task planted ran only as the task under its filter, if at all: %v", ran, planted), false)
	}
}

// envNamesVerdict: env names with "=" or NUL must not start a task, or
// not reach a root step or the exec path's helper.
func (w *ways) envNamesVerdict() {
	const job = "wi-env-names"
	if err := w.submitErr[job]; err != nil {
		w.add(job, "BLOCKED", "Nomad refused the job: "+wayFirstLine(err.Error()), false)
		return
	}
	al := w.alloc(job, time.Minute, wayRunning("t"))
	switch {
	case al == nil:
		w.add(job, "ERROR", "no allocation", false)
		return
	case !wayStarted(al, "t"):
		w.add(job, "BLOCKED", "refused at start: "+wayFailure(al, "t"), false)
		return
	}
	rf := &wayRecordFile{path: filepath.Join(w.taskDir(al, "t"), "local", "waysin.rec")}
	eventually(20*time.Second, 250*time.Millisecond, func() bool {
		return strings.Contains(w.a.escLogs(al.ID, "t", "stdout"), "library written")
	})
	rf.next()
	dir := filepath.Join(w.hostDir, "markers", job)
	before := wayMarkers(dir)
	_, stderr, code := w.a.nomadIO(w.t, "", "alloc", "exec", "-i=false", "-t=false", "-task", "t", al.ID, "/bin/true")
	time.Sleep(500 * time.Millisecond)
	ran := fmt.Sprintf("started with env names %q and %q; `nomad alloc exec /bin/true` exited %d", "LD_PRELOAD=/local/x.so:", "WAYSIN\x00NUL", code)
	if code != 0 {
		ran += " (" + strings.TrimSpace(stderr) + ")"
	}
	v, why := wayLoaderVerdict(rf.next(), wayNewOnly(before, wayMarkers(dir)), ran, code == 0)
	w.add(job, v, why, false)
}

func (w *ways) fieldVerdicts(rRoot, rOutside string) {
	// A command that reads as an option.
	if al := w.alloc("wi-cmd-dash", time.Minute, terminal); al == nil {
		w.add("wi-cmd-dash", "ERROR", "the allocation did not end", false)
	} else if wayStarted(al, "t") {
		out := w.a.escLogs(al.ID, "t", "stdout") + w.a.escLogs(al.ID, "t", "stderr")
		w.add("wi-cmd-dash", "ESCAPED", "command = \"--ro-bind\" started: "+strings.TrimSpace(out), false)
	} else {
		w.add("wi-cmd-dash", "BLOCKED", "command = \"--ro-bind\" refused: "+wayFailure(al, "t"), false)
	}
	// r_libs out of the operator's roots.
	for _, job := range []string{"wi-rlibs-dotdot", "wi-rlibs-link"} {
		al := w.alloc(job, time.Minute, terminal)
		switch {
		case al == nil:
			w.add(job, "ERROR", "the allocation did not end", false)
		case wayStarted(al, "t"):
			v, why := escVerdictOf(w.a.escLogs(al.ID, "t", "stdout"), wayExitCode(al, "t"), false)
			w.add(job, v, why, false)
		case strings.Contains(wayFailure(al, "t"), "r_libs"):
			w.add(job, "BLOCKED", "refused at start: "+wayFailure(al, "t"), false)
		default:
			w.add(job, "ERROR", "refused, but not for its r_libs: "+al.allEvents("t"), false)
		}
	}
	// A template destination out of the task dir.
	outside := filepath.Join(w.hostDir, "tpl-outside")
	switch _, statErr := os.Stat(outside); {
	case statErr == nil:
		b, _ := os.ReadFile(outside)
		w.add("wi-tpl-dest-outside", "ESCAPED", fmt.Sprintf("the client rendered %s: %q", outside, b), false)
	case w.submitErr["wi-tpl-dest-outside"] != nil:
		w.add("wi-tpl-dest-outside", "BLOCKED", "Nomad refused the job: "+wayFirstLine(w.submitErr["wi-tpl-dest-outside"].Error()), false)
	default:
		al := w.alloc("wi-tpl-dest-outside", time.Minute, terminal)
		if al == nil {
			w.add("wi-tpl-dest-outside", "ERROR", "the allocation did not end", false)
		} else {
			w.add("wi-tpl-dest-outside", "BLOCKED", fmt.Sprintf("%s not written; the allocation: %s", outside, strings.ReplaceAll(al.allEvents("t"), "\n", "; ")), false)
		}
	}
	// Links at a template's destination dir and at the file it reads.
	w.tplLinkVerdict("wi-tpl-parent-link", func(al *allocation) (bool, string) {
		entries, _ := os.ReadDir(filepath.Join(w.hostDir, "tpl-dir"))
		if len(entries) > 0 {
			return true, fmt.Sprintf("the client's render wrote %s/%s through the link the task planted at local/sub", filepath.Join(w.hostDir, "tpl-dir"), entries[0].Name())
		}
		why := filepath.Join(w.hostDir, "tpl-dir") + " still empty"
		// The client renders chrooted to the allocation dir: the link
		// resolves inside it.
		inside := filepath.Join(w.allocDir, al.ID, w.hostDir, "tpl-dir", "out")
		if b, err := os.ReadFile(inside); err == nil {
			why += fmt.Sprintf("; the render went to %s (%q): the link resolved inside the allocation dir", inside, b)
		}
		return false, why
	})
	w.tplLinkVerdict("wi-tpl-file-link", func(al *allocation) (bool, string) {
		b, _ := os.ReadFile(filepath.Join(w.taskDir(al, "t"), "local", "peek"))
		if strings.Contains(string(b), "host-secret-"+w.rnd) {
			return true, fmt.Sprintf("the client read the root-only %s through the link at local/trigger into local/peek: %q", filepath.Join(w.hostDir, "secret"), b)
		}
		return false, fmt.Sprintf("local/peek holds %q", b)
	})
}

// tplLinkVerdict waits for the task to plant and rewrite, then for the
// client to render again, and asks escaped what the host sees.
func (w *ways) tplLinkVerdict(job string, escaped func(*allocation) (bool, string)) {
	al := w.alloc(job, time.Minute, wayRunning("t"))
	if al == nil || !wayStarted(al, "t") {
		w.add(job, "ERROR", fmt.Sprintf("did not start: %v", al), false)
		return
	}
	if !eventually(30*time.Second, 500*time.Millisecond, func() bool {
		return strings.Contains(w.a.escLogs(al.ID, "t", "stdout"), "done")
	}) {
		w.add(job, "ERROR", "the task did not plant and rewrite: "+w.a.escLogs(al.ID, "t", "stdout"), false)
		return
	}
	// The file function polls every 2 s; give the client a few renders.
	var hit bool
	var why string
	eventually(10*time.Second, time.Second, func() bool {
		hit, why = escaped(al)
		return hit
	})
	cur := w.alloc(job, time.Second, func(*allocation) bool { return true })
	events := ""
	if cur != nil {
		events = strings.ReplaceAll(cur.allEvents("t"), "\n", "; ")
	}
	if hit {
		w.add(job, "ESCAPED", why, false)
	} else {
		w.add(job, "BLOCKED", fmt.Sprintf("%s; task: %q; events: %s; the agent's log: %s", why, strings.TrimSpace(w.a.escLogs(al.ID, "t", "stdout")), events,
			w.renderLog(al.ID)), false)
	}
}

// Writes of Nomad's client that no driver sees: the dispatch payload and an
// artifact, each at a path in the allocation's shared dir where a prestart
// task planted a link, and identity files. bwrap-r's link guard (the host's
// view of local/ and alloc/ follows no link) blocks those that go through a
// link, so they fail the test when they escape; an identity filepath that
// climbs out of the task dir with ".." is Nomad's alone (upstream).
func (w *ways) submitUpstreamJobs() {
	t := w.t
	w.upstream["wi-identity-filepath"] = true
	// An identity's filepath, joined to the task dir by the client: one
	// that climbs out of it, and one in local/ where the task plants a link
	// before a restart.
	identity := func(path string) string {
		return fmt.Sprintf("      identity {\n        name     = \"fp\"\n        aud      = [\"waysin\"]\n        file     = true\n        ttl      = \"1h\"\n        filepath = %q\n      }\n", path)
	}
	w.submitErr["wi-identity-filepath"] = w.submit("wi-identity-filepath", wayJob("wi-identity-filepath", "service", "", "",
		wayTask{name: "t", script: "exec sleep 3600", extra: identity(strings.Repeat("../", 16) + strings.TrimPrefix(filepath.Join(w.hostDir, "identity-out"), "/"))}))
	w.mustSubmit("wi-identity-filepath-link", wayJob("wi-identity-filepath-link", "service", "", "    restart {\n      attempts = 2\n      delay    = \"1s\"\n      mode     = \"fail\"\n    }\n",
		wayTask{name: "t", env: map[string]string{"TARGET": filepath.Join(w.hostDir, "identity-link")}, extra: identity("local/tok"),
			script: `if [ ! -e /local/planted ]; then touch /local/planted; rm -f /local/tok && ln -s "$TARGET" /local/tok && echo planted; exit 3; fi; echo restarted; exec sleep 3600`}))
	// The client's file API (nomad alloc fs), which a job's owner may use,
	// reads as root: links the task planted in local/ to host paths.
	w.mustSubmit("wi-fs-link", wayJob("wi-fs-link", "service", "", "", wayTask{name: "t",
		script: `ln -s "$TARGET" /local/file-link && ln -s "$TARGET_DIR" /local/dir-link && echo planted; exec sleep 3600`,
		env:    map[string]string{"TARGET": filepath.Join(w.hostDir, "secret"), "TARGET_DIR": w.hostDir}}))
	plant := func(link, target string) wayTask {
		return wayTask{name: "plant", lifecycle: "prestart", script: w.script("plant-link"), env: map[string]string{"LINK": link, "TARGET": target}}
	}
	w.mustSubmit("wi-dispatch-link", wayJob("wi-dispatch-link", "batch", "  parameterized {\n    payload = \"required\"\n  }\n", "",
		plant("/alloc/data/payload", filepath.Join(w.hostDir, "dispatch-target")),
		wayTask{name: "t", script: "ls -l /alloc/data", extra: "      dispatch_payload {\n        file = \"../../alloc/data/payload\"\n      }\n"}))
	payload := filepath.Join(t.TempDir(), "payload")
	if err := os.WriteFile(payload, []byte("payload "+w.rnd+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := w.a.nomad("job", "dispatch", "-detach", "wi-dispatch-link", payload)
	if err != nil {
		t.Fatalf("nomad job dispatch: %v\n%s", err, out)
	}
	if m := regexp.MustCompile(`Dispatched Job ID = (\S+)`).FindStringSubmatch(out); m != nil {
		w.dispatched = m[1]
	} else {
		t.Fatalf("no dispatched job ID in %q", out)
	}

	w.mustSubmit("wi-artifact-link", wayJob("wi-artifact-link", "batch", "", "",
		plant("/alloc/data/art", filepath.Join(w.hostDir, "artifact-target")),
		wayTask{name: "t", script: "ls -l /alloc/data", extra: fmt.Sprintf("      artifact {\n        source      = \"http://%s/art.txt\"\n        destination = \"../alloc/data/art\"\n        mode        = \"file\"\n      }\n", w.httpAddr)}))
}

// serveArtifacts serves the jobs' artifacts on loopback: /trigger for the
// files templates watch, anything else for the artifact probe.
func (w *ways) serveArtifacts() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		w.t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/trigger" {
			fmt.Fprintln(rw, "initial")
			return
		}
		fmt.Fprintf(rw, "artifact %s\n", w.rnd)
	})}
	go srv.Serve(l)
	w.t.Cleanup(func() { srv.Close() })
	w.httpAddr = l.Addr().String()
}

func (w *ways) upstreamVerdicts() {
	w.fsLinkVerdict()
	w.identityFilepathVerdicts()
	for _, tc := range []struct{ job, name, target string }{
		{w.dispatched, "wi-dispatch-link", "dispatch-target"},
		{"wi-artifact-link", "wi-artifact-link", "artifact-target"},
	} {
		al := w.alloc(tc.job, 90*time.Second, terminal)
		target := filepath.Join(w.hostDir, tc.target)
		if fi, err := os.Lstat(target); err == nil {
			b, _ := os.ReadFile(target)
			w.add(tc.name, "ESCAPED", fmt.Sprintf("Nomad's client (root) wrote %s (%v) through the link a prestart task of the allocation planted: %q", target, fi.Mode(), b), false)
			continue
		}
		if al == nil {
			w.add(tc.name, "ERROR", "the allocation did not end", false)
			continue
		}
		planted := strings.TrimSpace(w.a.escLogs(al.ID, "plant", "stdout"))
		if !strings.Contains(planted, "planted") {
			w.add(tc.name, "BLOCKED", "the prestart task could not plant its link: "+planted, false)
			continue
		}
		w.add(tc.name, "BLOCKED", fmt.Sprintf("%s not written (%s); main: %s", target, planted, strings.ReplaceAll(al.allEvents("t"), "\n", "; ")), false)
	}
}

// identityFilepathVerdicts: did the client write an identity's token out
// of the task dir, or through the link the task planted at its filepath?
func (w *ways) identityFilepathVerdicts() {
	out := filepath.Join(w.hostDir, "identity-out")
	if err := w.submitErr["wi-identity-filepath"]; err != nil {
		w.add("wi-identity-filepath", "BLOCKED", "Nomad refused the job: "+wayFirstLine(err.Error()), false)
	} else {
		al := w.alloc("wi-identity-filepath", time.Minute, wayRunning("t"))
		if fi, err := os.Lstat(out); err == nil {
			w.add("wi-identity-filepath", "ESCAPED", fmt.Sprintf("the client wrote the task's token to %s (%v) as root: filepath = \"../../...\" climbs out of the task dir", out, fi.Mode()), false)
		} else if al == nil {
			w.add("wi-identity-filepath", "ERROR", "no allocation", false)
		} else {
			w.add("wi-identity-filepath", "BLOCKED", fmt.Sprintf("%s not written; events: %s", out, strings.ReplaceAll(al.allEvents("t"), "\n", "; ")), false)
		}
	}
	link := filepath.Join(w.hostDir, "identity-link")
	al := w.alloc("wi-identity-filepath-link", 90*time.Second, func(al *allocation) bool {
		ts := al.TaskStates["t"]
		return terminal(al) || (ts != nil && ts.Restarts >= 1 && ts.State == "running")
	})
	switch fi, err := os.Lstat(link); {
	case err == nil:
		w.add("wi-identity-filepath-link", "ESCAPED", fmt.Sprintf("on the task's restart the client wrote its token as root through the link the task planted at local/tok: %s (%v) created", link, fi.Mode()), false)
	case al == nil || al.TaskStates["t"] == nil || al.TaskStates["t"].Restarts < 1:
		w.add("wi-identity-filepath-link", "ERROR", fmt.Sprintf("the task did not restart: %v", al), false)
	default:
		w.add("wi-identity-filepath-link", "BLOCKED", fmt.Sprintf("%s not written after a restart (task: %q)", link, strings.TrimSpace(w.a.escLogs(al.ID, "t", "stdout"))), false)
	}
}

// fsLinkVerdict reads the task's links through the client's file API.
func (w *ways) fsLinkVerdict() {
	const job = "wi-fs-link"
	al := w.alloc(job, time.Minute, wayRunning("t"))
	if al == nil || !wayStarted(al, "t") {
		w.add(job, "ERROR", fmt.Sprintf("did not start: %v", al), false)
		return
	}
	if !eventually(20*time.Second, 250*time.Millisecond, func() bool {
		return strings.Contains(w.a.escLogs(al.ID, "t", "stdout"), "planted")
	}) {
		w.add(job, "ERROR", "the task did not plant its links: "+w.a.escLogs(al.ID, "t", "stderr"), false)
		return
	}
	get := func(op, path string) string {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(fmt.Sprintf("%s/v1/client/fs/%s/%s?path=%s", w.a.addr, op, al.ID, url.QueryEscape(path)))
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	cat, ls := get("cat", "t/local/file-link"), get("ls", "t/local/dir-link")
	why := fmt.Sprintf("cat t/local/file-link -> %.120q; ls t/local/dir-link -> %.160q", cat, ls)
	if strings.Contains(cat, "host-secret-"+w.rnd) || strings.Contains(ls, "token-canary") {
		w.add(job, "ESCAPED", "the client's file API read host paths through links in the task's local/: "+why, false)
		return
	}
	w.add(job, "BLOCKED", why, false)
}

// taskAPIVerdicts reads what the Task API task saw, before and after an
// agent restart.
func (w *ways) taskAPIVerdicts() {
	const job = "wi-task-api"
	al := w.alloc(job, time.Minute, wayRunning("t"))
	if al == nil || !wayStarted(al, "t") {
		w.add(job, "ERROR", fmt.Sprintf("did not start: %v", al), false)
		return
	}
	logPath := filepath.Join(w.taskDir(al, "t"), "local", "api.log")
	rounds := func(since time.Time) []string {
		f, err := os.Open(logPath)
		if err != nil {
			return nil
		}
		defer f.Close()
		var out []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) == 0 {
				continue
			}
			if ts, err := strconv.ParseInt(fs[0], 10, 64); err == nil && time.Unix(ts, 0).After(since) {
				out = append(out, sc.Text())
			}
		}
		return out
	}
	judge := func(name string, lines []string) {
		if len(lines) == 0 {
			w.add(name, "ERROR", "the task logged no round", false)
			return
		}
		last := lines[len(lines)-1]
		for _, l := range lines {
			if strings.Contains(l, "tcp=[connected]") {
				w.add("ctl-"+name+"-tcp", "FAIL", "the task reached the agent's TCP address, which the egress rules deny: "+l, true)
				return
			}
		}
		var reached []string
		for _, l := range lines {
			if strings.Contains(l, "=[HTTP/") {
				reached = append(reached, l)
			}
		}
		if len(reached) > 0 {
			w.add(name, "ESCAPED", fmt.Sprintf("the agent's HTTP API answered through /secrets/api.sock while the egress rules deny its address (%d of %d rounds): %s", len(reached), len(lines), reached[len(reached)-1]), false)
		} else {
			w.add(name, "BLOCKED", fmt.Sprintf("no answer through /secrets/api.sock in %d rounds: %s", len(lines), last), false)
		}
	}
	eventually(20*time.Second, time.Second, func() bool { return len(rounds(time.Time{})) >= 3 })
	judge(job, rounds(time.Time{}))

	// The agent restarts: the client restores the task (and its socket).
	w.a.interrupt()
	if err := w.a.launch(); err != nil {
		w.add(job+"-after-restart", "ERROR", "relaunching the agent: "+err.Error(), false)
		return
	}
	if err := w.a.waitDriver(true, 2*time.Minute); err != nil {
		w.add(job+"-after-restart", "ERROR", "the agent did not come back: "+err.Error(), false)
		return
	}
	since := time.Now()
	eventually(30*time.Second, time.Second, func() bool { return len(rounds(since)) >= 3 })
	judge(job+"-after-restart", rounds(since))
}

// finish prints the verdicts and the summary, and fails the test for every
// escape (but upstream ones), missing verdict and failed control.
func (w *ways) finish(start time.Time) {
	t := w.t
	var probes, blocked, upstreamEscaped int
	var report strings.Builder
	for _, v := range w.verdicts {
		kind := "probe  "
		if v.control {
			kind = "control"
		} else {
			probes++
			if v.verdict == "BLOCKED" {
				blocked++
			}
		}
		if w.upstream[v.name] {
			kind = "upstrm "
		}
		fmt.Fprintf(&report, "%s %-24s %-7s %s\n", kind, v.name, v.verdict, v.why)
		switch {
		case v.verdict == "ESCAPED" && w.upstream[v.name]:
			upstreamEscaped++
			t.Logf("UPSTREAM: probe %s ESCAPED through Nomad's client alone (see SECURITY.md): %s", v.name, v.why)
		case v.verdict == "ESCAPED":
			t.Errorf("probe %s ESCAPED: %s", v.name, v.why)
		case v.verdict == "ERROR":
			t.Errorf("%s %s gave no verdict: %s", strings.TrimSpace(kind), v.name, v.why)
		case v.verdict == "FAIL":
			t.Errorf("control %s failed: %s", v.name, v.why)
		}
	}
	t.Logf("verdicts:\n%s", report.String())
	t.Logf("ways in took %v", time.Since(start).Round(time.Second))
	summary := fmt.Sprintf("ways in: %d probes, %d blocked", probes, blocked)
	if upstreamEscaped > 0 {
		summary += fmt.Sprintf(" (%d escaped through Nomad's client alone)", upstreamEscaped)
	}
	fmt.Println(summary)
	appendSummary(t, summary)
}

// wayCountLines joins distinct lines, each with how often it occurs.
func wayCountLines(lines []string) string {
	n := map[string]int{}
	var order []string
	for _, l := range lines {
		if n[l] == 0 {
			order = append(order, l)
		}
		n[l]++
	}
	for i, l := range order {
		if n[l] > 1 {
			order[i] = fmt.Sprintf("%dx %s", n[l], l)
		}
	}
	return strings.Join(order, "; ")
}

// renderLog returns the agent's last few log lines about rendering an
// allocation's templates, with the errors the render subprocess logged
// right after them (those do not name the allocation).
func (w *ways) renderLog(allocID string) string {
	b, _ := os.ReadFile(w.a.log)
	lines := strings.Split(string(b), "\n")
	var picked []string
	for i, l := range lines {
		if !strings.Contains(l, allocID) || !strings.Contains(l, "render") {
			continue
		}
		picked = append(picked, strings.TrimSpace(l))
		for _, next := range lines[i+1 : min(i+4, len(lines))] {
			if strings.Contains(next, "[ERROR]") {
				picked = append(picked, strings.TrimSpace(next))
			}
		}
	}
	if len(picked) > 4 {
		picked = picked[len(picked)-4:]
	}
	if len(picked) == 0 {
		return "(nothing)"
	}
	return strings.Join(picked, " | ")
}

func wayFirstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// wayExitCode is the task's last exit code, -1 when it has none.
func wayExitCode(al *allocation, task string) int {
	term := al.events(task, "Terminated")
	if len(term) == 0 {
		return -1
	}
	return term[len(term)-1].ExitCode
}
