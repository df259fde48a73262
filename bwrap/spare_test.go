package bwrap

import (
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testShim is the Shim argv of the launches these tests make.
func testShim() []string { return []string{os.Args[0], ShimCommand} }

// describeFDs is a shell script, run by the shim as nobody in bwrap's place,
// that prints what it was given: its descriptors, its session and process
// group, the signals blocked and ignored (of grep, which inherits them:
// dash blocks every signal for a moment while it waits for a child), stdin and descriptor 5's content.
const describeFDs = `printf 'fds '; for fd in 0 1 2 3 4 5 6 7 8 9 10 11 12; do [ -e /proc/self/fd/$fd ] && printf '%s ' $fd; done; echo
echo ids $(id -u) $(id -g)
echo sid $(cut -d' ' -f6 /proc/$$/stat) pid $$
grep -E '^Sig(Blk|Ign)' /proc/self/status
echo stdin $(cat)
echo five $(cat <&5)`

// launchDescribe starts, through startShim, the shim with describeFDs in
// bwrap's place and files 0, 1 (a pipe, read here), 2, 4, 5 (holding
// "argv-five") and 7 to extra+6; it returns the launcher and the output.
// bwrap is the launch's (Launch.Bwrap), for its spare: "" has the spare be
// this binary exec'd; bwrap's path, bwrap with the launcher preloaded.
func launchDescribe(t *testing.T, extra int, bwrap string) (*exec.Cmd, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the shim starts as root")
	}
	uid, gid := nobody(t)
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdinR.Close()
	stdinW.WriteString("from-stdin")
	stdinW.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	status, err := os.CreateTemp(t.TempDir(), "status")
	if err != nil {
		t.Fatal(err)
	}
	defer status.Close()
	five, err := memfd("five", []byte("argv-five"))
	if err != nil {
		t.Fatal(err)
	}
	defer five.Close()
	files := []*os.File{stdinR, outW, outW, nil, status, five, nil}
	for k := 0; k < extra; k++ {
		f, err := os.Open("/dev/null")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
	}
	args := []string{"-uid", itoa(int(uid)), "-gid", itoa(int(gid)), "--", "/bin/sh", "-c", describeFDs}
	cmd, err := startShim(testShim(), bwrap, args, files)
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(outR)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("launcher: %v; said %q", err, b)
	}
	return cmd, string(b)
}

// checkDescribed checks launchDescribe's output: only stdio, 4 and 5 (the
// shim keeps up to 6 for bwrap; 6 was not given), nobody, a session of its
// own, no signal blocked, and no signal ignored that a child exec'd from
// here would not ignore.
func checkDescribed(t *testing.T, out string) {
	t.Helper()
	// What a child exec'd from here gets: ignored signals stay ignored
	// across exec, so the test's own starter decides those.
	ref, err := exec.Command("/bin/sh", "-c", "grep -E '^Sig(Blk|Ign)' /proc/self/status").Output()
	if err != nil {
		t.Fatal(err)
	}
	wants := []string{"fds 0 1 2 4 5 \n", "stdin from-stdin\n", "five argv-five\n", "SigBlk:\t0000000000000000\n"}
	for _, line := range strings.SplitAfter(string(ref), "\n") {
		if line != "" {
			wants = append(wants, line)
		}
	}
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("launcher gave its command\n%s\nwant a line %q", out, want)
		}
	}
	uid, gid := nobody(t)
	if !strings.Contains(out, "ids "+itoa(int(uid))+" "+itoa(int(gid))+"\n") {
		t.Errorf("not run as %d:%d:\n%s", uid, gid, out)
	}
	var sid, pid int
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "sid ") {
			f := strings.Fields(line)
			sid, _ = strconv.Atoi(f[1])
			pid, _ = strconv.Atoi(f[3])
		}
	}
	if sid == 0 || sid != pid {
		t.Errorf("session %d, want its own (%d):\n%s", sid, pid, out)
	}
}

// waitSpare waits until a spare launcher for shim is idle and returns its pid.
func waitSpare(t *testing.T, shim []string) int {
	t.Helper()
	return waitSpareOf(t, shim, "")
}

// waitSpareOf is waitSpare for a launch's spare of shim and bwrap.
func waitSpareOf(t *testing.T, shim []string, bwrap string) int {
	t.Helper()
	refillSpare(shim, bwrap, nil)
	return readySpare(t, shim, bwrap).cmd.Process.Pid
}

// readySpare waits until the idle spare of shim and bwrap (one on its way
// already) waits for its request: its loader is done by then (a preloaded
// spare has mapped the launcher object, which it does after the exec's
// return), and so are its copies ahead.
func readySpare(t *testing.T, shim []string, bwrap string) *launcher {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		spares.Lock()
		ln := spares.idle[spareKey(shim, bwrap)]
		spares.Unlock()
		if ln != nil {
			b, _ := os.ReadFile("/proc/" + itoa(ln.cmd.Process.Pid) + "/syscall")
			if f := strings.Fields(string(b)); len(f) > 0 && f[0] == strconv.Itoa(unix.SYS_RECVMSG) {
				return ln
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatal("no spare launcher came")
	return nil
}

// A launch takes the spare started after the one before, and the command gets
// what it would by exec: its descriptors at their numbers and no others, a
// session of its own, no signal blocked, the same ignored.
func TestLaunchTakesTheSpare(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the shim starts as root")
	}
	spare := waitSpare(t, testShim())
	cmd, out := launchDescribe(t, 0, "")
	if cmd.Process.Pid != spare {
		t.Errorf("launched as pid %d, want the spare, %d", cmd.Process.Pid, spare)
	}
	checkDescribed(t, out)
	// And the next spare is on its way.
	if next := waitSpare(t, testShim()); next == spare {
		t.Errorf("the spare %d is still idle after its launch", spare)
	}
}

// A spare that runs bwrap with the launcher preloaded, given a request whose
// "bwrap" is another binary, execs that binary as an exec'd spare would:
// the command gets the same descriptors, IDs, session and signals.
func TestPreloadedSpareExecsAnotherBinary(t *testing.T) {
	needPreload(t)
	bw := needSandbox(t)
	spare := waitSpareOf(t, testShim(), bw)
	if b, _ := os.ReadFile("/proc/" + itoa(spare) + "/maps"); !strings.Contains(string(b), "memfd:bwrap-r-launcher") {
		t.Fatalf("the spare %d does not map the launcher object", spare)
	}
	cmd, out := launchDescribe(t, 0, bw)
	if cmd.Process.Pid != spare {
		t.Errorf("launched as pid %d, want the spare, %d", cmd.Process.Pid, spare)
	}
	checkDescribed(t, out)
}

// A launch with more descriptors than a request carries goes by exec, and
// its command gets the same.
func TestLaunchWithManyDescriptorsExecs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the shim starts as root")
	}
	spare := waitSpare(t, testShim())
	cmd, out := launchDescribe(t, maxRequestFDs, "")
	if cmd.Process.Pid == spare {
		t.Errorf("the spare took a request of %d descriptors", maxRequestFDs+5)
	}
	checkDescribed(t, out)
}

// A spare that died while it waited is not the end of a launch.
func TestLaunchAfterTheSpareDied(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the shim starts as root")
	}
	spare := waitSpare(t, testShim())
	syscall.Kill(spare, syscall.SIGKILL)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, err := readStat(spare); err != nil || st.state == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the spare did not die")
		}
		time.Sleep(time.Millisecond)
	}
	cmd, out := launchDescribe(t, 0, "")
	if cmd.Process.Pid == spare {
		t.Fatal("launched as the dead spare")
	}
	checkDescribed(t, out)
}

// rawRequest sends a launcher of its own header and descriptors as given
// (the argv file last; -2 stands for the pipe read back, -3 for a second
// one, the report's), and
// returns how it exited, what it wrote on the first (its stderr until it
// places the request's descriptors) and what on the second.
func rawRequest(t *testing.T, header []byte, fds []int, closeOnly bool) (int, string) {
	code, stderr, _ := rawRequestReport(t, header, fds, closeOnly)
	return code, stderr
}

func rawRequestReport(t *testing.T, header []byte, fds []int, closeOnly bool) (int, string, string) {
	t.Helper()
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer errR.Close()
	infoR, infoW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer infoR.Close()
	sock, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	theirs := os.NewFile(uintptr(sock[1]), "request")
	cmd := exec.Command(os.Args[0], ShimCommand, "-request")
	cmd.Env = []string{}
	cmd.Stderr = errW
	cmd.ExtraFiles = []*os.File{theirs}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	for k := range fds {
		if fds[k] == -2 {
			fds[k] = int(errW.Fd())
		}
		if fds[k] == -3 {
			fds[k] = int(infoW.Fd())
		}
	}
	if !closeOnly {
		if err := unix.Sendmsg(sock[0], header, unix.UnixRights(fds...), nil, unix.MSG_NOSIGNAL); err != nil {
			t.Fatal(err)
		}
	}
	unix.Close(sock[0])
	errW.Close()
	infoW.Close()
	b, _ := io.ReadAll(errR)
	info, _ := io.ReadAll(infoR)
	cmd.Wait()
	return cmd.ProcessState.ExitCode(), string(b), string(info)
}

func request32(v ...uint32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.NativeEndian.AppendUint32(b, x)
	}
	return b
}

// A launcher ends, having run nothing, on a request it cannot trust whole,
// and at once when the plugin lets it go.
func TestLauncherRefusesMalformedRequests(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the shim starts as root")
	}
	argv := func(s string) int {
		f, err := memfd("argv", []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return int(f.Fd())
	}
	null, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	nf := int(null.Fd())
	// What would run were it accepted: a shim as nobody that execs echo.
	ok := "-uid\x0065534\x00-gid\x0065534\x00--\x00/bin/echo\x00RAN\x00"
	if code, stderr := rawRequest(t, request32(3, 0, 1, 2), []int{nf, -2, -2, argv(ok)}, false); code != 0 || stderr != "RAN\n" {
		t.Fatalf("a well-formed request: exit %d, stderr %q; want it to run echo (as a check of this test)", code, stderr)
	}
	for _, c := range []struct {
		name   string
		header []byte
		fds    []int
		want   string
	}{
		{"count above the descriptors", request32(3, 0, 1, 2), []int{nf, nf, argv(ok)}, "malformed"},
		{"count below the descriptors", request32(1, 2), []int{nf, nf, argv(ok)}, "malformed"},
		{"short header", []byte{1, 0}, []int{nf, argv(ok)}, "malformed"},
		{"no descriptors", request32(0), []int{argv(ok)}, "malformed"},
		{"targets out of order", request32(2, 2, 1), []int{nf, nf, argv(ok)}, "out of order"},
		{"target repeated", request32(2, 2, 2), []int{nf, nf, argv(ok)}, "out of order"},
		{"target too high", request32(1, 70000), []int{nf, argv(ok)}, "out of order"},
		{"negative target", request32(1, 0xffffffff), []int{nf, argv(ok)}, "out of order"},
		{"argv without its last NUL", request32(1, 2), []int{nf, argv(strings.TrimSuffix(ok, "\x00"))}, "NUL-terminated"},
		{"empty argv", request32(1, 2), []int{nf, argv("")}, "size"},
		{"argv not a file", request32(1, 2), []int{nf, nf}, "argv"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stderr := rawRequest(t, c.header, c.fds, false)
			if code != 125 || strings.Contains(stderr, "RAN") || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want 125 and %q, nothing run", code, stderr, c.want)
			}
		})
	}
	if code, stderr := rawRequest(t, nil, nil, true); code != 0 || stderr != "" {
		t.Errorf("let go: exit %d, stderr %q; want 0 and nothing said", code, stderr)
	}
	// Once the request names its report descriptor (3), a failure is
	// reported there, as the shim's own are, for the plugin to tell Nomad.
	code, _, info := rawRequestReport(t, request32(2, 2, 3), []int{nf, -3, argv(strings.TrimSuffix(ok, "\x00"))}, false)
	var msg map[string]string
	if err := json.Unmarshal([]byte(info), &msg); code != 125 || err != nil || !strings.Contains(msg["shim-error"], "NUL-terminated") {
		t.Errorf("exit %d, report %q; want 125 and the failure as JSON", code, info)
	}
}

func TestStartWantsTheShimCommandLast(t *testing.T) {
	_, err := Start(Launch{Bwrap: "/usr/bin/bwrap", Shim: []string{os.Args[0], ShimCommand, "-cgroup", "/x"}, Spec: &Spec{}, StatusPath: "/nonexistent/status"})
	if err == nil || !strings.Contains(err.Error(), "does not end with "+ShimCommand) {
		t.Errorf("Start with a Shim of its own flags: %v", err)
	}
}
