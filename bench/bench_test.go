//go:build bench

// Package bench compares bwrap-r with Nomad's raw_exec and exec drivers (the
// packages of the pinned Nomad module), all driven through Nomad's
// DriverHarness in one run, and writes BENCHMARKS.md at the repository root.
//
// It is a benchmark, not a test: TestBench is skipped unless BWRAP_R_BENCH is
// set, and the package builds only with -tags bench (it pulls in runc's
// libcontainer through the exec driver).
//
//	BWRAP_R_BENCH=full  go test -tags bench -count=1 -timeout 60m -v ./bench/  (writes BENCHMARKS.md)
//	BWRAP_R_BENCH=smoke go test -tags bench -count=1 -v ./bench/              (3 tasks a workload, 1 exec task; writes nothing)
//
// Sizes can be changed with BWRAP_R_BENCH_N (start workloads, per driver),
// BWRAP_R_BENCH_EXEC (exec tasks), BWRAP_R_BENCH_MEM (idle tasks for the
// memory workload), BWRAP_R_BENCH_BURST (concurrent tasks) and
// BWRAP_R_BENCH_R (R start-ups of each kind).
package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/bwrap-r/bwrap-r/internal/nomadcgroups"
	"golang.org/x/sys/unix"
)

// The workloads whose latency the report judges.
const (
	stepStart = "start to the command (and, between its tasks, the phases of a bwrap-r start)"
	stepTrue  = "start and wait of /bin/true"
	stepR     = "R start-up"
)

// noopCommand makes the test binary exit at once: the bench times it to see
// what the shim's start (this same binary) costs.
const noopCommand = "_bench_noop"

func TestMain(m *testing.M) {
	// Nomad's executor ("executor") and libcontainer's init ("init") are
	// handled by those packages' init functions before this runs. bwrap-r
	// re-executes this binary (/proc/self/exe) as its launcher shim.
	if len(os.Args) > 1 && os.Args[1] == noopCommand {
		os.Exit(0)
	}
	// 500 tasks: every raw_exec task holds pipes and a socket to its executor.
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
	// The harness logs at TRACE by default; logging every RPC would be part
	// of what is measured.
	if os.Getenv("NOMAD_TEST_LOG_LEVEL") == "" {
		os.Setenv("NOMAD_TEST_LOG_LEVEL", "ERROR")
	}
	if os.Getenv("BWRAP_R_BENCH") != "" && os.Getuid() == 0 {
		// As the Nomad client does at start: the nomad cgroup tree (on v1 no task
		// of any driver can join the cpuset partition before this).
		if err := nomadcgroups.Init(); err != nil {
			fmt.Fprintln(os.Stderr, "nomad cgroups:", err)
		}
	}
	os.Exit(m.Run())
}

// sizes are how many tasks each workload runs.
type sizes struct {
	mode string
	// n tasks each for bwrap-r and raw_exec in the start workloads.
	n int
	// exec tasks in each start workload (its chroot takes long to build).
	exec int
	// mem idle tasks each for bwrap-r and raw_exec (exec: its start tasks).
	mem int
	// burst concurrent tasks.
	burst int
	// rawBurstFor caps how long raw_exec's burst may keep starting tasks.
	rawBurstFor time.Duration
	// r start-ups of each kind.
	r int
	// phases repetitions of each bwrap-r start phase; traced launches
	// followed by the kernel's tracer.
	phases, traced int
	// execTrue runs exec's /bin/true workload.
	execTrue bool
	// settle is the pause before memory is read.
	settle time.Duration
	// quiet is how long to wait at most for the node to calm down before
	// each workload.
	quiet time.Duration
	// pause is the rest between the concurrency runs; warm runs R once of
	// each kind before timing it.
	pause time.Duration
	warm  bool
}

func sizesFor(t *testing.T, mode string) sizes {
	var s sizes
	switch mode {
	case "full":
		// R: 240 turns, since a turn's ratio spreads by ±15% (p25 to p75)
		// around a target 5% from 1: the median's 95% confidence interval is
		// then about ±0.03 wide (measured), √2 times that at 120.
		s = sizes{mode: mode, n: 100, exec: 3, mem: 50, burst: 500, rawBurstFor: 10 * time.Minute, r: 240, phases: 30, traced: 20, execTrue: true, settle: 5 * time.Second, quiet: 90 * time.Second, pause: 2 * time.Second, warm: true}
	case "smoke":
		s = sizes{mode: mode, n: 3, exec: 1, mem: 3, burst: 3, rawBurstFor: 30 * time.Second, r: 3, phases: 3, traced: 3, execTrue: false, settle: 500 * time.Millisecond}
	default:
		t.Fatalf("BWRAP_R_BENCH=%q: want full or smoke", mode)
	}
	for env, p := range map[string]*int{
		"BWRAP_R_BENCH_N":     &s.n,
		"BWRAP_R_BENCH_EXEC":  &s.exec,
		"BWRAP_R_BENCH_MEM":   &s.mem,
		"BWRAP_R_BENCH_BURST": &s.burst,
		"BWRAP_R_BENCH_R":     &s.r,
	} {
		if v := os.Getenv(env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				t.Fatalf("%s=%q: want a count", env, v)
			}
			*p = n
		}
	}
	return s
}

func TestBench(t *testing.T) {
	mode := os.Getenv("BWRAP_R_BENCH")
	if mode == "" {
		t.Skip("a benchmark: set BWRAP_R_BENCH=full (writes BENCHMARKS.md) or BWRAP_R_BENCH=smoke")
	}
	sz := sizesFor(t, mode)
	if os.Getuid() != 0 {
		t.Fatal("the bench needs root: bwrap-r's launcher, raw_exec and exec all start tasks as root")
	}
	began := time.Now()
	rep := &report{sizes: sz, machine: readMachine(), began: began, bursts: map[string]*burstResult{}, initTop: map[string][]string{}}
	e := newEnv(t, rep)
	defer e.close()

	stopSampling := rep.sampleLoad(time.Second)
	step := func(name string, f func()) {
		calm := quiesce(sz.quiet)
		t0 := time.Now()
		st := stepLoad{name: name, calm: calm, loadStart: loadavg()}
		fmt.Printf("bench: %s (load %s) ...\n", name, st.loadStart)
		f()
		st.loadEnd = loadavg()
		rep.steps = append(rep.steps, st)
		fmt.Printf("bench: %s done in %v (load %s)\n", name, time.Since(t0).Round(time.Millisecond), st.loadEnd)
	}
	// The burst last: it leaves the node busy (namespaces, cgroups and mounts
	// of 1000 tasks being torn down) for a while.
	step(stepStart, e.startToRunning)
	step(stepTrue, e.startAndWait)
	step(stepR, e.rStartup)
	step("helper memory of idle tasks", e.idleMemory)
	step("concurrent tasks", e.burst)

	e.destroyAll()
	if left := e.leftovers(15 * time.Second); len(left) > 0 {
		rep.errorf("processes left behind: %v", left)
	}
	if left := mountsLeft(e.base); len(left) > 0 {
		rep.errorf("mounts left behind: %v", left)
	}
	rep.elapsed = time.Since(began)
	rep.loadEnd = loadavg()
	stopSampling()
	md := rep.markdown()
	fmt.Println(md)
	for _, msg := range rep.errors {
		t.Error(msg)
	}
	if sz.mode == "full" {
		root, err := filepath.Abs("..")
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(root, "BENCHMARKS.md")
		if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("bench: wrote %s\n", path)
	}
}
