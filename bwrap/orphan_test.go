package bwrap

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startHelperEnv makes the test binary a process that starts one sandbox
// (startHelper) and is killed while it waits for it.
const startHelperEnv = "BWRAP_R_TEST_START_HELPER"

// orphanUID runs the sandbox of TestStartOutlivesItsCaller: one no other
// process uses, so that what is left of a failure can be found and killed.
const orphanUID = 79991

// startHelper starts a sandbox whose launcher waits half a second before it
// runs (a shell in front of the shim), says so, and waits in Start.
func startHelper() {
	dir := os.Getenv(startHelperEnv)
	out, err := os.OpenFile(filepath.Join(dir, "out"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	bw := os.Getenv("BWRAP_R_TEST_BWRAP")
	// The template first, without the wait: the launch is what is timed.
	if _, err := templateNS([]string{os.Args[0], ShimCommand}, filepath.Join(dir, "stage")); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("launching")
	_, err = Start(Launch{
		Bwrap: bw,
		Shim:  []string{"/bin/sh", "-c", `sleep 0.5; exec "$0" "$@"`, os.Args[0], ShimCommand},
		Spec: &Spec{
			Command: "/bin/sh", Args: []string{"-c", "echo ran"},
			Env:    map[string]string{"PATH": "/usr/bin:/bin"},
			Mounts: SystemMounts(1 << 20),
			UID:    orphanUID, GID: orphanUID,
		},
		Stdout: out, Stderr: out, StatusPath: filepath.Join(dir, "status"), StageDir: filepath.Join(dir, "stage"),
	})
	fmt.Println("started", err)
	os.Exit(0)
}

// A sandbox whose caller died before bwrap reported it still runs its
// command to the end. bwrap's monitor once reported pid 1 on a pipe to the
// caller before letting pid 1 go on: with the caller gone, SIGPIPE killed
// the monitor there, and pid 1 waited for it for ever.
func TestStartOutlivesItsCaller(t *testing.T) {
	bw := needSandbox(t)
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Join(dir, "stage")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	outPath := filepath.Join(dir, "out")
	if err := os.WriteFile(outPath, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command("pkill", "-KILL", "-U", fmt.Sprint(orphanUID)).Run() })

	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = []string{startHelperEnv + "=" + dir, "BWRAP_R_TEST_BWRAP=" + bw}
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "launching\n" {
		helper.Process.Kill()
		t.Fatalf("helper said %q", line)
	}
	// Killed while the launcher still waits: bwrap starts with its caller gone.
	time.Sleep(100 * time.Millisecond)
	helper.Process.Signal(syscall.SIGKILL)
	helper.Wait()

	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(outPath); strings.Contains(string(b), "ran") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(outPath)
	ps, _ := exec.Command("pgrep", "-a", "-U", fmt.Sprint(orphanUID)).Output()
	t.Fatalf("the command never ran (output %q); left running as uid %d:\n%s", b, orphanUID, ps)
}
