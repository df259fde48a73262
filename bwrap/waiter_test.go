package bwrap

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// osThreads is this process's thread count.
func osThreads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads: line in /proc/self/status")
	return 0
}

// A running sandbox's waiter holds no OS thread of the plugin: a node's
// plugin with a thousand tasks would otherwise keep a thousand threads,
// each blocked in waitid for its task's whole life.
func TestRunningSandboxesHoldNoThread(t *testing.T) {
	uid, gid := nobody(t)
	// The threads a start itself needs are made before counting.
	warm := startBox(t, uid, gid, NetworkShared, "/bin/true")
	if !warm.Wait(10 * time.Second) {
		t.Fatal("sandbox did not end")
	}
	before := osThreads(t)
	const n = 12
	var boxes []*testBox
	for i := 0; i < n; i++ {
		boxes = append(boxes, startBox(t, uid, gid, NetworkShared, "/bin/sleep", "60"))
	}
	// A waiter blocked in a system call shows at once; give each time to
	// get there.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if grown := osThreads(t) - before; grown >= n/2 {
			t.Fatalf("%d sandboxes running: this process has %d more threads (want fewer than %d)", n, grown, n/2)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Each is still waited for: its end is seen, with its status.
	for _, b := range boxes {
		if err := b.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for i, b := range boxes {
		if !b.Wait(10 * time.Second) {
			t.Fatalf("sandbox %d: its end was not seen", i)
		}
		if st := b.Status(); st.Code != 128+int(syscall.SIGTERM) || st.Signal != int(syscall.SIGTERM) {
			t.Fatalf("sandbox %d: status %+v, want the command's SIGTERM", i, st)
		}
	}
}
