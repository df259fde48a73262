//go:build bench

package bench

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

// syntheticTrace is one launch as the tracer writes it: the spare launcher
// (pid 200) wakes from its request, builds the root, execs bwrap (the
// monitor), which clones pid 1 (201), which reads the mount table and forks
// the command (202). shimExec, when set, adds the exec of the shim's binary
// by pid 200 at that time (a launch that went by exec); preloaded has the
// spare run bwrap already, whose main starts with its getuid there instead
// of an exec.
func syntheticTrace(shimExec string, preloaded bool) string {
	ev := func(comm string, pid int, ts, event, rest string) string {
		return fmt.Sprintf("%16s-%-7d [001] .....  %s: %s: %s\n", comm, pid, ts, event, rest)
	}
	var b strings.Builder
	b.WriteString("# tracer: nop\n")
	b.WriteString(ev("bench.test", 100, "1000.000000", "tracing_mark_write", "bench: launch start"))
	b.WriteString(ev("bench.test", 100, "1000.000100", "tracing_mark_write", traceStartCall))
	if shimExec != "" {
		b.WriteString(ev("bench.test", 200, shimExec, "sched_process_exec", "filename=/work/bench.test pid=200 old_pid=200"))
	}
	// The spare's first return in the launch: its recvmsg.
	b.WriteString(ev("bench.test", 200, "1000.001000", "sys_exit", "NR 47 = 32"))
	b.WriteString(ev("bench.test", 200, "1000.001500", "sys_enter", "NR 1 (5, 7ffd0000, 1)"))
	b.WriteString(ev("bench.test", 200, "1000.001800", "sys_exit", "NR 1 = 1"))
	if preloaded {
		b.WriteString(ev("bwrap", 200, "1000.003000", "sys_enter", "NR 102 (0, 0, 0)"))
		b.WriteString(ev("bwrap", 200, "1000.003010", "sys_exit", "NR 102 = 65534"))
	} else {
		b.WriteString(ev("bwrap", 200, "1000.003000", "sched_process_exec", "filename=/usr/bin/bwrap pid=200 old_pid=200"))
	}
	b.WriteString(ev("bwrap", 200, "1000.004000", "sched_process_fork", "comm=bwrap pid=200 child_comm=bwrap child_pid=201"))
	b.WriteString(ev("bwrap", 201, "1000.004500", "sys_enter", "NR 0 (3, 7ffd0000, 400)"))
	b.WriteString(ev("bwrap", 201, "1000.004600", "sys_exit", "NR 0 = 1024"))
	// An 8-byte read (an eventfd) is not the mount table.
	b.WriteString(ev("bwrap", 201, "1000.004700", "sys_enter", "NR 0 (4, 7ffd0000, 8)"))
	b.WriteString(ev("bwrap", 201, "1000.004900", "sys_exit", "NR 0 = 8"))
	b.WriteString(ev("bwrap", 201, "1000.005000", "sched_process_fork", "comm=bwrap pid=201 child_comm=bwrap child_pid=202"))
	b.WriteString(ev("true", 202, "1000.006000", "sched_process_exec", "filename=/bin/true pid=202 old_pid=202"))
	b.WriteString(ev("true", 202, "1000.007000", "sched_process_exit", "comm=true pid=202 prio=120"))
	b.WriteString(ev("bwrap", 200, "1000.007500", "sched_process_exit", "comm=bwrap pid=200 prio=120"))
	b.WriteString(ev("bench.test", 100, "1000.008000", "tracing_mark_write", traceStatusRead))
	b.WriteString(ev("bench.test", 100, "1000.008500", "tracing_mark_write", "bench: launch done"))
	return b.String()
}

// The trace's parts of a launch, from a spare launcher and from one exec'd
// for it.
func TestParseTrace(t *testing.T) {
	for _, c := range []struct {
		name      string
		shimExec  string
		preloaded bool
		shim      float64
	}{
		{"spare", "", false, 1.0},
		{"preloaded spare", "", true, 1.0},
		{"exec'd", "1000.000800", false, 0.8},
	} {
		t.Run(c.name, func(t *testing.T) {
			phases, err := parseTrace([]byte(syntheticTrace(c.shimExec, c.preloaded)), "bench.test")
			if err != nil || len(phases) != 1 {
				t.Fatalf("%v, %d launches", err, len(phases))
			}
			want := []float64{c.shim, 3.0 - c.shim, 0.3, 1.0, 2.0, 0.1, 1.0, 0.5, 1.0, 8.5, 0.1, 0.5}
			for i, k := range tracePhases {
				if got := phases[0][k]; math.Abs(got-want[i]) > 1e-6 {
					t.Errorf("%q: %.4f ms, want %.4f", k, got, want[i])
				}
			}
		})
	}
	// A launch whose launcher never execs bwrap is left out, not guessed at.
	broken := strings.ReplaceAll(syntheticTrace("", false), "filename=/usr/bin/bwrap", "filename=/usr/bin/other")
	if phases, err := parseTrace([]byte(broken), "bench.test"); err == nil {
		t.Errorf("a trace without bwrap's exec gave %v", phases)
	}
}

// A spare launcher is told apart by its argv, with or without the files it
// copies ahead.
func TestIsSpare(t *testing.T) {
	for _, c := range []struct {
		argv []string
		want bool
	}{
		{[]string{"/x/bwrap-r", "_shim", "-request"}, true},
		{[]string{"/x/bwrap-r", "_shim", "-request", "/etc/hosts", "etc/hosts"}, true},
		{[]string{"/x/bwrap-r", "_shim", "-request", "/etc/hosts"}, false},
		{[]string{"/x/bwrap-r", "_shim", "-uid", "1"}, false},
		{[]string{"/x/bwrap-r", "_shim", "-template", "/d"}, false},
	} {
		if got := isSpare(c.argv); got != c.want {
			t.Errorf("isSpare(%q) = %v, want %v", c.argv, got, c.want)
		}
	}
}
