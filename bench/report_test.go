//go:build bench

package bench

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// report gathers the samples and renders BENCHMARKS.md.
type report struct {
	sizes         sizes
	machine       machine
	began         time.Time
	elapsed       time.Duration
	loadEnd       string
	rscript       string
	leftoverCheck string

	mu      sync.Mutex
	samples map[string]map[string][]float64
	mems    map[string][]mem
	bursts  map[string]*burstResult
	errors  []string
	// initTop are the costliest package inits of the phase's binary.
	initTop map[string][]string
	// steps are the workloads in order, with the node's load around each;
	// maxLoad is the highest 1-minute load average sampled during the run.
	steps   []stepLoad
	maxLoad float64
	// traceErr says why launches could not be traced.
	traceErr string
}

// stepLoad is the node's load around one workload: calm says the node had
// calmed down before it (see quiesce).
type stepLoad struct {
	name               string
	calm               bool
	loadStart, loadEnd string
}

// sampleLoad records the highest 1-minute load average every interval until
// the returned function is called.
func (r *report) sampleLoad(interval time.Duration) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if l := load1(); !math.IsNaN(l) {
				r.mu.Lock()
				r.maxLoad = math.Max(r.maxLoad, l)
				r.mu.Unlock()
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}

// quietLoad is the 1-minute load average above which the node is not quiet:
// half its cores busy with something else.
func quietLoad() float64 { return float64(runtime.NumCPU()) / 2 }

// latencyWorkloads are the steps whose figures a busy node distorts.
var latencyWorkloads = []string{stepStart, stepTrue, stepR}

// underLoad says why the run's latency figures are not those of a quiet
// machine, or "" when they are: the load when the bench began, mounts that
// earlier bench runs left in the host's table, or a latency workload that
// began before the node had calmed down.
func (r *report) underLoad() string {
	var why []string
	if f := strings.Fields(r.machine.loadStart); len(f) > 0 {
		if v, err := strconv.ParseFloat(f[0], 64); err == nil && v > quietLoad() {
			why = append(why, fmt.Sprintf("the 1-minute load average was %s when the bench began (above %.1f, half the cores)", f[0], quietLoad()))
		}
	}
	if n := r.machine.leftMounts; n > 0 {
		why = append(why, fmt.Sprintf("the host's mount table held %d mounts left in the dirs of earlier bench runs (%s*), which every start's clones of host paths walk", n, benchDirPrefix))
	}
	for _, st := range r.steps {
		if slices.Contains(latencyWorkloads, st.name) && !st.calm {
			why = append(why, fmt.Sprintf("the node had not calmed down when %q began (load %s)", st.name, st.loadStart))
		}
	}
	return strings.Join(why, "; ")
}

func (r *report) add(cat, key string, v float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.samples == nil {
		r.samples = map[string]map[string][]float64{}
	}
	if r.samples[cat] == nil {
		r.samples[cat] = map[string][]float64{}
	}
	r.samples[cat][key] = append(r.samples[cat][key], v)
}

func (r *report) addMem(key string, m mem) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mems == nil {
		r.mems = map[string][]mem{}
	}
	r.mems[key] = append(r.mems[key], m)
}

func (r *report) errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Println("bench: ERROR:", msg)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, msg)
}

func (r *report) get(cat, key string) []float64 {
	if r.samples == nil {
		return nil
	}
	return r.samples[cat][key]
}

// quantile by linear interpolation between order statistics; NaN for none.
func quantile(vs []float64, q float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

func median(vs []float64) float64 { return quantile(vs, 0.5) }

// medianCI is a 95% confidence interval of the median of vs, from its order
// statistics (no assumption on the distribution): the ranks n/2 ± 0.98·√n.
func medianCI(vs []float64) (lo, hi float64) {
	n := len(vs)
	if n < 6 {
		return math.NaN(), math.NaN()
	}
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	half := 0.98 * math.Sqrt(float64(n))
	j := max(int(math.Floor(float64(n)/2-half)), 1)
	k := min(int(math.Ceil(float64(n)/2+half))+1, n)
	return s[j-1], s[k-1]
}

// ciText is "a–b", or "–" when there are too few samples.
func ciText(vs []float64) string {
	lo, hi := medianCI(vs)
	if math.IsNaN(lo) {
		return "–"
	}
	return num(lo) + "–" + num(hi)
}

func (r *report) med(cat, key string) float64 { return median(r.get(cat, key)) }

func (r *report) memMed(key string, f func(mem) uint64) float64 {
	var vs []float64
	for _, m := range r.mems[key] {
		vs = append(vs, float64(f(m))/(1<<20))
	}
	return median(vs)
}

func rssOf(m mem) uint64 { return m.rss }

// cpuMed is the median CPU time, in ms, of the processes under key.
func (r *report) cpuMed(key string) float64 {
	var vs []float64
	for _, m := range r.mems[key] {
		vs = append(vs, ms(m.cpu))
	}
	return median(vs)
}
func pssOf(m mem) uint64 { return m.pss }
func ussOf(m mem) uint64 { return m.uss }

// fmtMs formats milliseconds with the sample count.
func fmtMs(vs []float64) string {
	if len(vs) == 0 {
		return "–"
	}
	return fmt.Sprintf("%s ms (n=%d)", num(median(vs)), len(vs))
}

func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func ratio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func status(ok bool, have bool) string {
	switch {
	case !have:
		return "not measured"
	case ok:
		return "**met**"
	default:
		return "**missed**"
	}
}

func (r *report) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := r.machine
	sz := r.sizes
	drvs := []string{bwrapR, rawExec, execDrv}

	w("# Benchmarks\n\n")
	w("<!-- Generated by `make bench` (bench/bench_test.go with BWRAP_R_BENCH=full). Do not edit by hand: rerun it. -->\n\n")
	w("bwrap-r against Nomad's own `raw_exec` and `exec` drivers (the packages of the pinned Nomad module %s), all three driven in one run through Nomad's `DriverHarness` (the driver plugin's gRPC client and server, as the Nomad client uses a driver). Within each workload the drivers take turns task by task, so that drift on the node hits them alike.\n\n", m.nomad)

	w("## Machine\n\n")
	w("| | |\n|---|---|\n")
	w("| Date | %s |\n", r.began.UTC().Format("2006-01-02 15:04 MST"))
	w("| Kernel | %s |\n", m.kernel)
	w("| CPU | %s, %d cores |\n", m.cpu, m.cores)
	w("| Memory | %s |\n", mib(m.memTotal))
	w("| bubblewrap | %s |\n", m.bwrap)
	w("| R | %s |\n", m.r)
	w("| cgroups | %s |\n", m.cgroups)
	left := ""
	if m.leftMounts > 0 {
		left = fmt.Sprintf(", %d of them left by earlier bench runs", m.leftMounts)
	}
	w("| Host mount table at the start | %d mounts%s |\n", m.mounts, left)
	w("| Go | %s |\n", m.goVersion)
	w("| Load average (1, 5, 15 min) | %s at the start, %s at the end (the bench's own concurrency workload, last, raises it); highest 1-minute figure during the run %.2f |\n", m.loadStart, r.loadEnd, r.maxLoad)
	w("| Run time | %v |\n\n", r.elapsed.Round(time.Second))
	if why := r.underLoad(); why != "" {
		w("**Run under load**: %s. Its latency figures are not those of a quiet machine; rerun on a quiet one before comparing them.\n\n", why)
	} else {
		w("A quiet machine: the 1-minute load average was at most %.1f (half the cores) when the bench began, and the node had calmed down (no more runnable processes than cores, none blocked, for a second) before each latency workload.\n\n", quietLoad())
	}
	if len(r.steps) > 0 {
		w("| Workload | node calm before it | load average at its start | at its end |\n|---|---|---|---|\n")
		for _, st := range r.steps {
			calm := "yes"
			if !st.calm {
				calm = "**no**"
			}
			w("| %s | %s | %s | %s |\n", st.name, calm, st.loadStart, st.loadEnd)
		}
		w("\n")
	}

	w("## Targets\n\n")
	w("| Target | Measured | Status |\n|---|---|---|\n")
	cmdB, cmdR := r.med("cmd", bwrapR), r.med("cmd", rawExec)
	w("| bwrap-r start ≤ 0.5x raw_exec: StartTask until the task's command has been exec'd (median) | %s ms vs %s ms: %s | %s |\n",
		num(cmdB), num(cmdR), ratio(cmdB, cmdR), status(cmdB <= 0.5*cmdR, !math.IsNaN(cmdB/cmdR)))
	trueB, trueR := r.med("true", bwrapR), r.med("true", rawExec)
	w("| the same, StartTask until WaitTask returned the exit of `/bin/true` | %s ms vs %s ms: %s | %s |\n",
		num(trueB), num(trueR), ratio(trueB, trueR), status(trueB <= 0.5*trueR, !math.IsNaN(trueB/trueR)))
	for _, k := range []struct {
		name string
		f    func(mem) uint64
	}{{"RSS", rssOf}, {"PSS", pssOf}} {
		mb, mr := r.memMed(bwrapR, k.f), r.memMed(rawExec, k.f)
		w("| per-task helper memory ≤ 3 MiB (%s, median per task) | %s MiB | %s |\n", k.name, num(mb), status(mb <= 3, !math.IsNaN(mb)))
		w("| per-task helper memory ≥ 5x below raw_exec's (%s) | %s MiB vs %s MiB: %s below | %s |\n", k.name, num(mb), num(mr), ratio(mr, mb), status(mr >= 5*mb, !math.IsNaN(mr/mb)))
	}
	if br := r.bursts[bwrapR]; br != nil {
		ok := br.started == br.requested && br.commands >= br.requested && br.firstErr == ""
		st := status(ok, true)
		if br.requested < 500 {
			st = "not judged (fewer than 500 asked)"
		}
		w("| 500 concurrent bwrap-r tasks start | %d of %d running, %d commands up, in %s s | %s |\n",
			br.started, br.requested, br.commands, num(br.cmds.Seconds()), st)
	}
	if br := r.bursts[bwrapR]; br != nil && br.requested >= 500 && len(r.mems["burst/"+bwrapR]) > 0 {
		for _, k := range []struct {
			name string
			f    func(mem) uint64
		}{{"RSS", rssOf}, {"PSS", pssOf}} {
			mb, mr := r.memMed("burst/"+bwrapR, k.f), r.memMed("burst/"+rawExec, k.f)
			w("| per-task helper memory ≤ 3 MiB and ≥ 5x below raw_exec's, with %d tasks running (%s) | %s MiB vs %s MiB: %s below | %s |\n",
				br.requested, k.name, num(mb), num(mr), ratio(mr, mb), status(mb <= 3 && mr >= 5*mb, !math.IsNaN(mb/mr)))
		}
	}
	rh, rb := r.med("r", rHost), r.med("r", rBwrap)
	pb := r.med("rpair", rBwrap)
	w("| R in the sandbox ≤ 1.05x outside (bwrap-r task start to exit vs the same Rscript on the host; median of each turn's ratio) | %s ms vs %s ms; per turn %sx (95%% confidence interval of that median %s), %s ms more | %s |\n",
		num(rb), num(rh), num(pb), ciText(r.get("rpair", rBwrap)), num(r.med("rdiff", rBwrap)), status(pb <= 1.05, !math.IsNaN(pb)))
	rhi, rbi := r.med("r", rHostInner), r.med("r", rBwrapInner)
	pbi := r.med("rpair", rBwrapInner)
	w("| the same, R's own run time only (timed inside, by the shell) | %s ms vs %s ms; per turn %sx (%s), %s ms more | %s |\n\n",
		num(rbi), num(rhi), num(pbi), ciText(r.get("rpair", rBwrapInner)), num(r.med("rdiff", rBwrapInner)), status(pbi <= 1.05, !math.IsNaN(pbi)))
	r.explain(&b)

	w("## Start latency\n\n")
	w("Median, in ms; `n` is the number of tasks. What a user waits for comes first: the command (a sleep task, `/bin/sleep`) and `/bin/true`'s exit. StartTask returns before bwrap-r's sandbox has made its mounts and exec'd the command, so \"returned\" and \"running\" (what the Nomad client sees) are secondary.\n\n")
	w("| Measure | bwrap-r | raw_exec | exec | bwrap-r / raw_exec |\n|---|---|---|---|---|\n")
	for _, row := range []struct{ name, cat string }{
		{"**StartTask until the command has been exec'd**", "cmd"},
		{"**StartTask until WaitTask returned the exit of `/bin/true`**", "true"},
		{"secondary: StartTask returned", "startRet"},
		{"secondary: StartTask until InspectTask says running", "start"},
	} {
		w("| %s |", row.name)
		for _, d := range drvs {
			w(" %s |", fmtMs(r.get(row.cat, d)))
		}
		w(" %s |\n", ratio(r.med(row.cat, bwrapR), r.med(row.cat, rawExec)))
	}
	w("\nSpread (ms: min / p10 / median / p90 / max):\n\n")
	w("| Measure | Driver | min | p10 | median | p90 | max |\n|---|---|---|---|---|---|---|\n")
	for _, row := range []struct{ name, cat string }{{"command exec'd", "cmd"}, {"`/bin/true` exit", "true"}, {"running", "start"}} {
		for _, d := range drvs {
			vs := r.get(row.cat, d)
			if len(vs) == 0 {
				continue
			}
			w("| %s | %s | %s | %s | %s | %s | %s |\n", row.name, d, num(quantile(vs, 0)), num(quantile(vs, 0.1)), num(median(vs)), num(quantile(vs, 0.9)), num(quantile(vs, 1)))
		}
	}
	if vs := r.get("alloc", execDrv); len(vs) > 0 {
		w("\nexec's tasks need a chroot, which the Nomad client builds before StartTask (here the harness's `TinyChroot`, hard links of /usr/lib): %s s per task, not counted above.\n", num(median(vs)/1000))
	}

	w("\n## Helper memory per idle task\n\n")
	w("The host processes each running task costs besides the task itself: for bwrap-r bwrap's monitor and the sandbox's pid 1; for raw_exec and exec the Nomad executor (`<agent binary> executor`). Read from /proc/PID/smaps_rollup %v after the tasks started. USS is the pages no other process shares. Median per task, MiB.\n\n", sz.settle)
	w("| Driver | tasks | RSS | PSS | USS | CPU used so far (10 ms ticks) |\n|---|---|---|---|---|---|\n")
	for _, key := range []string{bwrapR, bwrapR + "/bwrap monitor", bwrapR + "/sandbox pid 1", rawExec, execDrv} {
		if len(r.mems[key]) == 0 {
			continue
		}
		w("| %s | %d | %s | %s | %s | %s ms |\n", key, len(r.mems[key]), num(r.memMed(key, rssOf)), num(r.memMed(key, pssOf)), num(r.memMed(key, ussOf)), num(r.cpuMed(key)))
	}
	w("\nIn the bench the executor is this bench's test binary re-executed (as `nomad executor` is the agent binary re-executed), so its size is that of a binary with Nomad's drivers, not of the whole Nomad agent.\n")

	w("\n## Concurrent tasks\n\n")
	w("Sleep tasks started with 32 StartTask calls in flight (alloc dirs and cgroups made beforehand, untimed); bwrap-r first, then raw_exec. raw_exec's run stops early if MemAvailable falls below max(2 GiB, 10%% of memory) or after %v.\n\n", sz.rawBurstFor)
	w("| | bwrap-r | raw_exec |\n|---|---|---|\n")
	br, rr := r.bursts[bwrapR], r.bursts[rawExec]
	cell := func(f func(*burstResult) string) string {
		out := ""
		for _, x := range []*burstResult{br, rr} {
			if x == nil {
				out += " – |"
				continue
			}
			out += " " + f(x) + " |"
		}
		return out
	}
	w("| tasks running / asked |%s\n", cell(func(x *burstResult) string { return fmt.Sprintf("%d / %d", x.started, x.requested) }))
	w("| stopped |%s\n", cell(func(x *burstResult) string {
		if x.stopped == "" {
			return "no"
		}
		return x.stopped
	}))
	w("| first error |%s\n", cell(func(x *burstResult) string {
		if x.firstErr == "" {
			return "none"
		}
		return strings.ReplaceAll(x.firstErr, "|", "/")
	}))
	w("| time until all were running (InspectTask) |%s\n", cell(func(x *burstResult) string { return num(x.running.Seconds()) + " s" }))
	w("| time until all commands ran |%s\n", cell(func(x *burstResult) string {
		return fmt.Sprintf("%s s (%d up)", num(x.cmds.Seconds()), x.commands)
	}))
	w("| per task started (wall time / tasks) |%s\n", cell(func(x *burstResult) string {
		if x.started == 0 {
			return "–"
		}
		return num(ms(x.cmds)/float64(x.started)) + " ms"
	}))
	w("| node's MemAvailable drop, all tasks |%s\n", cell(func(x *burstResult) string { return mibSigned(x.memBefore, x.memAfter) }))
	w("| MemAvailable drop per task |%s\n", cell(func(x *burstResult) string {
		if x.started == 0 {
			return "–"
		}
		return num((float64(x.memBefore)-float64(x.memAfter))/(1<<20)/float64(x.started)) + " MiB"
	}))
	w("| helper processes, PSS summed |%s\n", cell(func(x *burstResult) string {
		return fmt.Sprintf("%s MiB over %d tasks", num(float64(x.helpers.pss)/(1<<20)), x.helperTasks)
	}))
	memCell := func(key string) string {
		if len(r.mems[key]) == 0 {
			return " – |"
		}
		return fmt.Sprintf(" %s / %s / %s MiB |", num(r.memMed(key, rssOf)), num(r.memMed(key, pssOf)), num(r.memMed(key, ussOf)))
	}
	w("| helper memory per task, median RSS / PSS / USS |%s%s\n", memCell("burst/"+bwrapR), memCell("burst/"+rawExec))
	w("| of which bwrap's monitor / the sandbox's pid 1 (RSS / PSS / USS) |%s – |\n", strings.TrimSuffix(memCell("burst/"+bwrapR+"/bwrap monitor"), " |")+" ;"+memCell("burst/"+bwrapR+"/sandbox pid 1"))
	w("| CPU used by the helper processes per task, median (bwrap-r: the monitor's includes the shim's start before its exec into bwrap; 10 ms ticks) |%s\n", func() string {
		out := ""
		for _, d := range []string{bwrapR, rawExec} {
			out += " " + num(r.cpuMed("burst/"+d)) + " ms |"
		}
		return out
	}())
	w("| host mount table with all tasks running (Nomad's alloc dirs mount two tmpfs per task) |%s\n", cell(func(x *burstResult) string { return fmt.Sprintf("%d mounts", x.mounts) }))
	w("| destroying them all (16 at a time) |%s\n", cell(func(x *burstResult) string { return num(x.destroy.Seconds()) + " s" }))
	w("\nThe MemAvailable drop counts everything the tasks cost the node: the sleeps themselves, helper processes, kernel objects (namespaces, mounts, cgroups) and the plugin side in this process.\n")

	w("\n## R start-up\n\n")
	w("`%s -e 'cat(1)'`, median of %d each after one warm-up of each, kinds in turns. On the host it runs as nobody with the sandbox's environment (PATH, HOME, TMPDIR, LANG), as bwrap-r runs a task without a user. \"R only\" is timed by the shell around Rscript (`date +%%s%%N`), inside the sandbox or on the host.\n\n", r.rscript, sz.r)
	w("| Kind | median | vs host (medians) | vs host, each turn's ratio: p25 / median / p75 | 95%% confidence interval of that median | each turn's difference, median |\n|---|---|---|---|---|---|\n")
	for _, k := range []string{rHost, rBwrap, rRaw, rHostInner, rBwrapInner} {
		base := rh
		if k == rHostInner || k == rBwrapInner {
			base = rhi
		}
		turns, ci, diff := "–", "–", "–"
		if ps := r.get("rpair", k); len(ps) > 0 {
			turns = fmt.Sprintf("%s / %s / %s", num(quantile(ps, 0.25)), num(quantile(ps, 0.5)), num(quantile(ps, 0.75)))
			ci = ciText(ps)
			diff = fmt.Sprintf("%+.1f ms", r.med("rdiff", k))
		}
		w("| %s | %s | %s | %s | %s | %s |\n", k, fmtMs(r.get("r", k)), ratio(r.med("r", k), base), turns, ci, diff)
	}
	w("\nA turn runs each kind once, in an order that rotates, each run %v after the one before it ended (what that one left to the background, a raw_exec task's executor exiting or a sandbox's namespaces let go, is then over); its ratio sets a sandbox run against the host run of the same turn, seconds apart, where the medians of the whole run also carry the drift of R's start-up over the minutes the workload takes.\n", rSettle)
	w("\nRuns of this workload differ by more than the interval above says. Five on an AMD EPYC VM on 2026-12-03 (host R 193 to 201 ms) read 1.06 (1.03–1.08), 1.02 (1.00–1.05), 1.04 (1.01–1.06), 1.04 (1.01–1.06) and 1.05 (1.03–1.08) per turn, each turn's difference +11.7, +4.5, +8.3, +7.2 and +9.0 ms. The first (before commit 011b3c3, whose launcher makes fewer system calls) and the third ran without the 100 ms pause before each run, the others with it: two back-to-back runs, one each way, read the same 1.04. On an earlier machine, with host R 143 ms, the last run read 1.06 (+8.9 ms). On an Intel Xeon VM the same day, all with the pause: 1.05 (1.05–1.06, +6.6 ms, host R 127 ms; the machine was still busy from its set-up), 1.05 (1.05–1.06, +7.9 ms, host R 145 ms, on a quiet machine), and the paired probe below, 120 turns: 1.046 (p25 1.02, p75 1.11; +6.5 ms, host R 140 ms), all with the spare exec'ing bwrap; with the launcher preloaded, two quiet runs the same afternoon: 1.05 (1.04–1.05, +6.09 ms, host R 132 ms) and 1.05 (1.04–1.05, +5.95 ms, host R 133 ms, the run above). What bwrap-r adds to an R task is these few milliseconds, the same as to `/bin/true`, so 5%% is met or missed with how long R itself takes to start.\n")

	w("\n## Where bwrap-r's start goes\n\n")
	w("Each part timed on its own (median of %d, in turns, ms; timed between the tasks of the start workload), next to StartTask through the harness:\n\n", len(r.get("phase", phSpawn)))
	w("| Phase | median | p90 |\n|---|---|---|\n")
	for _, p := range []string{phSpawn, phBench, phInitB, phPlugin, phInitP, phShimB, phShimP, phBwrapUp, phBwrapTr, phLaunch, phLaunchT, phLaunchC, phLaunchE} {
		vs := r.get("phase", p)
		if len(vs) == 0 {
			continue
		}
		w("| %s | %s | %s |\n", p, num(median(vs)), num(quantile(vs, 0.9)))
	}
	w("| bwrap-r StartTask through the harness, until it returned | %s | %s |\n", num(r.med("startRet", bwrapR)), num(quantile(r.get("startRet", bwrapR), 0.9)))
	w("| raw_exec StartTask through the harness, until it returned | %s | %s |\n", num(r.med("startRet", rawExec)), num(quantile(r.get("startRet", rawExec), 0.9)))
	for _, p := range []string{phInitP, phInitB} {
		if top := r.initTop[p]; len(top) > 0 {
			w("\nCostliest package inits %s: %s.\n", strings.TrimPrefix(strings.TrimSuffix(p, ": Go package init (GODEBUG=inittrace=1)"), "of "), strings.Join(top, ", "))
			break
		}
	}

	r.traceSection(&b)

	w("\n## How it was run\n\n")
	w("- `BWRAP_R_BENCH=%s go test -tags bench ./bench/`: %d tasks each for bwrap-r and raw_exec in each start workload, %d exec tasks (exec's `/bin/true` workload: %v), %d idle tasks each for the memory workload (exec: its %d sleep tasks from the start workload), %d concurrent tasks, %d R start-ups of each kind.\n",
		sz.mode, sz.n, sz.exec, sz.execTrue, sz.mem, sz.exec, sz.burst, sz.r)
	w("- Drivers as Nomad configures them: bwrap-r with `state_dir` in the bench's dir, `tmp_size_mb = 64`, `pids_limit = 2048` (its shim is the bench binary: `/proc/self/exe`); raw_exec with `enabled = true`; exec with its defaults (private PID and IPC namespaces, Nomad's default capabilities). Each driver's fingerprint stream is kept open, as the client does (so bwrap-r takes finished allocations' link guards off every 30 s, as on a node). Every task has 128 MiB (R: 1 GiB) and 100 CPU shares, and the cgroups the Nomad client would have made. No logmon: raw_exec's and exec's executors discard their tasks' output, while bwrap-r's tasks write to bwrap-r's own collector (its default: one process for the node, in place of a logmon per task), so its figures include handing each task's pipes to the collector and hearing that its output is in its files before the exit is reported.\n")
	w("- Tasks run as their driver's default user: nobody for bwrap-r and exec, root for raw_exec.\n")
	w("- \"Running\" is what the Nomad client sees: StartTask returned and InspectTask says running. \"Command exec'd\" polls /proc (every 0.2 ms) for the task's `sleep` under the pid the driver reports.\n")
	if r.leftoverCheck != "" {
		w("- Every task was destroyed (DestroyTask with force, then its alloc dir and cgroups removed); %s.\n", r.leftoverCheck)
	}
	if len(r.errors) > 0 {
		w("\n## Errors during the run\n\n")
		for _, e := range r.errors {
			w("- %s\n", e)
		}
	}
	return b.String()
}

func mibSigned(before, after uint64) string {
	return fmt.Sprintf("%.0f MiB", (float64(before)-float64(after))/(1<<20))
}

// explain writes, for each missed target, what the run measured about where
// the cost is.
func (r *report) explain(b *strings.Builder) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	var lines []string
	startB, startR := r.med("start", bwrapR), r.med("start", rawExec)
	cmdB, cmdR := r.med("cmd", bwrapR), r.med("cmd", rawExec)
	retB := r.med("startRet", bwrapR)
	launch, up, self, plugin, spawn := r.med("phase", phLaunch), r.med("phase", phBwrapUp), r.med("phase", phBench), r.med("phase", phPlugin), r.med("phase", phSpawn)
	trueB, trueR := r.med("true", bwrapR), r.med("true", rawExec)
	if !(trueB <= 0.5*trueR) || !(cmdB <= 0.5*cmdR) {
		shim := r.med("phase", phShimP)
		if math.IsNaN(shim) {
			shim = r.med("phase", phShimB)
		}
		l := fmt.Sprintf("Start: bwrap-r's StartTask returns after %s ms (raw_exec's: %s ms). Of that, the launcher (bwrap.Start: shim, then bwrap until the sandbox's pid 1 exists) takes %s ms: bwrap alone needs %s ms to set the sandbox up; the shim (C, run before the Go runtime) dropping to a UID and exec'ing /bin/true takes %s ms against %s ms for a plain fork+exec of /bin/true",
			num(retB), num(r.med("startRet", rawExec)), num(launch), num(up), num(shim), num(spawn))
		if !math.IsNaN(plugin) {
			l += fmt.Sprintf(" (the bwrap-r binary's Go main, which the shim never reaches, starts in %s ms", num(plugin))
			if init := r.med("phase", phInitP); !math.IsNaN(init) {
				l += fmt.Sprintf(", %s ms of it Go package inits: %s", num(init), strings.Join(r.initTop[phInitP], ", "))
			}
			l += ")"
		} else if !math.IsNaN(self) {
			l += fmt.Sprintf(" (this bench binary's Go main starts in %s ms)", num(self))
		}
		launchC := r.med("phase", phLaunchC)
		if !math.IsNaN(launchC) {
			if d := launchC - launch; d > 1 {
				l += fmt.Sprintf(". Joining the task's cgroups adds %s ms (%s ms instead of %s ms)", num(d), num(launchC), num(launch))
			} else {
				l += fmt.Sprintf(". Joining the task's cgroups in the shim adds nothing measurable (%s ms with, %s ms without)", num(launchC), num(launch))
			}
			launch = launchC
		}
		if rest := retB - launch; rest > 1 {
			l += fmt.Sprintf(". The driver's own work (task dirs, cgroup limits, spec) and the gRPC hop are the remaining %s ms.", num(rest))
		} else {
			l += ". The driver's own work (task dirs, cgroup limits, spec) and the gRPC hop are within the noise of these separate timings."
		}
		if rawRet := r.med("startRet", rawExec); shim+up > 0.5*rawRet {
			l += fmt.Sprintf(" The shim and bwrap's own set-up alone (%s ms) are already %.0f%% of raw_exec's whole StartTask (%s ms).", num(shim+up), 100*(shim+up)/rawRet, num(rawRet))
		}
		if !math.IsNaN(cmdB - startB) {
			l += fmt.Sprintf(" From running to the command's exec bwrap-r needs %s ms more (the sandbox's mounts are made after pid 1 is reported); raw_exec %s ms.", num(cmdB-startB), num(cmdR-startR))
		}
		lines = append(lines, l)
	}
	mb, mr := r.memMed(bwrapR, rssOf), r.memMed(rawExec, rssOf)
	pb := r.memMed(bwrapR, pssOf)
	if !(mb <= 3) || !(mr >= 5*mb) || !(pb <= 3) {
		lines = append(lines, fmt.Sprintf("Memory: per task, bwrap's monitor has RSS %s / PSS %s / USS %s MiB and the sandbox's pid 1 RSS %s / PSS %s / USS %s MiB; RSS counts the shared pages of bwrap and its libraries (libc, libselinux, libcap) in full for each process, PSS splits them between all processes that map them.",
			num(r.memMed(bwrapR+"/bwrap monitor", rssOf)), num(r.memMed(bwrapR+"/bwrap monitor", pssOf)), num(r.memMed(bwrapR+"/bwrap monitor", ussOf)),
			num(r.memMed(bwrapR+"/sandbox pid 1", rssOf)), num(r.memMed(bwrapR+"/sandbox pid 1", pssOf)), num(r.memMed(bwrapR+"/sandbox pid 1", ussOf))))
	}
	if br := r.bursts[bwrapR]; br != nil && (br.started != br.requested || br.commands < br.requested || br.firstErr != "") {
		lines = append(lines, fmt.Sprintf("Concurrency: %d of %d bwrap-r tasks started; first error: %s.", br.started, br.requested, br.firstErr))
	}
	if br, rr := r.bursts[bwrapR], r.bursts[rawExec]; br != nil && rr != nil && br.requested >= 500 && len(r.mems["burst/"+bwrapR]) > 0 {
		key := "burst/" + bwrapR + "/sandbox pid 1"
		pb5, pr5 := r.memMed("burst/"+bwrapR, pssOf), r.memMed("burst/"+rawExec, pssOf)
		if !(pb5 <= 3 && pr5 >= 5*pb5) || br.cmds > 2*rr.cmds {
			lines = append(lines, fmt.Sprintf("At %d tasks: the host's mount table held %d mounts (Nomad's alloc dirs mount a tmpfs for secrets/ and private/ of every task). Each bwrap copies it into its new mount namespace and its pid 1 sets the sandbox up against it: pid 1 then holds RSS %s / USS %s MiB (with %d idle tasks: %s / %s MiB) and used %s ms of CPU (with %d idle tasks: %s ms). On 2 cores that set-up is why the %d commands were all up only after %s s, against %s s for raw_exec; bwrap's monitor stays at USS %s MiB.",
				br.requested, br.mounts,
				num(r.memMed(key, rssOf)), num(r.memMed(key, ussOf)), r.sizes.mem, num(r.memMed(bwrapR+"/sandbox pid 1", rssOf)), num(r.memMed(bwrapR+"/sandbox pid 1", ussOf)),
				num(r.cpuMed(key)), r.sizes.mem, num(r.cpuMed(bwrapR+"/sandbox pid 1")),
				br.requested, num(br.cmds.Seconds()), num(rr.cmds.Seconds()), num(r.memMed("burst/"+bwrapR+"/bwrap monitor", ussOf))))
		}
	}
	rh, rb := r.med("r", rHost), r.med("r", rBwrap)
	if !(r.med("rpair", rBwrap) <= 1.05) {
		lines = append(lines, fmt.Sprintf("R: the bwrap-r task takes %s ms more than Rscript on the host in the median turn (%s ms against %s ms, medians of the whole run). A bwrap-r task of `/bin/true` takes %s ms from StartTask to its exit, which is the sandbox's fixed cost; R itself, timed inside, takes %s ms more in the sandbox than on the host in the median turn (%s ms against %s ms).",
			num(r.med("rdiff", rBwrap)), num(rb), num(rh), num(r.med("true", bwrapR)), num(r.med("rdiff", rBwrapInner)), num(r.med("r", rBwrapInner)), num(r.med("r", rHostInner))))
	}
	if len(lines) == 0 {
		return
	}
	w("What costs the time (or memory) where a target is missed:\n\n")
	for _, l := range lines {
		w("- %s\n", l)
	}
	w("\n")
}

// traceBefore is the same trace of a launch before bwrap-r built /etc and
// /dev as trees and joined v1 cgroups by thread (commit 245a7ff), taken on
// this project's 2-core machine on 2026-12-01 (quiet: load 0.2), 8 launches
// 100 ms apart, bwrap-r's spec with /etc and /dev bound entry by entry, four
// v1 cgroups (freezer, cpu, memory, pids) of the tracer's own. A reference,
// not a measurement of this run.
var traceBefore = []float64{0.98, 8.45, 7.32, 1.15, 6.71, 2.68, 0.47, 0.21, 0.60, 18.23, math.NaN(), math.NaN()}

// traceBeforeRoot is this trace before bwrap ran in a root of the launch's
// own (commit f760fd6: bwrap in a copy of the host's mount namespace, the
// other allocations' mounts pruned from it): `make bench` on this project's
// 2-core machine on 2026-12-01, 20 launches, load 2.2 at the start (right
// after another bench run; the node calm before the workload), the start
// workload's 100 bwrap-r and 100 raw_exec tasks running. A reference, not a
// measurement of this run.
var traceBeforeRoot = []float64{1.17, 2.25, 0.02, 1.48, 11.2, 6.63, 0.71, 0.24, 1.15, 17.7, math.NaN(), math.NaN()}

// traceSection writes where each millisecond of a launch goes, from the
// kernel's trace of the start workload's traced launches.
func (r *report) traceSection(b *strings.Builder) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("\n## Where each millisecond of a launch goes\n\n")
	n := len(r.get("trace", tracePhases[len(tracePhases)-1]))
	if n == 0 {
		reason := r.traceErr
		if reason == "" {
			reason = "no launch traced"
		}
		w("Not traced in this run: %s.\n", reason)
		return
	}
	w("The kernel's tracer (ftrace: syscall entry and exit, fork, exec and exit events, about a microsecond each) followed %d launches as StartTask makes them (bwrap.Start joining the task's cgroups, the launcher assembling the sandbox's root, `/bin/true` as the command), each after a %v pause, from just before the task's cgroup dirs are made until they and the status file are removed again (the last two rows say how much of that is this work around the launch: StartTask's and DestroyTask's in the driver). Median ms per part, process by process; the parts add up to the total. StartTask's own work around the launch (task dirs, cgroup limits, the spec, the handle) and the gRPC hop are the difference between the rows \"StartTask through the harness\" and \"bwrap.Start joining the task's cgroups\" above.\n\n", n, traceGap)
	w("| Part | this run | before the launch's root (reference) | before the trees (reference) |\n|---|---|---|---|\n")
	for i, k := range tracePhases {
		name := k
		if strings.HasPrefix(k, "  ") {
			name = "&nbsp;&nbsp;" + strings.TrimSpace(k)
		}
		if k == "total" {
			name = "**total**"
		}
		w("| %s | %s | %s | %s |\n", name, num(r.med("trace", k)), num(traceBeforeRoot[i]), num(traceBefore[i]))
	}
	w("\nThe reference columns are the same trace at two earlier commits, taken on this machine on 2026-12-01: before the launch's root (commit f760fd6, 20 launches %v apart, load 2.2, the start workload's tasks running) and before the trees (commit 245a7ff: /etc's 22 files and /dev's 6 nodes each one bwrap bind, cgroups joined by writing the pid to each v1 cgroup.procs; 8 launches, load 0.2, four v1 cgroups of the tracer's own). What they showed, and what changed:\n\n", traceGap)
	w("- The sandbox's pid 1 making the mounts (11.2 ms before the launch's root, 6.6 of them reading /proc/self/mountinfo): bwrap reads and parses the whole mount table of its namespace for every bind and every read-only remount, and that namespace was a copy of the host's, which holds a few mounts for every task of the node (Nomad's secrets/ and private/ tmpfs, bwrap-r's link guards); the launcher pruned other allocations' mounts from its copy one by one, which cost as much again. Now bwrap runs in a root of the launch's own: a tmpfs with the host paths it binds from, /proc, /tmp and the stage, each cloned from the host first. The launcher assembles it in a copy of a template mount namespace (one empty tmpfs, made once per plugin process and never stale, since it holds nothing of the host) and moves into it; no step copies, parses or detaches the host's mount table. The paths bwrap binds by path (/usr, an R install outside r_root, a device) are looked up as the task's UID first, as bwrap would.\n")
	w("- The first v1 cgroup join of a start (7.3 ms there, 5 to 20 ms over many runs; the four after it took microseconds): writing a pid to cgroup.procs takes the kernel's global threadgroup lock for writing, whose fast path is gone after a few tens of milliseconds without a migration, so it waits for an RCU grace period. Fewer controllers would not help (the cost is once per start, not once per controller). The launchers now write 0 (the calling thread) to each v1 `tasks` file: the kernel moves the current thread without that lock, and the launcher is single-threaded (it checks), so the thread is the whole process. v2 has no tasks file: there the shim still writes its pid to cgroup.procs (cloning it into the cgroup with clone3's CLONE_INTO_CGROUP was tried and reverted: a task with a device then failed Nomad's exec conformance on the v2 guest).\n")
	w("- Before the trees, /etc's 22 files and /dev's 6 nodes were 28 bwrap binds of their own, each a parse of the mount table. The launcher now builds /etc and /dev as two trees, as root in its own mount namespace and from the host as it is at that start (so never stale, and private to that launch), and bwrap binds each as one mount. A tree per node kept current would save the launcher's part only (its binds are kernel calls of tens of microseconds, about 0.4 ms for all of them) at the price of keeping it current, so it is not built.\n")
	w("- StartTask's return waited on the kernel: the inotify instance that watches bwrap's status file for the sandbox's pid 1 was closed before Start returned, and the last close of an inotify instance waits for an SRCU grace period (1 to 13 ms in 10 traced launches 100 ms apart, median about 6.5; about 10 ms back to back). It is now closed by a goroutine of its own: StartTask through the harness returned in 6.7 to 8.0 ms where it took 16.5 (40 tasks each way, twice, 2026-12-01). The watch came with reading pid 1 from the status file (commit b67aad6, which replaced a pipe whose reader's death could hang pid 1), after the run the previous BENCHMARKS.md came from, so no full run showed it. The command itself never waited for that close, but everything that waits for StartTask did: the Nomad client's \"running\", and this bench's timings of the command and of `/bin/true`'s exit, which start looking once StartTask has returned.\n")
	w("- The log collector (not in the traced launches above, which write to /dev/null): a bwrap-r task writes to bwrap-r's own collector process, and each start handed it the task's pipes (a round trip to another process, 0.25 ms median) just before the launch, and each exit waited, on a connection dialled for it, until the collector said the task's output was in its files (0.27 ms) before the exit was reported. Paired starts of `/bin/true` through the harness with and without the collector differed by 1.1 and 1.2 ms (medians of 60 and 30 pairs, 2026-12-02). The hand-over now runs alongside StartTask's other steps, still settled before the launch (a command never runs with nowhere for its output to go), and the collector tells the plugin on its own, on the connection the plugin already watches, when a task's output is in its files: the exit's wait took 0.007 ms where it took 0.271 (medians of 30), and the paired starts then differed by 0.37 to 0.55 ms (four runs).\n")
	w("- The exit waited for two mount namespaces to be torn down: the sandbox's (its last process is pid 1) and the launch's root (its last process is bwrap's monitor). The last process of a mount namespace unmounts everything in it as it exits and waits there for an RCU grace period (traced with scheduler events, 2026-12-02: both bwraps in D state on the expedited grace period's kernel thread, 0.2 and 0.5 ms after their exit began), and only then does its parent, or the plugin, see it gone. bwrap.Start now holds both namespaces open until the sandbox has ended and closes them off the exit's path: from `/bin/true`'s exit to the exit seen through the harness took 0.93 and 0.96 ms where it took 1.18 and 1.19 (medians of 29, two runs each way).\n")
	w("- The password file: a task runs as Nomad's dynamic workload user, `nomad-<N>`, which no user database names. Every lookup of it (bash's at start, R's, `id`) went through the sandbox's /etc/passwd to each other source nsswitch.conf names; Debian's `systemd` loads libnss_systemd (and libcap) and searches its user-record dirs: 0.36 ms more than a found user for the first lookup in a process, 0.59 ms for five (medians of 60, a C probe calling getpwuid). An R task's front end (bash) and R each look it up. The launcher now writes the sandbox's /etc/passwd and /etc/group with the task's user added. R's own run timed inside the sandbox was 1.010x the host's before and 0.997x after (240 turns each, 2026-12-02): the right direction and size, but within what one such run can tell apart.\n")
	w("- The host's mount table still costs a start something: each host path the launcher clones (open_tree) makes the kernel look at every mount directly below that path's own mount, for locked children, and on a node whose data_dir lies on the root file system that is a few mounts for every task (Nomad's secrets/ and private/ tmpfs, bwrap-r's link guards). With 1,500 extra mounts below /, the traced launches' clones took 0.76 ms per launch instead of 0.07, most of it in the first (the walk is then in the CPU's cache). Cloning a file without what is mounted below it does not avoid the walk (the kernel makes the same check), so it was left as it is. bwrap-r takes the guards of an allocation off once the client has removed its dirs (checked at every fingerprint, every 30 s).\n")
	w("- The launcher's own start: each launch forked the plugin's process and exec'd its binary for the shim, and on these VMs every exec of a glibc program pays about half a millisecond in glibc's start-up before main (each `cpuid` it runs traps to the hypervisor: a static glibc binary's fork+exec+wait took 1.28 ms against 0.74 for one without libc, 2026-12-01). The plugin now keeps one launcher started ahead (`_shim -request`), which waits on a socket for its argv and descriptors and then runs as the exec'd one did; the next is started once a launch is done with its own. Paired starts of `/bin/true` through the harness with and without it differed by 0.79 ms (median of 60 pairs, 2026-12-02).\n")
	w("- Two steps on the start's path waited for the file system: creating bwrap's status file in the state dir (ext4: 0.26 ms of each start, where tmpfs takes 0.03) and making the task's v1 cgroups and writing their limits (0.25 ms), each before the next step began. Both now run alongside the steps before the launch and are waited for just before it. Paired starts of `/bin/true` through the harness, each step one way and the other: StartTask returned 0.18 and 0.29 ms sooner with the status file made alongside, 0.15 and 0.37 ms with the cgroups (medians of 100 to 200 pairs, 2026-12-02).\n")
	w("- bwrap's own mounts: it made a dozen (/usr, the two trees, /proc, /dev/shm, /tmp, the task's dirs, two read-only remounts), and it reads and parses the whole mount table after each bind to flag what lies below it (pid 1's 31 reads of mountinfo took 0.63 ms of syscalls, its parsing about as much again). The launcher now assembles the sandbox's root itself, as root in the launch's mount namespace: a read-only tmpfs with /etc and /dev in it, /usr, the tmpfs, the device nodes and the task's dirs mounted in it with the flags bwrap's binds would give them (mount_setattr before each is attached), and bwrap binds it as its root with one --dev-bind. bwrap still mounts /proc (its pid namespace's) and what lies inside a bound host dir (/alloc/logs) or comes after a mount the launcher does not make as bwrap would. Paired starts of `/bin/true` through the harness, one way and the other: start to exit 1.42 ms sooner, StartTask's return 0.37 ms sooner (medians of 60 pairs, 2026-12-02).\n")
	w("- The launcher's copies of the host's /etc files (16 regular files, 150 KB, into the sandbox root's tmpfs: 0.24 ms of its 1.5) and that tmpfs's mount now happen in the spare, while it waits: it is started with the launch before it's list of /etc files, copies each that the launcher would copy into a detached tmpfs, and a request whose root binds the same files takes that tmpfs, keeping each copy whose source has the status it had at the copy's read (file, size, mode, owner, mtime, ctime) and making the others afresh. Paired launches of `/bin/true` (bwrap.Start with the driver's system mounts, a spare with and without its copies made ahead, 150 pairs twice, 2026-12-03): bwrap.Start returned 0.52 and 0.54 ms sooner, and the exit was seen 0.49 and 0.61 ms sooner.\n")
	w("- Tried and left: starting the next spare 30 ms after a launch returns rather than at once (its fork, exec and copies, about 1.5 ms of CPU, run alongside that sandbox's pid 1 making its mounts). Paired launches of `/bin/true` (100 pairs, three times, 2026-12-03) saw the exit 0.66, 0.16 and 0.35 ms (with 10 ms) sooner; but the R workload of two full runs with it was 10.1 and 10.7 ms over the host against 8.3 in the one run without it that day (the spare's work then falls in R's start-up instead), and 500 allocations through an agent, where launches close together found no spare ready, took 7.8 and 7.3 s against 6.1 and 6.7 (6.9 and 7.4 with a launch that found none hurrying the next spare). The spare is started at once, as before.\n")
	w("- Tried and left: making the launch's root the root by chroot instead of pivot_root and a detaching umount (which waits for an expedited RCU grace period, 0.03 to 0.3 ms on a quiet machine, 1 to 5 ms on a busy one, measured with a C probe): the kernel refuses a new user namespace to a chrooted process, so bwrap could not start.\n")
	w("- An R task's own parts, traced (ftrace, 8 R tasks through the harness, 2026-12-03): R's front end (`Rscript`, then the `R` shell script with its `uname` and `sed` children) ran 11.4 ms before the R binary's exec (with every system call traced, so slower than untraced); R starts `sh` for `which` and `uname` as it starts and `sh -c 'rm -Rf <its tempdir>'` as it ends; and its process took 4.8 ms from the start of its exit to a zombie (its address space freed), as on the host (5.0, Rscript traced the same way there). These are R's and paid alike in and out of the sandbox. From R's process gone to WaitTask's result took 1.28 ms, as after `/bin/true` (1.23): the exit's path costs an R task nothing more.\n")
	w("- Tried and left (2026-12-03, paired starts through the harness, tasks with 100 CPU shares as here): not waiting at the exit for the sandbox's pid 1 to finish exiting once the monitor had gone (300 pairs of `/bin/true`: the exit seen 0.009 ms sooner, since the wait for the task's output to be in its files already waits for pid 1's descriptors to close); the spare started as SCHED_IDLE, made normal for its request, so that its copies ahead never take a CPU from the launch before it (150 and 300 pairs: the exit seen 0.09 and 0.08 ms later, although a trace showed the monitor's waiter queued 0.9 ms on one CPU while the spare had the other). And the task's cgroups cost R nothing that could be seen: Rscript on the host in v1 memory (1 GiB), cpu (100 shares) and pids cgroups, joined by writing 0 to each `tasks`, against none: -3.8, -0.8 and -3.0 ms (100 pairs each), where a pair's difference spreads ±14 ms.\n")
	w("- The launcher's part, counted (ftrace, 2026-12-03): from its request to bwrap's exec it made 479 system calls (140 close, 55 newfstatat, 43 mkdirat and 43 openat2 for the trees' directories, 38 dup, 35 openat, 19 move_mount, 16 open_tree, 16 mount_setattr). A dup and a close for every tree entry directly in a tree's root, and an open and a close for each check of a copy made ahead (a stat now), are gone: 371 calls. Six alternating runs of 60 launches each, the old launcher and the new, could not tell them apart (bwrap.Start's return 5.78 and 5.88 ms, the exit seen 9.28 and 9.65, means of the runs' medians, where runs differ by ±0.5 ms): the calls left are the mounts and the file system's work, not their count.\n")
	w("- What remains is mostly fixed cost. A trace with scheduler events and every thread of the bench process followed (2026-12-02, the last of 5 launches, ms): bwrap's exec from the launcher took 0.36 where `/bin/true`'s from bwrap's pid 1 took 0.13 (the launcher is the plugin's own 31 MB image, torn down at the exec; a bare exec of `/bin/true` from the shim and from `env`, timed by strace, took 0.28 to 0.42 and 0.15 to 0.23); bwrap then ran 0.59 before its first system call (glibc's start-up, as in every glibc program on these VMs: `/bin/true` took 0.6 there too), and cloned pid 1 into its namespaces in 0.18; pid 1 unmounted the launch's root twice (umount2 with MNT_DETACH after each pivot_root), and each waited for an expedited RCU grace period, 0.29 and 0.06; it forked the command in 0.12 and read the mount table three times. In the launcher, the /etc copies took 0.24 of its 1.5 (phase marks, 40 starts; since made in the spare, above). The exit took 0.66 from `/bin/true`'s exit to its status in hand: pid 1's and the monitor's exits 0.19, the monitor's teardown 0.15, the Go side's wake-up and its reads of pid 1 and the status file 0.3. Through the harness (timestamps on both sides of the gRPC hop, 40 starts of `/bin/true`, medians): 0.49 from StartTask's call to the plugin's StartTask, 0.6 of its own steps before bwrap.Start, 0.09 from the exit's status to the task handle's, and 0.19 until WaitTask's result reached the caller. Making the status file at StartTask's start instead of in bwrap.Start changed nothing that paired starts could tell (StartTask's return -0.10 and -0.06 ms, start to exit +0.004 and +0.17, 100 pairs twice), and the hand-over of the task's output was already settled when bwrap.Start reached it (a median wait of 0.001 ms), so neither was changed. bwrap-r's own polling for the command's pid (for its exit status, Linux 6.15+) never holds up a start; it stops for good once a kernel is seen not to keep exit statuses for pidfd holders.\n")
	w("- A whole start through the harness, traced on an Intel Xeon VM (ftrace with scheduler events and every thread of the bench process, the plugin's included; the last of 6 starts of `/bin/true` 100 ms apart, 2026-12-03; tracing slows each step a little), ms from StartTask's call: the call reached the plugin's StartTask at 0.54 (the gRPC hop, which raw_exec pays too); StartTask's steps and bwrap.Start's preparation, on three threads (one making the task's cgroups), took 0.74 until the spare launcher had its request; the launcher took 0.82 to bwrap's exec, the exec 0.17; bwrap then ran 0.57 before its first mmap (glibc's start-up, whose `cpuid` instructions each trap to the hypervisor: 0.3 on the AMD VM) and 0.33 loading its four libraries, and cloned pid 1 at 3.5; pid 1 took 1.2 to the command's fork (one read of the mount table, for the root's bind; /proc; /alloc/logs, the one bind bwrap still makes; 0.16 in the detaching umount of the old root, an expedited RCU grace period), then loaded the seccomp filter for itself (0.17) while the command's process loaded it for the command (0.08): the command's exec came 0.49 after its fork, since it waited for a CPU, and the other one ran the next spare launcher (started as StartTask returned: fork, exec and the /etc copies, 1.5 ms on one CPU from 4.2 to 5.7). At the exit: 0.18 from `/bin/true`'s exit to pid 1 reporting it, 0.07 more until the monitor had written the status, 0.28 for the monitor's own exit (its last close of the task's pipes woke the log collector, which ran on the monitor's CPU in between), 0.4 from the plugin's waiter waking to WaitTask's result sent (the status read, pid 1 reaped, the cgroup's OOM count read) and 0.15 more to the caller: 7.2 from the call to the result.\n")
	w("- An R task pays what `/bin/true` pays (paired through the harness, 2026-12-03, Intel VM: 100 turns of host `/bin/true`, a bwrap-r task of it, host Rscript and two bwrap-r Rscript tasks, in rotation, 100 ms apart): a bwrap-r task took 5.94 ms more than the host for `/bin/true` (p25 5.51, p75 6.58) and 5.25 more for R (1.69 to 8.98; 6.38 with `Rscript` named by its full path), and R's extra over `/bin/true`'s, turn by turn, was -0.84 ms (-4.93 to 3.02). So 5%% of R's start-up is met or missed with R's own speed: this fixed cost is 5%% of a 120 ms start-up, and R took 124 ms on the host in that run (193 to 225 ms on the AMD VM).\n")
	w("- Tried and left (2026-12-03, Intel VM, paired as above, 120 turns): the next spare started 20 ms after StartTask's return instead of at once, so that its work never overlaps pid 1's: `/bin/true` 0.48 ms sooner to its exit (p25 -1.21, p75 0.53), R 0.33 ms later (-4.27 to 4.57), which is none that the R workload could tell; and an isolated start's gain would cost the starts of a job's many allocations, which then find no spare (above).\n")
	w("- Built (2026-12-03): bwrap's own start-up, 1.1 to 1.4 ms on the Intel VM (its exec 0.2 to 0.45, glibc's start 0.57, its libraries 0.33), was paid after the request, because bwrap reads its real UID and tests its descriptors at its start, and both are the task's, known only then. The spare is now bwrap itself, with the launcher preloaded (bwrap/preload.c): the launcher takes the request before bwrap's main, and only bwrap's main is left after it. Paired in the bwrap package (150 pairs of `/bin/true`, a fresh spare of each kind every turn): start to exit 3.97 ms preloaded (p25 3.79, p75 4.32) against 4.92 with the spare exec'ing bwrap (4.67 to 5.34); Rscript (60 pairs) 128.2 against 129.4 ms.\n")
}
