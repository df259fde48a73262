// Package nodeload tells the benchmarks when the node is calm enough to
// measure on: a start measured right after another workload's burst pays for
// that burst's teardown.
package nodeload

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Procs reads procs_running and procs_blocked from /proc/stat.
func Procs() (running, blocked int) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		n, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "procs_running":
			running = n
		case "procs_blocked":
			blocked = n
		}
	}
	return running, blocked
}

// Calm waits, at most max, until the node has had no more runnable processes
// than cores and none blocked for a second, and says whether it did.
func Calm(max time.Duration) bool {
	if max <= 0 {
		return true
	}
	deadline := time.Now().Add(max)
	calm := 0
	for calm < 5 && time.Now().Before(deadline) {
		running, blocked := Procs()
		if running <= runtime.NumCPU() && blocked == 0 {
			calm++
		} else {
			calm = 0
		}
		time.Sleep(200 * time.Millisecond)
	}
	return calm >= 5
}
