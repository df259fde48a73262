package syscallfilter

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// loadChildEnv makes the test binary a child that drops root, loads the
// filter while other goroutines keep the scheduler busy, and reports.
const loadChildEnv = "BWRAP_R_TEST_LOAD_CHILD"

const loadRepeats = 100

func TestMain(m *testing.M) {
	if os.Getenv(loadChildEnv) != "" {
		loadChild()
	}
	if mode := os.Getenv(probeChildEnv); mode != "" {
		probeChild(mode)
	}
	os.Exit(m.Run())
}

func loadChild() {
	// Without privilege, seccomp needs no_new_privs on the calling thread.
	if err := syscall.Setgid(65534); err != nil {
		fmt.Println("setgid:", err)
		os.Exit(2)
	}
	if err := syscall.Setuid(65534); err != nil {
		fmt.Println("setuid:", err)
		os.Exit(2)
	}
	// Garbage and system calls on other goroutines give the scheduler
	// reasons to move this goroutine between threads.
	var stop atomic.Bool
	var sink atomic.Pointer[[]byte]
	for i := 0; i < 8; i++ {
		go func() {
			for !stop.Load() {
				b := make([]byte, 64<<10)
				sink.Store(&b)
				syscall.Getpid()
				runtime.Gosched()
			}
		}()
	}
	// Filters stack; each load is another chance to be moved between the
	// two calls. The kernel caps the stack's total length.
	for i := 0; i < loadRepeats; i++ {
		if err := Load(); err != nil {
			stop.Store(true)
			fmt.Printf("load %d: %v\n", i, err)
			os.Exit(1)
		}
	}
	stop.Store(true)
	// Every thread must now refuse a new user namespace.
	_, _, errno := unix.Syscall(unix.SYS_UNSHARE, unix.CLONE_NEWUSER, 0, 0)
	fmt.Println("unshare:", errno)
	os.Exit(0)
}

// Load must work for an unprivileged caller whatever thread the Go
// scheduler runs it on, and must leave the filter in force.
func TestLoadUnprivilegedUnderLoad(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to drop to an unprivileged user")
	}
	runs := 100
	if testing.Short() {
		runs = 10
	}
	for i := 0; i < runs; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), loadChildEnv+"=1", "GOMAXPROCS=2")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("run %d: %v: %s", i, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != "unshare: operation not permitted" {
			t.Fatalf("run %d: %q, want unshare refused with EPERM", i, got)
		}
	}
}
