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
	if preloadStale {
		t.Fatal("the embedded launcher object is not of these sources: make bwrap/preload.so")
	}
	if !Preloaded(needSandbox(t)) {
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
	// monitor and init: bwrap's process outside the sandbox and the
	// sandbox's pid 1 (bwrap too), as /proc shows them.
	monitor, init map[string]string
	// command: the sandbox's command's own account.
	command string
	// maps: the monitor's mappings.
	maps string
}

// What differs between any two launches: inode numbers, temporary names.
var inodeNumber = regexp.MustCompile(`\[[0-9]+\]|bwrap-(test|stage)-[0-9]+`)

// procView reads what /proc shows of pid that an exec decides.
func procView(t *testing.T, pid int) map[string]string {
	t.Helper()
	proc := "/proc/" + strconv.Itoa(pid)
	v := map[string]string{}
	status, err := os.ReadFile(proc + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		for _, field := range []string{"Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "SigBlk", "SigIgn", "SigCgt", "Umask"} {
			if strings.HasPrefix(line, field+":") {
				v[field] = line
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
	v["fds"] = strings.Join(fds, "; ")
	if len(fds) < 3 {
		t.Fatalf("pid %d has descriptors %q: not a sandbox's", pid, fds)
	}
	for _, f := range []string{"environ", "cmdline", "limits", "personality", "cgroup"} {
		b, err := os.ReadFile(proc + "/" + f)
		if err != nil {
			t.Fatal(err)
		}
		v[f] = inodeNumber.ReplaceAllString(string(b), "")
	}
	// Owned by the task's UID only if dumpable, as after an exec.
	if fi, err := os.Stat(proc + "/fd"); err == nil {
		v["owner"] = strconv.FormatUint(uint64(fi.Sys().(*syscall.Stat_t).Uid), 10)
	}
	cwd, _ := os.Readlink(proc + "/cwd")
	v["cwd"] = cwd
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
	v["mounts"] = inodeNumber.ReplaceAllString(strings.Join(mounts, "\n"), "")
	return v
}

// viewLaunch starts a sandbox through a spare, preloaded or exec'd, that
// copied the launch's /etc files ahead (a spare after a launch like it),
// and reads what its monitor, its pid 1 and its command were given.
func viewLaunch(t *testing.T, preload bool) launchView {
	t.Helper()
	bw := needSandbox(t)
	DisablePreload(!preload)
	defer DisablePreload(false)
	shim := []string{os.Args[0], ShimCommand}
	dropSpares(t, shim, bw)
	uid, gid := nobody(t)
	// The launch before leaves a spare of this kind with its copies ahead.
	if b := startBox(t, uid, gid, NetworkNone, "/bin/true"); !b.Wait(30*time.Second) || b.Status().Code != 0 {
		t.Fatalf("the launch before: %+v", b.Status())
	}
	ln := readySpare(t, shim, bw).cmd.Process.Pid
	maps, _ := os.ReadFile("/proc/" + strconv.Itoa(ln) + "/maps")
	if got := strings.Contains(string(maps), "memfd:bwrap-r-launcher"); got != preload {
		t.Fatalf("the spare maps the launcher object: %v, want %v", got, preload)
	}
	script := `for fd in /proc/self/fd/*; do echo "fd ${fd##*/} $(readlink $fd)"; done
grep -E '^(Uid|Gid|Groups|Cap|NoNewPrivs|Seccomp|Sig(Blk|Ign)|Umask)' /proc/self/status
env | sort
echo "pid 1: $(tr '\0' ' ' </proc/1/cmdline)"
echo ready
exec sleep 60`
	b := startBox(t, uid, gid, NetworkNone, "/bin/sh", "-c", script)
	if b.Monitor.Pid != ln {
		t.Fatalf("the launch ran as pid %d, not the spare %d", b.Monitor.Pid, ln)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(b.output(t), "ready\n") {
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox did not say ready: %q", b.output(t))
		}
		time.Sleep(5 * time.Millisecond)
	}
	v := launchView{monitor: procView(t, b.Monitor.Pid), init: procView(t, b.Init.Pid), command: inodeNumber.ReplaceAllString(b.output(t), "")}
	mapped, err := os.ReadFile("/proc/" + strconv.Itoa(b.Monitor.Pid) + "/maps")
	if err != nil {
		t.Fatal(err)
	}
	v.maps = string(mapped)
	return v
}

// A sandbox launched by a preloaded spare is given exactly what one whose
// spare exec'd bwrap is, both spares having copied the launch's files
// ahead: its monitor and its pid 1 have the same IDs, capabilities,
// descriptors (nothing root opened), signals, limits, personality, mounts,
// command line and an empty environment, and are dumpable (so owned by the
// task, as after an exec); its command sees the same. Only the monitor's
// mappings differ: they hold the launcher object, which proves the
// preloaded path ran.
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
	uid, _ := nobody(t)
	for name, v := range map[string]map[string]string{"monitor": preload.monitor, "pid 1": preload.init} {
		if v["environ"] != "" {
			t.Errorf("the %s's environment is %q, want it empty", name, v["environ"])
		}
		if strings.Contains(v["fds"], "memfd") {
			t.Errorf("the %s holds a memory file: %s", name, v["fds"])
		}
		if !strings.Contains(v["cmdline"], "\x00--args\x00") || strings.Contains(v["cmdline"], ShimCommand) {
			t.Errorf("the %s's command line is %q, want bwrap's", name, v["cmdline"])
		}
		if v["owner"] != strconv.Itoa(int(uid)) {
			t.Errorf("the %s's /proc entries are owned by %s, want the task's %d (dumpable)", name, v["owner"], uid)
		}
	}
	for name, pair := range map[string][2]map[string]string{"monitor": {exec.monitor, preload.monitor}, "pid 1": {exec.init, preload.init}} {
		for k, want := range pair[0] {
			if got := pair[1][k]; got != want {
				t.Errorf("%s %s: preloaded\n%q\nexec'd\n%q", name, k, got, want)
			}
		}
	}
	if preload.command != exec.command {
		t.Errorf("the command saw, preloaded:\n%s\nexec'd:\n%s", preload.command, exec.command)
	}
	if strings.Contains(preload.command, "LD_PRELOAD") || strings.Contains(preload.command, ShimCommand) {
		t.Errorf("the command sees the spare's environment or command line:\n%s", preload.command)
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

// The handover closes every descriptor an exec would: one the request
// carried that nothing of the launch uses (at 9, above bwrap's) is marked
// close-on-exec by the shim, and is gone from bwrap's monitor, whether the
// spare exec'd bwrap or runs it.
func TestPreloadedHandoverClosesWhatExecWould(t *testing.T) {
	needPreload(t)
	bw := needSandbox(t)
	for _, spareBwrap := range []string{"", bw} {
		t.Run("spare for "+strconv.Quote(spareBwrap), func(t *testing.T) {
			extra, err := os.Open("/dev/null")
			if err != nil {
				t.Fatal(err)
			}
			defer extra.Close()
			waitSpareOf(t, testShim(), spareBwrap)
			cmd := launchSleep(t, spareBwrap, bw, nil, nil, nil, nil, nil, extra)
			maps, _ := os.ReadFile("/proc/" + itoa(cmd.Process.Pid) + "/maps")
			if got := strings.Contains(string(maps), "memfd:bwrap-r-launcher"); got != (spareBwrap != "") {
				t.Fatalf("bwrap maps the launcher object: %v", got)
			}
			if _, err := os.Readlink("/proc/" + itoa(cmd.Process.Pid) + "/fd/9"); err == nil {
				t.Errorf("bwrap holds descriptor 9, which the exec closes")
			}
		})
	}
}

// A spare that runs bwrap is not used for a bwrap replaced since it started
// (a package upgrade writes a new file): the request is exec'd, and the new
// file runs.
func TestPreloadedSpareExecsAnUpgradedBwrap(t *testing.T) {
	needPreload(t)
	bw := needSandbox(t)
	dir := stageDir(t)
	copyTo := func(path string) {
		b, err := os.ReadFile(bw)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path+".new", b, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
	}
	ours := filepath.Join(dir, "bwrap")
	copyTo(ours)
	spare := waitSpareOf(t, testShim(), ours)
	if maps, _ := os.ReadFile("/proc/" + itoa(spare) + "/maps"); !strings.Contains(string(maps), "memfd:bwrap-r-launcher") {
		t.Fatal("the spare for the copy does not map the launcher object")
	}
	copyTo(ours)
	upgraded, err := os.Stat(ours)
	if err != nil {
		t.Fatal(err)
	}
	cmd := launchSleep(t, ours, ours)
	if cmd.Process.Pid != spare {
		t.Fatalf("launched as pid %d, want the spare %d", cmd.Process.Pid, spare)
	}
	maps, _ := os.ReadFile("/proc/" + itoa(spare) + "/maps")
	if strings.Contains(string(maps), "memfd:bwrap-r-launcher") {
		t.Error("the spare ran the bwrap it had loaded, not the upgraded one")
	}
	running, err := os.Stat("/proc/" + itoa(spare) + "/exe")
	if err != nil || !os.SameFile(running, upgraded) {
		t.Errorf("the launch runs %v (%v), want the upgraded file", running, err)
	}
}

// launchSleep starts, through startShim and the spare of spareBwrap, the
// shim as nobody running bwrap (at bwrapPath) over the host's root with
// sleep as its command; extra are its descriptors from 4 on. It returns
// once the shim handed over to bwrap, and kills it at the test's end.
func launchSleep(t *testing.T, spareBwrap, bwrapPath string, extra ...*os.File) *osexec.Cmd {
	t.Helper()
	uid, gid := nobody(t)
	infoR, infoW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer infoR.Close()
	args := []string{"-uid", itoa(int(uid)), "-gid", itoa(int(gid)), "--", bwrapPath, "--ro-bind", "/", "/", "--", "/bin/sleep", "30"}
	cmd, err := startShim(testShim(), spareBwrap, args, append([]*os.File{nil, nil, nil, infoW}, extra...))
	infoW.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if err := readShimError(infoR); err != nil {
		t.Fatal(err)
	}
	return cmd
}
