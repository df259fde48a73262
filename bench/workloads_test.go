//go:build bench

package bench

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/nomad/client/lib/cgroupslib"
	"github.com/hashicorp/nomad/helper/uuid"
	"github.com/hashicorp/nomad/plugins/drivers"

	"github.com/bwrap-r/bwrap-r/bwrap"
)

// rotate returns names starting at the i-th: the drivers take turns going
// first, so that drift and order effects hit all of them alike.
func rotate(names []string, i int) []string {
	out := make([]string, 0, len(names))
	for k := range names {
		out = append(out, names[(i+k)%len(names)])
	}
	return out
}

// spread picks k of n iterations, evenly apart.
func spread(n, k int) map[int]bool {
	at := map[int]bool{}
	for j := 0; j < k && n > 0; j++ {
		at[(2*j+1)*n/(2*k)] = true
	}
	return at
}

// order is the drivers of iteration i: bwrap-r and raw_exec in turns, and exec
// where it has a task.
func order(i int, withExec bool) []string {
	names := rotate([]string{bwrapR, rawExec}, i)
	if withExec {
		pos := i % 3
		if pos > len(names) {
			pos = len(names)
		}
		names = append(names[:pos], append([]string{execDrv}, names[pos:]...)...)
	}
	return names
}

const (
	startTimeout = 60 * time.Second
	cmdTimeout   = 30 * time.Second
)

// waitCommand polls until the task's sleep has been exec'd.
func (e *env) waitCommand(tk *task) error {
	root, err := tk.rootPid()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(cmdTimeout)
	for !commandUp(root, e.token) {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: the task's command never ran (pid %d)", tk.d.name, root)
		}
		time.Sleep(200 * time.Microsecond)
	}
	return nil
}

// startToRunning: StartTask of a sleep task, until InspectTask reports it
// running (what Nomad calls started), and until the sleep has been exec'd.
func (e *env) startToRunning() {
	execAt := spread(e.sz.n, e.sz.exec)
	phaseAt := spread(e.sz.n, e.sz.phases)
	phase := e.phaser()
	if phase != nil {
		phase(0, false)
	}
	for i := 0; i < e.sz.n; i++ {
		if phase != nil && phaseAt[i] {
			phase(i, true)
		}
		for _, name := range order(i, execAt[i]) {
			d := e.drv[name]
			if name == execDrv {
				fmt.Printf("bench:   exec task %d/%d (its chroot is built first, untimed)\n", len(e.execKept)+1, e.sz.exec)
			}
			t0 := time.Now()
			tk, err := e.newTask(d, 128, "/bin/sleep", e.token)
			if err != nil {
				e.rep.errorf("%s: preparing a task: %v", name, err)
				continue
			}
			e.rep.add("alloc", name, ms(time.Since(t0)))
			ret, err := e.start(tk)
			if err == nil {
				err = e.untilRunning(tk, startTimeout)
			}
			if err != nil {
				e.rep.errorf("start to running: %v", err)
				_ = e.destroy(tk)
				continue
			}
			e.rep.add("startRet", name, ms(ret))
			e.rep.add("start", name, ms(tk.runningAfter))
			if err := e.waitCommand(tk); err != nil {
				e.rep.errorf("start to running: %v", err)
			} else {
				e.rep.add("cmd", name, ms(time.Since(tk.startedAt)))
			}
			if name == execDrv {
				e.execKept = append(e.execKept, tk)
				continue
			}
			if err := e.destroy(tk); err != nil {
				e.rep.errorf("%v", err)
			}
		}
	}
	e.traceStart()
}

// traceGap is the pause before each traced launch: tasks start now and then
// on a node, not back to back (some kernel costs, such as an RCU grace period
// a cgroup migration waits for, are paid only after a pause).
const traceGap = 100 * time.Millisecond

// traceStart follows launches with the kernel's tracer: where each
// millisecond of one goes, process by process.
func (e *env) traceStart() {
	if e.traced == nil || e.sz.traced == 0 {
		return
	}
	phases, err := traceLaunches(e.sz.traced, traceGap, e.traced)
	if err != nil {
		e.rep.traceErr = err.Error()
		return
	}
	for _, p := range phases {
		for k, v := range p {
			e.rep.add("trace", k, v)
		}
	}
}

// startAndWait: StartTask of /bin/true until WaitTask returns its exit.
func (e *env) startAndWait() {
	n := e.sz.exec
	if !e.sz.execTrue {
		n = 0
	}
	execAt := spread(e.sz.n, n)
	for i := 0; i < e.sz.n; i++ {
		for _, name := range order(i, execAt[i]) {
			tk, err := e.newTask(e.drv[name], 128, "/bin/true", e.token)
			if err != nil {
				e.rep.errorf("%s: preparing a task: %v", name, err)
				continue
			}
			var res *drivers.ExitResult
			if _, err = e.start(tk); err == nil {
				res, err = e.wait(tk, startTimeout)
			}
			took := time.Since(tk.startedAt)
			switch {
			case err != nil:
				e.rep.errorf("start and wait: %v", err)
			case !res.Successful():
				e.rep.errorf("start and wait: %s: /bin/true failed: %+v", name, res)
			default:
				e.rep.add("true", name, ms(took))
			}
			if err := e.destroy(tk); err != nil {
				e.rep.errorf("%v", err)
			}
		}
	}
}

// idleMemory: idle sleep tasks of each driver; the memory of each task's
// helper processes (not the task).
func (e *env) idleMemory() {
	var live []*task
	for i := 0; i < e.sz.mem; i++ {
		for _, name := range rotate([]string{bwrapR, rawExec}, i) {
			tk, err := e.newTask(e.drv[name], 128, "/bin/sleep", e.token)
			if err != nil {
				e.rep.errorf("%s: preparing a task: %v", name, err)
				continue
			}
			if _, err := e.start(tk); err != nil {
				e.rep.errorf("memory: %v", err)
				_ = e.destroy(tk)
				continue
			}
			if err := e.waitCommand(tk); err != nil {
				e.rep.errorf("memory: %v", err)
			}
			live = append(live, tk)
		}
	}
	live = append(live, e.execKept...)
	e.execKept = nil
	// Go executors' heaps grow for a while after start.
	time.Sleep(e.sz.settle)
	ps := procs()
	for _, tk := range live {
		pids, err := e.helperPids(tk, ps)
		if err != nil {
			e.rep.errorf("memory: %v", err)
			continue
		}
		var sum mem
		for k, pid := range pids {
			m, err := readMem(pid)
			if err != nil {
				e.rep.errorf("memory: %s: %v", tk.d.name, err)
				continue
			}
			sum.add(m)
			role := "executor"
			if tk.d.name == bwrapR {
				role = []string{"bwrap monitor", "sandbox pid 1"}[k]
			}
			e.rep.addMem(tk.d.name+"/"+role, m)
		}
		e.rep.addMem(tk.d.name, sum)
	}
	parallel(len(live), 8, func(i int) {
		if err := e.destroy(live[i]); err != nil {
			e.rep.errorf("%v", err)
		}
	})
}

// burst starts many sleep tasks at once (32 StartTask calls in flight, as
// the client's task runners would) and keeps them all running.
func (e *env) burst() {
	for _, name := range []string{bwrapR, rawExec} {
		e.burstOne(name)
		// Let the node settle before the next driver.
		time.Sleep(e.sz.pause)
	}
}

type burstResult struct {
	requested, started, commands int
	stopped                      string
	running, cmds, destroy       time.Duration
	memBefore, memAfter          uint64
	helpers                      mem
	helperTasks                  int
	firstErr                     string
	// mounts is the size of the host's mount table with all tasks running.
	mounts int
}

func (e *env) burstOne(name string) {
	const workers = 32
	d := e.drv[name]
	n := e.sz.burst
	r := &burstResult{requested: n}
	e.rep.bursts[name] = r
	fmt.Printf("bench:   %s: preparing %d alloc dirs and cgroups (untimed)\n", name, n)
	tasks := make([]*task, 0, n)
	for i := 0; i < n; i++ {
		tk, err := e.newTask(d, 128, "/bin/sleep", e.token)
		if err != nil {
			e.rep.errorf("%s: preparing a task: %v", name, err)
			break
		}
		tasks = append(tasks, tk)
	}
	time.Sleep(e.sz.pause)
	floor := meminfo("MemTotal") / 10
	if floor < 2<<30 {
		floor = 2 << 30
	}
	r.memBefore = meminfo("MemAvailable")
	fmt.Printf("bench:   %s: starting %d tasks, %d at a time\n", name, len(tasks), workers)
	var (
		mu      sync.Mutex
		stop    atomic.Bool
		started atomic.Int64
	)
	halt := func(why string) {
		mu.Lock()
		if r.stopped == "" {
			r.stopped = why
		}
		mu.Unlock()
		stop.Store(true)
	}
	t0 := time.Now()
	parallel(len(tasks), workers, func(i int) {
		if stop.Load() {
			return
		}
		if name == rawExec {
			if since := time.Since(t0); since > e.sz.rawBurstFor {
				halt(fmt.Sprintf("capped after %v", e.sz.rawBurstFor))
				return
			}
			if avail := meminfo("MemAvailable"); avail < floor {
				halt(fmt.Sprintf("capped: MemAvailable fell below %s", mib(floor)))
				return
			}
		}
		tk := tasks[i]
		_, err := e.start(tk)
		if err == nil {
			err = e.untilRunning(tk, startTimeout)
		}
		if err != nil {
			mu.Lock()
			if r.firstErr == "" {
				r.firstErr = err.Error()
			}
			mu.Unlock()
			if name == rawExec {
				halt("stopped at the first failed start")
			}
			return
		}
		started.Add(1)
	})
	r.running = time.Since(t0)
	r.started = int(started.Load())
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r.commands = countSleeps(e.token)
		if r.commands >= r.started || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.cmds = time.Since(t0)
	fmt.Printf("bench:   %s: %d running after %v, %d commands after %v\n", name, r.started, r.running.Round(time.Millisecond), r.commands, r.cmds.Round(time.Millisecond))
	time.Sleep(e.sz.settle)
	r.memAfter = meminfo("MemAvailable")
	r.mounts = len(mountsUnder("/"))
	ps := procs()
	for _, tk := range tasks {
		if tk.handle == nil {
			continue
		}
		pids, err := e.helperPids(tk, ps)
		if err != nil {
			continue
		}
		var sum mem
		for k, pid := range pids {
			m, err := readMem(pid)
			if err != nil {
				continue
			}
			sum.add(m)
			if name == bwrapR {
				role := []string{"bwrap monitor", "sandbox pid 1"}[k]
				e.rep.addMem("burst/"+name+"/"+role, m)
			}
		}
		r.helpers.add(sum)
		e.rep.addMem("burst/"+name, sum)
		r.helperTasks++
	}
	if r.firstErr != "" && name == bwrapR {
		e.rep.errorf("bwrap-r burst: %s", r.firstErr)
	}
	t1 := time.Now()
	parallel(len(tasks), 16, func(i int) {
		if err := e.destroy(tasks[i]); err != nil {
			e.rep.errorf("%v", err)
		}
	})
	r.destroy = time.Since(t1)
}

// rKinds are the R start-ups compared.
const (
	rHost       = "host"
	rBwrap      = "bwrap-r task"
	rRaw        = "raw_exec task"
	rHostInner  = "host, R only"
	rBwrapInner = "bwrap-r, R only"
)

// rSettle is the pause before each R run.
const rSettle = 100 * time.Millisecond

// rInner times R alone with the shell's clock, inside whatever runs it.
const rInner = `s=$(date +%s%N); Rscript -e 'cat(1)' >/dev/null 2>&1 || exit 3; t=$(date +%s%N); echo $((t-s))`

// rStartup: `Rscript -e 'cat(1)'` directly on the host (as nobody, with the
// sandbox's environment) and as a bwrap-r task (start to exit), plus R's own
// time inside the sandbox and on the host, and a raw_exec task for scale.
func (e *env) rStartup() {
	rscript, err := exec.LookPath("Rscript")
	if err != nil {
		e.rep.errorf("R: %v", err)
		return
	}
	e.rep.rscript = rscript
	uid, gid := nobody()
	kinds := []string{rHost, rBwrap, rRaw, rHostInner, rBwrapInner}
	run := func(kind string) (float64, error) {
		switch kind {
		case rHost:
			cmd := exec.Command(rscript, "-e", "cat(1)")
			asNobody(cmd, uid, gid)
			t0 := time.Now()
			err := cmd.Run()
			return ms(time.Since(t0)), err
		case rHostInner:
			cmd := exec.Command("/bin/sh", "-c", rInner)
			asNobody(cmd, uid, gid)
			var out strings.Builder
			cmd.Stdout = &out
			if err := cmd.Run(); err != nil {
				return 0, err
			}
			return nsToMs(strings.TrimSpace(out.String()))
		case rBwrap, rRaw:
			d, command := e.drv[bwrapR], "Rscript"
			if kind == rRaw {
				d, command = e.drv[rawExec], rscript
			}
			tk, err := e.newTask(d, 1024, command, "-e", "cat(1)")
			if err != nil {
				return 0, err
			}
			defer e.destroy(tk)
			if _, err := e.start(tk); err != nil {
				return 0, err
			}
			res, err := e.wait(tk, startTimeout)
			if err != nil {
				return 0, err
			}
			if !res.Successful() {
				return 0, fmt.Errorf("%s: Rscript failed: %+v", d.name, res)
			}
			return ms(time.Since(tk.startedAt)), nil
		case rBwrapInner:
			script := strings.Replace(rInner, "echo $((t-s))", "echo $((t-s)) > /local/rtime", 1)
			tk, err := e.newTask(e.drv[bwrapR], 1024, "/bin/sh", "-c", script)
			if err != nil {
				return 0, err
			}
			defer e.destroy(tk)
			if _, err := e.start(tk); err != nil {
				return 0, err
			}
			res, err := e.wait(tk, startTimeout)
			if err != nil {
				return 0, err
			}
			if !res.Successful() {
				return 0, fmt.Errorf("bwrap-r: Rscript in sh failed: %+v", res)
			}
			b, err := os.ReadFile(filepath.Join(tk.cfg.TaskDir().LocalDir, "rtime"))
			if err != nil {
				return 0, err
			}
			return nsToMs(strings.TrimSpace(string(b)))
		}
		return 0, errors.New("unknown kind")
	}
	// One warm-up of each (page cache, R's first start), not counted.
	for _, k := range kinds {
		if !e.sz.warm {
			break
		}
		if _, err := run(k); err != nil {
			e.rep.errorf("R %s: %v", k, err)
		}
	}
	// R's start-up here drifts by tens of ms within a minute, more than
	// the 5% asked of it: each turn's sandbox runs are also set against
	// that turn's host runs, so that the drift cancels out.
	for i := 0; i < e.sz.r; i++ {
		turn := map[string]float64{}
		for _, k := range rotate(kinds, i) {
			// What the run before left to the background (a raw_exec
			// task's executor exiting, a sandbox's namespaces let go) is
			// over before this one starts: in a rotation each kind follows
			// the same other kind in four turns of five, which would put
			// that cost on one side of a ratio.
			time.Sleep(rSettle)
			v, err := run(k)
			if err != nil {
				e.rep.errorf("R %s: %v", k, err)
				continue
			}
			e.rep.add("r", k, v)
			turn[k] = v
		}
		for k, host := range map[string]string{rBwrap: rHost, rRaw: rHost, rBwrapInner: rHostInner} {
			if v, h := turn[k], turn[host]; v > 0 && h > 0 {
				e.rep.add("rpair", k, v/h)
				e.rep.add("rdiff", k, v-h)
			}
		}
	}
}

func nobody() (uint32, uint32) {
	u, err := user.Lookup("nobody")
	if err != nil {
		return 65534, 65534
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uint32(uid), uint32(gid)
}

// asNobody runs cmd as bwrap-r runs a task without a user: nobody, with the
// sandbox's environment (what R reads at start differs otherwise).
func asNobody(cmd *exec.Cmd, uid, gid uint32) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/nonexistent",
		"TMPDIR=/tmp",
		"LANG=C.UTF-8",
	}
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
}

func nsToMs(s string) (float64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("not a duration in ns: %q", s)
	}
	return float64(n) / 1e6, nil
}

// Phases of a bwrap-r start, each timed on its own.
const (
	phSpawn   = "fork+exec+wait of /bin/true from the bench process"
	phBench   = "start of this bench binary's Go main, to exit"
	phPlugin  = "start of bin/plugins/bwrap-r's Go main (`version`), to exit"
	phShimB   = "the shim in this bench binary: drop to a task UID, exec /bin/true, to exit"
	phShimP   = "the shim in bin/plugins/bwrap-r (production): drop to a task UID, exec /bin/true, to exit"
	phBwrapUp = "bwrap alone, as the task's user, one bind per /etc and /dev entry (no launcher): until pid 1 exists (--info-fd)"
	phBwrapTr = "bwrap alone, one bind per /etc and /dev entry: /bin/true to exit"
	phLaunch  = "bwrap.Start (shim assembling the sandbox's root, then bwrap; no cgroups): until it returns"
	phLaunchT = "bwrap.Start: /bin/true to exit"
	phLaunchC = "bwrap.Start joining the task's cgroups (as StartTask does): until it returns"
	phLaunchE = "bwrap.Start joining the task's cgroups: /bin/true to exit"
	phInitB   = "of the bench binary's start: Go package init (GODEBUG=inittrace=1)"
	phInitP   = "of bin/plugins/bwrap-r's start: Go package init (GODEBUG=inittrace=1)"
)

// initTrace runs a Go binary with GODEBUG=inittrace=1 and sums the time its
// package init functions took; top are the costliest packages.
func initTrace(bin string, args ...string) (total float64, top []string, err error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"GODEBUG=inittrace=1"}
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		return 0, nil, err
	}
	type pkg struct {
		name string
		ms   float64
	}
	var pkgs []pkg
	for _, line := range strings.Split(stderr.String(), "\n") {
		// init github.com/x/y @42 ms, 4.8 ms clock, 243384 bytes, 568 allocs
		f := strings.Fields(line)
		if len(f) < 7 || f[0] != "init" || f[6] != "clock," {
			continue
		}
		v, err := strconv.ParseFloat(f[4], 64)
		if err != nil {
			continue
		}
		total += v
		pkgs = append(pkgs, pkg{f[1], v})
	}
	if len(pkgs) == 0 {
		return 0, nil, errors.New("no inittrace output")
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].ms > pkgs[j].ms })
	for i := 0; i < len(pkgs) && i < 4; i++ {
		top = append(top, fmt.Sprintf("%s %.1f ms", pkgs[i].name, pkgs[i].ms))
	}
	return total, top, nil
}

// phaser returns a function that times, once each, the parts of a bwrap-r
// start outside the driver: the shim's Go start-up, bwrap's own sandbox
// set-up, and the launcher as the driver calls it. StartTask through the
// harness adds the rest (task dirs, cgroups, spec, gRPC). The start workload
// calls it between its tasks, so that both are timed on the same node state.
func (e *env) phaser() func(i int, record bool) {
	self, err := os.Executable()
	if err != nil {
		e.rep.errorf("phases: %v", err)
		return nil
	}
	bwrapPath, err := exec.LookPath("bwrap")
	if err != nil {
		e.rep.errorf("phases: %v", err)
		return nil
	}
	plugin, _ := filepath.Abs("../bin/plugins/bwrap-r")
	if _, err := os.Stat(plugin); err != nil {
		plugin = ""
	}
	uid, gid := nobody()
	dir := filepath.Join(e.base, "phases")
	state := filepath.Join(dir, "state")
	stage := filepath.Join(state, "stage")
	for _, p := range []string{"local", "secrets", "alloc"} {
		if err := os.MkdirAll(filepath.Join(dir, p), 0o700); err != nil {
			e.rep.errorf("phases: %v", err)
			return nil
		}
		_ = os.Chown(filepath.Join(dir, p), int(uid), int(gid))
	}
	_ = os.Chmod(dir, 0o711)
	// The state dir and its staging dir as the driver makes them: root's,
	// traversable by task UIDs (bwrap binds the launcher's trees from there).
	if err := os.MkdirAll(stage, 0o711); err != nil {
		e.rep.errorf("phases: %v", err)
		return nil
	}
	_ = os.Chmod(state, 0o711)
	spec := func() *bwrap.Spec {
		mounts := bwrap.SystemMounts(64 << 20)
		mounts = append(mounts,
			bwrap.Mount{Kind: bwrap.Bind, Source: filepath.Join(dir, "local"), Dest: "/local"},
			bwrap.Mount{Kind: bwrap.Bind, Source: filepath.Join(dir, "secrets"), Dest: "/secrets"},
			bwrap.Mount{Kind: bwrap.Bind, Source: filepath.Join(dir, "alloc"), Dest: "/alloc"},
		)
		return &bwrap.Spec{
			Command:  "/bin/true",
			Args:     []string{e.token},
			Env:      map[string]string{"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/local", "TMPDIR": "/tmp", "LANG": "C.UTF-8"},
			Mounts:   mounts,
			UID:      uid,
			GID:      gid,
			Hostname: "bench",
			Dir:      "/local",
		}
	}
	runCmd := func(name string, args ...string) (float64, error) {
		cmd := exec.Command(name, args...)
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		t0 := time.Now()
		err := cmd.Run()
		return ms(time.Since(t0)), err
	}
	bwrapAlone := func() (up, done float64, err error) {
		sp := spec()
		sp.InfoFD = 3
		argv, err := sp.Argv()
		if err != nil {
			return 0, 0, err
		}
		infoR, infoW, err := os.Pipe()
		if err != nil {
			return 0, 0, err
		}
		defer infoR.Close()
		cmd := exec.Command(bwrapPath, argv...)
		cmd.Env = []string{}
		cmd.ExtraFiles = []*os.File{infoW}
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			infoW.Close()
			return 0, 0, err
		}
		infoW.Close()
		b, _ := io.ReadAll(infoR)
		up = ms(time.Since(t0))
		if err := cmd.Wait(); err != nil {
			return 0, 0, err
		}
		if !strings.Contains(string(b), "child-pid") {
			return 0, 0, fmt.Errorf("bwrap reported no child-pid: %q", b)
		}
		return up, ms(time.Since(t0)), nil
	}
	// mark, when tracing, notes in the trace when bwrap.Start is called and
	// when the exit status is in hand: the cgroups made before and removed
	// after are StartTask's and DestroyTask's work, not the launch's.
	launch := func(withCgroups bool, mark func(string)) (up, done float64, err error) {
		var cgroups []string
		if withCgroups {
			dirs, teardown, err := taskCgroupDirs()
			if err != nil {
				return 0, 0, err
			}
			defer teardown()
			cgroups = dirs
		}
		devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return 0, 0, err
		}
		defer devnull.Close()
		status := filepath.Join(state, uuid.Generate()+".status")
		defer os.Remove(status)
		t0 := time.Now()
		mark(traceStartCall)
		sb, err := bwrap.Start(bwrap.Launch{
			Bwrap: bwrapPath, Shim: []string{self, bwrap.ShimCommand}, Spec: spec(),
			Stdin: devnull, Stdout: devnull, Stderr: devnull, StatusPath: status,
			Cgroups: cgroups, StageDir: stage,
		})
		if err != nil {
			return 0, 0, err
		}
		up = ms(time.Since(t0))
		st := sb.Status()
		done = ms(time.Since(t0))
		mark(traceStatusRead)
		if st.Err != nil || st.Code != 0 {
			return 0, 0, fmt.Errorf("sandbox: %+v", st)
		}
		return up, done, nil
	}
	e.traced = func(mark func(string)) error {
		_, _, err := launch(true, mark)
		return err
	}
	noMark := func(string) {}
	steps := []string{phSpawn, phBench, phPlugin, phShimB, phShimP, phBwrapUp, phLaunch, phLaunchC, phInitB, phInitP}
	shimArgs := []string{bwrap.ShimCommand, "-uid", "65534", "-gid", "65534", "--", "/bin/true"}
	return func(i int, record bool) {
		for _, s := range rotate(steps, i) {
			var a, b float64
			var err error
			switch s {
			case phSpawn:
				a, err = runCmd("/bin/true")
			case phBench:
				a, err = runCmd(self, noopCommand)
			case phPlugin:
				if plugin == "" {
					continue
				}
				a, err = runCmd(plugin, "version")
			case phShimB:
				a, err = runCmd(self, shimArgs...)
			case phShimP:
				if plugin == "" {
					continue
				}
				a, err = runCmd(plugin, shimArgs...)
			case phBwrapUp:
				a, b, err = bwrapAlone()
			case phLaunch:
				a, b, err = launch(false, noMark)
			case phLaunchC:
				a, b, err = launch(true, noMark)
			case phInitB:
				var top []string
				a, top, err = initTrace(self, noopCommand)
				e.rep.initTop[s] = top
			case phInitP:
				if plugin == "" {
					continue
				}
				var top []string
				a, top, err = initTrace(plugin, "version")
				e.rep.initTop[s] = top
			}
			if err != nil {
				e.rep.errorf("phase %q: %v", s, err)
				continue
			}
			if !record {
				continue // warm-up
			}
			e.rep.add("phase", s, a)
			switch s {
			case phBwrapUp:
				e.rep.add("phase", phBwrapTr, b)
			case phLaunch:
				e.rep.add("phase", phLaunchT, b)
			case phLaunchC:
				e.rep.add("phase", phLaunchE, b)
			}
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mib(b uint64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// taskCgroupDirs makes the cgroups the Nomad client makes for a task, plus
// bwrap-r's pids cgroup on v1, and returns the directories bwrap-r's shim
// joins (as driver.taskCgroups lists them).
func taskCgroupDirs() ([]string, func(), error) {
	allocID, name := uuid.Generate(), "phase"
	f := cgroupslib.Factory(allocID, name, false)
	if err := f.Setup(); err != nil {
		return nil, nil, err
	}
	cpuset := cgroupslib.LinuxResourcesPath(allocID, name, false)
	if cgroupslib.GetMode() == cgroupslib.CG2 {
		return []string{cpuset}, func() { _ = f.Kill(); _ = f.Teardown() }, nil
	}
	root := cgroupslib.GetDefaultRoot()
	scope := cgroupslib.ScopeCG1(allocID, name)
	pids := filepath.Join(root, "pids", cgroupslib.NomadCgroupParent, scope)
	if err := os.MkdirAll(pids, 0o755); err != nil {
		_ = f.Teardown()
		return nil, nil, err
	}
	dirs := []string{filepath.Join(root, "freezer", cgroupslib.NomadCgroupParent, scope), filepath.Join(root, "cpu", cgroupslib.NomadCgroupParent, scope), filepath.Join(root, "memory", cgroupslib.NomadCgroupParent, scope), cpuset, pids}
	return dirs, func() {
		_ = f.Kill()
		_ = f.Teardown()
		// The sandbox has ended; its pids cgroup is empty.
		for i := 0; i < 50 && os.Remove(pids) != nil; i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}, nil
}
