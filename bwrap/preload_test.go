package bwrap

import (
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needPreload skips a test of the preloaded launcher in a build without it;
// make test sets BWRAP_R_WANT_PRELOAD, so that there its loss fails.
func needPreload(t *testing.T) {
	t.Helper()
	if !Preloaded() {
		if os.Getenv("BWRAP_R_WANT_PRELOAD") != "" {
			t.Fatal("no preloaded launcher in this build (go test -tags preload, after make build)")
		}
		t.Skip("a build without the preloaded launcher (-tags preload)")
	}
}

// dropSpares lets go the idle spare of shim and bwrap, once none is on its
// way: the next launch then starts its own, as the spares are now made.
func dropSpares(t *testing.T, shim []string, bwrap string) {
	t.Helper()
	key := spareKey(shim, bwrap)
	deadline := time.Now().Add(10 * time.Second)
	for {
		spares.Lock()
		filling := spares.filling[key]
		spares.Unlock()
		if !filling {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a spare is on its way for ever")
		}
		time.Sleep(time.Millisecond)
	}
	if ln := takeSpare(shim, bwrap); ln != nil {
		ln.request(nil, nil) // closes the socket: it ends
		ln.cmd.Wait()
	}
}

// launchView is what a sandbox's processes are given, as the plugin (root)
// and the sandbox's command see them.
type launchView struct {
	// monitor: bwrap's process outside the sandbox, as /proc shows it.
	monitor map[string]string
	// command: the sandbox's command's own account.
	command string
	// maps: the monitor's mappings.
	maps string
}

// What differs between any two launches: inode numbers, temporary names.
var inodeNumber = regexp.MustCompile(`\[[0-9]+\]|bwrap-(test|stage)-[0-9]+`)

// viewLaunch starts a sandbox through a fresh spare, preloaded or exec'd,
// and reads what its monitor and its command were given.
func viewLaunch(t *testing.T, preload bool) launchView {
	t.Helper()
	bw := needSandbox(t)
	DisablePreload(!preload)
	defer DisablePreload(false)
	shim := []string{os.Args[0], ShimCommand}
	dropSpares(t, shim, bw)
	uid, gid := nobody(t)
	script := `for fd in /proc/self/fd/*; do echo "fd ${fd##*/} $(readlink $fd)"; done
grep -E '^(Uid|Gid|Groups|Cap|NoNewPrivs|Seccomp|Sig(Blk|Ign)|Umask)' /proc/self/status
env | sort
echo ready
exec sleep 60`
	b := startBox(t, uid, gid, NetworkNone, "/bin/sh", "-c", script)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(b.output(t), "ready\n") {
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox did not say ready: %q", b.output(t))
		}
		time.Sleep(5 * time.Millisecond)
	}
	proc := "/proc/" + strconv.Itoa(b.Monitor.Pid)
	v := launchView{monitor: map[string]string{}, command: inodeNumber.ReplaceAllString(b.output(t), "")}
	status, err := os.ReadFile(proc + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		for _, field := range []string{"Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "SigBlk", "SigIgn", "SigCgt", "Umask"} {
			if strings.HasPrefix(line, field+":") {
				v.monitor[field] = line
			}
		}
	}
	var fds []string
	entries, err := os.ReadDir(proc + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		target, _ := os.Readlink(proc + "/fd/" + e.Name())
		fds = append(fds, e.Name()+" "+inodeNumber.ReplaceAllString(target, ""))
	}
	v.monitor["fds"] = strings.Join(fds, "; ")
	if len(fds) < 3 {
		t.Fatalf("the monitor has descriptors %q: not a sandbox's", fds)
	}
	environ, err := os.ReadFile(proc + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	// Where root may not shorten it (PR_SET_MM needs CAP_SYS_RESOURCE), the
	// spare's environment shows as NUL bytes: its length, nothing of it.
	v.monitor["environ"] = strings.Trim(string(environ), "\x00")
	// Owned by the task's UID only if dumpable, as after an exec.
	if fi, err := os.Stat(proc + "/fd"); err == nil {
		v.monitor["owner"] = strconv.FormatUint(uint64(fi.Sys().(*syscall.Stat_t).Uid), 10)
	}
	cwd, _ := os.Readlink(proc + "/cwd")
	v.monitor["cwd"] = cwd
	cgroup, _ := os.ReadFile(proc + "/cgroup")
	v.monitor["cgroup"] = string(cgroup)
	// The mounts it sees, by what and where (mount ids and devices differ).
	mountinfo, err := os.ReadFile(proc + "/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var mounts []string
	for _, line := range strings.Split(strings.TrimSpace(string(mountinfo)), "\n") {
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if len(f) > 5 && sep > 0 && sep+2 < len(f) {
			mounts = append(mounts, f[3]+" "+f[4]+" "+f[5]+" "+f[sep+1]+" "+filepath.Base(f[sep+2]))
		}
	}
	v.monitor["mounts"] = inodeNumber.ReplaceAllString(strings.Join(mounts, "\n"), "")
	maps, err := os.ReadFile(proc + "/maps")
	if err != nil {
		t.Fatal(err)
	}
	v.maps = string(maps)
	return v
}

// A sandbox launched by a preloaded spare is given exactly what one whose
// spare exec'd bwrap is: its monitor has the same IDs, capabilities,
// descriptors, signals, mounts and an empty environment, is dumpable (so
// owned by the task, as after an exec), and holds nothing root opened; its
// command sees the same. Only the monitor's mappings differ: they hold the
// launcher object, which proves the preloaded path ran.
func TestPreloadedLaunchIsAnExecsTwin(t *testing.T) {
	needPreload(t)
	exec := viewLaunch(t, false)
	preload := viewLaunch(t, true)
	if !strings.Contains(preload.maps, "memfd:bwrap-r-launcher") {
		t.Fatalf("the preloaded launch's monitor does not map the launcher object:\n%s", preload.maps)
	}
	if strings.Contains(exec.maps, "bwrap-r-launcher") {
		t.Fatalf("the exec'd launch's monitor maps the launcher object:\n%s", exec.maps)
	}
	if preload.monitor["environ"] != "" {
		t.Errorf("the monitor's environment is %q, want it empty", preload.monitor["environ"])
	}
	if strings.Contains(preload.monitor["fds"], "memfd") {
		t.Errorf("the monitor holds a memory file: %s", preload.monitor["fds"])
	}
	uid, _ := nobody(t)
	if preload.monitor["owner"] != strconv.Itoa(int(uid)) {
		t.Errorf("the monitor's /proc entries are owned by %s, want the task's %d (dumpable)", preload.monitor["owner"], uid)
	}
	for k, want := range exec.monitor {
		if got := preload.monitor[k]; got != want {
			t.Errorf("monitor %s: preloaded\n%s\nexec'd\n%s", k, got, want)
		}
	}
	if preload.command != exec.command {
		t.Errorf("the command saw, preloaded:\n%s\nexec'd:\n%s", preload.command, exec.command)
	}
	if strings.Contains(preload.command, "LD_PRELOAD") {
		t.Errorf("the command has the spare's environment:\n%s", preload.command)
	}
}

// The launcher object acts only as a spare: root, with a spare's argv.
// Loaded into bwrap any other way (another argv, or another user) it ends
// the process at once, before bwrap's main, having done nothing.
func TestLauncherObjectActsOnlyAsASpare(t *testing.T) {
	needPreload(t)
	bw := needSandbox(t)
	// Where nobody can read it too (TMPDIR is traversable by task UIDs).
	dir := stageDir(t)
	object := filepath.Join(dir, "launcher.so")
	if err := os.WriteFile(object, preloadObject, 0o755); err != nil {
		t.Fatal(err)
	}
	uid, gid := nobody(t)
	for _, c := range []struct {
		name string
		args []string
		as   *syscall.Credential
	}{
		{"bwrap's own argv", []string{"--version"}, nil},
		{"a spare's argv, not as root", []string{ShimCommand, "-request"}, &syscall.Credential{Uid: uid, Gid: gid}},
		{"a spare's argv with a pair cut short", []string{ShimCommand, "-request", "/etc/hosts"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := osexec.Command(bw, c.args...)
			cmd.Env = []string{"LD_PRELOAD=" + object}
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.as}
			out, err := cmd.CombinedOutput()
			if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 125 || !strings.Contains(string(out), "runs only as bwrap-r's spare launcher") {
				t.Errorf("exit %v (%v), said %q; want 125 and the refusal", cmd.ProcessState, err, out)
			}
			if strings.Contains(string(out), "bubblewrap") {
				t.Errorf("bwrap's main ran: %q", out)
			}
		})
	}
}
