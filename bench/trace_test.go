//go:build bench

package bench

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The kernel's tracer (ftrace): syscall and process events of one launch and
// everything it starts, at a cost of about a microsecond an event, where
// strace would add tens of microseconds to every syscall.
const tracefs = "/sys/kernel/tracing"

// tracePhases are the parts of a launch the trace tells apart, in order.
var tracePhases = []string{
	"Go: the launch's preparation (bind sources opened, memfds, status file), then the request to the spare launcher (in the reference columns, fork+exec of the shim)",
	"shim (C, before the Go runtime): cgroups joined, the launch's root built (host paths cloned, sources staged, the sandbox's root assembled) in a copy of the template mount namespace, drop to the task's UID",
	"  of which the slowest single write (the first cgroup join)",
	"bwrap's parent: its own start, clone of the sandbox's pid 1",
	"sandbox's pid 1: the sandbox's mounts, fork+exec of the command",
	"  of which reading /proc/self/mountinfo (bwrap parses it for every bind and remount)",
	"the command (`/bin/true`): exec to exit",
	"pid 1 and bwrap's monitor exit (the sandbox torn down)",
	"Go: the monitor's exit seen, the exit status read",
	"total",
	"  of which before bwrap.Start's call (the task's cgroup dirs made: StartTask's work, counted in the first row)",
	"  of which after the exit status was read (cgroup dirs and status file removed: DestroyTask's work, counted in the row before the total)",
}

// The launch's own marks, between the tracer's "launch start" and "launch
// done".
const (
	traceStartCall  = "bench: bwrap.Start called"
	traceStatusRead = "bench: exit status read"
)

// tracer is the kernel's tracer set up to follow one thread and what it
// starts; stop puts everything back as it was.
type tracer struct {
	unmount bool
	saved   map[string]string
}

func tracefsFile(name string) string { return filepath.Join(tracefs, name) }

func startTracer() (*tracer, error) {
	tr := &tracer{saved: map[string]string{}}
	if _, err := os.Stat(tracefsFile("trace_marker")); err != nil {
		if err := unix.Mount("nodev", tracefs, "tracefs", 0, ""); err != nil {
			return nil, fmt.Errorf("mounting tracefs: %w", err)
		}
		tr.unmount = true
	}
	for _, f := range []string{"tracing_on", "trace_clock", "buffer_size_kb", "options/event-fork"} {
		b, err := os.ReadFile(tracefsFile(f))
		if err != nil {
			tr.stop()
			return nil, err
		}
		v := strings.TrimSpace(string(b))
		if f == "trace_clock" {
			// "[local] global ...": the one in brackets is in use.
			if i, j := strings.Index(v, "["), strings.Index(v, "]"); i >= 0 && j > i {
				v = v[i+1 : j]
			}
		}
		tr.saved[f] = v
	}
	for _, s := range [][2]string{
		{"tracing_on", "0"}, {"trace", ""}, {"trace_clock", "mono"}, {"buffer_size_kb", "8192"},
		{"options/event-fork", "1"}, {"set_event", ""},
	} {
		if err := os.WriteFile(tracefsFile(s[0]), []byte(s[1]), 0); err != nil {
			tr.stop()
			return nil, fmt.Errorf("tracefs %s: %w", s[0], err)
		}
	}
	for _, ev := range []string{"raw_syscalls:sys_enter", "raw_syscalls:sys_exit", "sched:sched_process_fork", "sched:sched_process_exec", "sched:sched_process_exit"} {
		if err := appendFile(tracefsFile("set_event"), ev); err != nil {
			tr.stop()
			return nil, fmt.Errorf("tracefs event %s: %w", ev, err)
		}
	}
	return tr, nil
}

func appendFile(path, line string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(line + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// follow traces the calling thread (locked to it by the caller) and every
// process it starts from now on.
func (tr *tracer) follow() error {
	if err := os.WriteFile(tracefsFile("set_event_pid"), []byte(strconv.Itoa(unix.Gettid())), 0); err != nil {
		return err
	}
	return os.WriteFile(tracefsFile("tracing_on"), []byte("1"), 0)
}

// followSpares traces, too, the spare launchers waiting in this process
// (children whose argv has "_shim -request", then the files it copies
// ahead): the launch to come takes one, which a goroutine of the plugin
// started on some other thread.
func (tr *tracer) followSpares() error {
	// Children of every thread: the spare's parent is whichever thread forked it.
	tids, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	var kids []int
	for _, tid := range tids {
		b, _ := os.ReadFile(filepath.Join("/proc/self/task", tid.Name(), "children"))
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				kids = append(kids, n)
			}
		}
	}
	for _, pid := range kids {
		if isSpare(readArgv(pid)) {
			if err := appendFile(tracefsFile("set_event_pid"), strconv.Itoa(pid)); err != nil {
				return err
			}
		}
	}
	return nil
}

// isSpare reports whether argv is a spare launcher's: "_shim -request"
// after the binary, then SOURCE PATH pairs.
func isSpare(argv []string) bool {
	return len(argv) >= 3 && argv[1] == "_shim" && argv[2] == "-request" && len(argv)%2 == 1
}

func (tr *tracer) mark(s string) { _ = os.WriteFile(tracefsFile("trace_marker"), []byte(s), 0) }

// read stops tracing and returns the trace.
func (tr *tracer) read() ([]byte, error) {
	_ = os.WriteFile(tracefsFile("tracing_on"), []byte("0"), 0)
	return os.ReadFile(tracefsFile("trace"))
}

func (tr *tracer) stop() {
	_ = os.WriteFile(tracefsFile("tracing_on"), []byte("0"), 0)
	_ = os.WriteFile(tracefsFile("set_event"), []byte(""), 0)
	_ = os.WriteFile(tracefsFile("set_event_pid"), []byte(""), 0)
	_ = os.WriteFile(tracefsFile("trace"), []byte(""), 0)
	for f, v := range tr.saved {
		if f != "tracing_on" {
			_ = os.WriteFile(tracefsFile(f), []byte(v), 0)
		}
	}
	_ = os.WriteFile(tracefsFile("tracing_on"), []byte(tr.saved["tracing_on"]), 0)
	if tr.unmount {
		_ = unix.Unmount(tracefs, 0)
	}
}

// traceLaunches runs launch n times, each after a pause of gap, with the
// tracer following it, and returns each launch's phases (ms, by
// tracePhases). launch runs on the thread the tracer follows, and marks the
// trace with traceStartCall and traceStatusRead.
func traceLaunches(n int, gap time.Duration, launch func(mark func(string)) error) ([]map[string]float64, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tr, err := startTracer()
	if err != nil {
		return nil, err
	}
	defer tr.stop()
	if err := tr.follow(); err != nil {
		return nil, err
	}
	for i := 0; i < n; i++ {
		time.Sleep(gap)
		if err := tr.followSpares(); err != nil {
			return nil, err
		}
		tr.mark("bench: launch start")
		err := launch(tr.mark)
		tr.mark("bench: launch done")
		if err != nil {
			return nil, err
		}
	}
	b, err := tr.read()
	if err != nil {
		return nil, err
	}
	return parseTrace(b, filepath.Base(mustExecutable()))
}

func mustExecutable() string {
	p, _ := os.Executable()
	return p
}

// traceLine is one event: task name, pid, time (ms), event, what follows.
var traceLine = regexp.MustCompile(`^\s*(.+?)-(\d+)\s+\[\d+\]\s+\S+\s+([\d.]+):\s+(\S+):\s*(.*)$`)

type traceEvent struct {
	pid  int
	t    float64
	name string
	rest string
}

type syscallSpan struct {
	pid        int
	nr         int
	start, end float64
	// count is the third argument (a read's or write's byte count).
	count int64
}

const (
	sysRead  = 0
	sysWrite = 1
	// unix.SYS_GETUID on amd64, the one architecture traced.
	sysGetuid = 102
)

var (
	reNR       = regexp.MustCompile(`NR (\d+) \(([0-9a-f]+), ([0-9a-f]+), ([0-9a-f]+)`)
	reFilename = regexp.MustCompile(`filename=(\S+)`)
	reChild    = regexp.MustCompile(`child_pid=(\d+)`)
)

// parseTrace splits the trace at the launch markers and measures each
// launch's phases. shimBinary is the name of the binary the shim runs in.
func parseTrace(b []byte, shimBinary string) ([]map[string]float64, error) {
	type launch struct {
		t0, done float64
		// startCall and statusRead: the launch's own marks (0: none).
		startCall, statusRead float64
		events                []traceEvent
		calls                 []syscallSpan
		// firstExit is each process's first syscall return in the launch:
		// for a spare launcher, its request received.
		firstExit map[int]float64
	}
	var all []*launch
	var cur *launch
	type entered struct {
		t     float64
		nr    int
		count int64
	}
	open := map[int]entered{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := traceLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[2])
		t, _ := strconv.ParseFloat(m[3], 64)
		t *= 1000
		ev, rest := m[4], m[5]
		switch {
		case ev == "tracing_mark_write" && strings.Contains(rest, "launch start"):
			cur = &launch{t0: t, firstExit: map[int]float64{}}
			all = append(all, cur)
		case ev == "tracing_mark_write" && cur != nil && strings.Contains(rest, traceStartCall):
			cur.startCall = t
		case ev == "tracing_mark_write" && cur != nil && strings.Contains(rest, traceStatusRead):
			cur.statusRead = t
		case ev == "tracing_mark_write" && strings.Contains(rest, "launch done"):
			if cur != nil {
				cur.done = t
			}
			cur = nil
		case cur == nil:
		case ev == "sys_enter":
			if n := reNR.FindStringSubmatch(rest); n != nil {
				nr, _ := strconv.Atoi(n[1])
				count, _ := strconv.ParseInt(n[4], 16, 64)
				open[pid] = entered{t, nr, count}
			}
		case ev == "sys_exit":
			if _, seen := cur.firstExit[pid]; !seen {
				cur.firstExit[pid] = t
			}
			if o, ok := open[pid]; ok {
				delete(open, pid)
				cur.calls = append(cur.calls, syscallSpan{pid: pid, nr: o.nr, start: o.t, end: t, count: o.count})
			}
		case strings.HasPrefix(ev, "sched_process_"):
			cur.events = append(cur.events, traceEvent{pid: pid, t: t, name: ev, rest: rest})
		}
	}
	var out []map[string]float64
	for _, l := range all {
		if l.done == 0 {
			continue
		}
		execAt := map[int][]traceEvent{}
		exitAt := map[int]float64{}
		children := map[int][]int{}
		forkAt := map[int]float64{}
		var monitor int
		var bwrapT float64
		for _, e := range l.events {
			switch e.name {
			case "sched_process_exec":
				execAt[e.pid] = append(execAt[e.pid], e)
				// The launcher is the process that execs bwrap: spare
				// (started before the launch) or exec'd for it.
				if f := reFilename.FindStringSubmatch(e.rest); f != nil && monitor == 0 && filepath.Base(f[1]) == "bwrap" {
					monitor, bwrapT = e.pid, e.t
				}
			case "sched_process_fork":
				if c := reChild.FindStringSubmatch(e.rest); c != nil {
					child, _ := strconv.Atoi(c[1])
					children[e.pid] = append(children[e.pid], child)
					forkAt[child] = e.t
				}
			case "sched_process_exit":
				exitAt[e.pid] = e.t
			}
		}
		if monitor == 0 {
			// A spare with the launcher preloaded runs bwrap already: its
			// main starts with getuid (the shim never calls it after the
			// request), in the process that then forks the sandbox.
			for _, c := range l.calls {
				if first, ok := l.firstExit[c.pid]; ok && c.nr == sysGetuid && c.start > first && len(children[c.pid]) > 0 {
					monitor, bwrapT = c.pid, c.start
					break
				}
			}
		}
		if monitor == 0 || len(children[monitor]) == 0 {
			continue
		}
		shim := monitor
		shimT, ok := l.firstExit[shim]
		for _, e := range execAt[shim] {
			if f := reFilename.FindStringSubmatch(e.rest); f != nil && filepath.Base(f[1]) == shimBinary {
				shimT, ok = e.t, true
				break
			}
		}
		if !ok || shimT > bwrapT {
			continue
		}
		pid1 := children[monitor][0]
		if len(children[pid1]) == 0 {
			continue
		}
		command := children[pid1][0]
		if len(execAt[command]) == 0 {
			continue
		}
		cmdExec := execAt[command][0].t
		var slowestWrite, mountinfo float64
		for _, c := range l.calls {
			if c.pid == shim && c.nr == sysWrite && c.start < bwrapT {
				slowestWrite = max(slowestWrite, c.end-c.start)
			}
			// Not the 8-byte reads of bwrap's eventfds (pid 1 waiting for its
			// parent).
			if c.pid == pid1 && c.nr == sysRead && c.count != 8 && c.start < cmdExec {
				mountinfo += c.end - c.start
			}
		}
		p := map[string]float64{
			tracePhases[0]: shimT - l.t0,
			tracePhases[1]: bwrapT - shimT,
			tracePhases[2]: slowestWrite,
			tracePhases[3]: forkAt[pid1] - bwrapT,
			tracePhases[4]: cmdExec - forkAt[pid1],
			tracePhases[5]: mountinfo,
			tracePhases[6]: exitAt[command] - cmdExec,
			tracePhases[7]: exitAt[monitor] - exitAt[command],
			tracePhases[8]: l.done - exitAt[monitor],
			tracePhases[9]: l.done - l.t0,
		}
		if l.startCall > 0 && l.statusRead > 0 {
			p[tracePhases[10]] = l.startCall - l.t0
			p[tracePhases[11]] = l.done - l.statusRead
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, errors.New("no launch could be followed in the trace")
	}
	return out, nil
}
