package bwrap

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/bwrap-r/bwrap-r/internal/jobcontrol"
	"github.com/bwrap-r/bwrap-r/syscallfilter"
)

// sleepingBox is a sandbox whose command sleeps, for commands to enter.
func sleepingBox(t *testing.T) (*testBox, uint32, uint32) {
	t.Helper()
	uid, gid := nobody(t)
	b := startBox(t, uid, gid, NetworkShared, "/bin/sh", "-c", "echo up; exec sleep 600")
	waitFor(t, b, "up")
	return b, uid, gid
}

func testFilter(t *testing.T) []byte {
	t.Helper()
	f, err := syscallfilter.Program()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// enter runs command in b through the enter launcher and returns its
// combined output and exit status.
func enter(t *testing.T, b *testBox, e Enter) (string, *os.ProcessState) {
	t.Helper()
	if e.Launcher == nil {
		e.Launcher = []string{os.Args[0], EnterCommand}
	}
	if e.Seccomp == nil {
		e.Seccomp = testFilter(t)
	}
	cmd, err := b.EnterCmd(e)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Start()
	CloseFiles(cmd)
	if err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	return out.String(), cmd.ProcessState
}

func TestEnterRunsAsTheTaskUnderTheFilter(t *testing.T) {
	b, uid, gid := sleepingBox(t)
	out, ps := enter(t, b, Enter{
		UID: uid, GID: gid, Dir: "/local",
		Env:     map[string]string{"PATH": "/usr/bin:/bin", "MARK": "entered"},
		Command: []string{"sh", "-c", `id -u; id -g; id -G; echo "$MARK"; pwd; hostname; umask; grep -E '^(Seccomp|NoNewPrivs|CapInh|CapPrm|CapEff|CapBnd|CapAmb):' /proc/self/status; env | sort`},
	})
	if ps.ExitCode() != 0 {
		t.Fatalf("exit %d: %s", ps.ExitCode(), out)
	}
	want := []string{
		strconv.Itoa(int(uid)), strconv.Itoa(int(gid)), strconv.Itoa(int(gid)), "entered", "/local", "boxed", "0022",
		"CapInh:\t0000000000000000", "CapPrm:\t0000000000000000", "CapEff:\t0000000000000000",
		"CapBnd:\t0000000000000000", "CapAmb:\t0000000000000000",
		"NoNewPrivs:\t1", "Seccomp:\t2",
	}
	lines := strings.Split(out, "\n")
	for i, w := range want {
		if i >= len(lines) || lines[i] != w {
			t.Errorf("line %d: got %q, want %q\n%s", i, lines[min(i, len(lines)-1)], w, out)
		}
	}
	// The environment is exactly the task's (sh adds PWD and SHLVL).
	var env []string
	for _, l := range lines[len(want):] {
		if l != "" && !strings.HasPrefix(l, "PWD=") && !strings.HasPrefix(l, "SHLVL=") && !strings.HasPrefix(l, "_=") {
			env = append(env, l)
		}
	}
	if strings.Join(env, " ") != "MARK=entered PATH=/usr/bin:/bin" {
		t.Errorf("environment %q", env)
	}
	// The command is in the sandbox's pid namespace: it sees pid 1 as bwrap's.
	out, _ = enter(t, b, Enter{UID: uid, GID: gid, Env: map[string]string{"PATH": "/usr/bin:/bin"},
		Command: []string{"cat", "/proc/1/comm"}})
	if strings.TrimSpace(out) != "bwrap" {
		t.Errorf("pid 1 inside is %q, want bwrap's init", out)
	}
}

// The loader variables a task sets must not reach any process but the
// command, and the command's loader must run under the filter: a library the
// task wrote records every process it is loaded into.
func TestEnterLoaderVariablesNeverReachRoot(t *testing.T) {
	b, uid, gid := sleepingBox(t)
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not installed")
	}
	src := filepath.Join(t.TempDir(), "x.c")
	lib := filepath.Join(b.local, "x.so")
	// The constructor appends "uid seccomp" to a log in the task's dir, by
	// its host path and by its sandbox path: whichever the process sees.
	code := `#include <stdio.h>
#include <string.h>
#include <unistd.h>
__attribute__((constructor)) static void rec(void) {
	char line[256], seccomp[64] = "none";
	FILE *st = fopen("/proc/self/status", "r");
	while (st && fgets(line, sizeof line, st))
		if (strncmp(line, "Seccomp:", 8) == 0) sscanf(line + 8, "%63s", seccomp);
	if (st) fclose(st);
	const char *logs[] = {"` + b.local + `/preload.log", "/local/preload.log"};
	for (int i = 0; i < 2; i++) {
		FILE *f = fopen(logs[i], "a");
		if (f) { fprintf(f, "%d %s\n", (int)geteuid(), seccomp); fclose(f); break; }
	}
}
int la_version(unsigned v) { rec(); return v; }
`
	if err := os.WriteFile(src, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(gcc, "-shared", "-fPIC", "-o", lib, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	if err := os.Chown(lib, int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}
	both := lib + ":/local/x.so"
	for _, v := range []string{"LD_PRELOAD", "LD_AUDIT"} {
		t.Run(v, func(t *testing.T) {
			logPath := filepath.Join(b.local, "preload.log")
			os.Remove(logPath)
			out, ps := enter(t, b, Enter{UID: uid, GID: gid,
				Env:     map[string]string{"PATH": "/usr/bin:/bin", v: both},
				Command: []string{"/bin/true"}})
			if ps.ExitCode() != 0 {
				t.Fatalf("exit %d: %s", ps.ExitCode(), out)
			}
			log, err := os.ReadFile(logPath)
			if err != nil {
				t.Fatalf("the library never ran, not even in the command (control): %v", err)
			}
			for _, l := range strings.Split(strings.TrimSpace(string(log)), "\n") {
				if l != strconv.Itoa(int(uid))+" 2" {
					t.Errorf("the task's library ran as %q (want uid %d under the filter, mode 2)", l, uid)
				}
			}
		})
	}
}

func TestEnterExitStatus(t *testing.T) {
	b, uid, gid := sleepingBox(t)
	env := map[string]string{"PATH": "/usr/bin:/bin"}
	for _, c := range []struct {
		cmd    []string
		code   int
		signal syscall.Signal
	}{
		{[]string{"sh", "-c", "exit 7"}, 7, 0},
		{[]string{"sh", "-c", "kill -TERM $$"}, -1, syscall.SIGTERM},
		{[]string{"no-such-command"}, 127, 0},
		{[]string{"/local"}, 126, 0},
	} {
		out, ps := enter(t, b, Enter{UID: uid, GID: gid, Env: env, Command: c.cmd})
		ws := ps.Sys().(syscall.WaitStatus)
		if c.signal != 0 {
			if !ws.Signaled() || ws.Signal() != c.signal {
				t.Errorf("%v: %v, want signal %v (%s)", c.cmd, ps, c.signal, out)
			}
			continue
		}
		if ps.ExitCode() != c.code {
			t.Errorf("%v: exit %d, want %d (%s)", c.cmd, ps.ExitCode(), c.code, out)
		}
	}
}

// termSession is a command on a terminal the launcher made in the sandbox,
// and what the terminal showed.
type termSession struct {
	cmd    *exec.Cmd
	ptmx   *os.File
	mu     sync.Mutex
	out    bytes.Buffer
	read   chan struct{}
	waited bool
}

func enterTerminal(t *testing.T, b *testBox, uid, gid uint32, command ...string) *termSession {
	t.Helper()
	cmd, ptmx, err := b.EnterTerminal(context.Background(), Enter{Launcher: []string{os.Args[0], EnterCommand}, Seccomp: testFilter(t),
		UID: uid, GID: gid, Env: map[string]string{"PATH": "/usr/bin:/bin", "TERM": "dumb"}, Command: command})
	if err != nil {
		t.Fatal(err)
	}
	s := &termSession{cmd: cmd, ptmx: ptmx, read: make(chan struct{})}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			s.mu.Lock()
			s.out.Write(buf[:n])
			s.mu.Unlock()
			if err != nil {
				close(s.read)
				return
			}
		}
	}()
	t.Cleanup(func() {
		if !s.waited {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		}
		ptmx.Close()
	})
	return s
}

func (s *termSession) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

func (s *termSession) write(t *testing.T, text string) {
	t.Helper()
	if _, err := s.ptmx.Write([]byte(text)); err != nil {
		t.Fatal(err)
	}
}

// waitFor waits until the terminal has shown text; retype, when set, is
// typed again every second meanwhile (a job control character flushes what
// was typed ahead).
func (s *termSession) waitFor(t *testing.T, text, retype string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	next := time.Now()
	for time.Now().Before(deadline) {
		if strings.Contains(s.output(), text) {
			return
		}
		if retype != "" && !time.Now().Before(next) {
			s.write(t, retype)
			next = time.Now().Add(time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %q; the terminal showed %q", text, s.output())
}

// wait waits for the launcher and what the terminal still shows.
func (s *termSession) wait(t *testing.T) *os.ProcessState {
	t.Helper()
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-done
		t.Errorf("the command did not end; the terminal showed %q", s.output())
	}
	s.waited = true
	_ = s.ptmx.SetReadDeadline(time.Now().Add(time.Second))
	<-s.read
	return s.cmd.ProcessState
}

// The command's terminal is a device of the sandbox: tty names it, it exists
// there as the task's, and the command leads a session of its own with it as
// the controlling terminal, so shells get job control. The window size the
// driver sets on the master is the command's.
func TestEnterTerminal(t *testing.T) {
	b, uid, gid := sleepingBox(t)
	s := enterTerminal(t, b, uid, gid, "sh", "-c", `read x; t=$(tty); echo "tty=$t"; test -c "$t" && echo "node=$(stat -c '%u %a' "$t")"; echo "fd0=$(readlink /proc/self/fd/0)"; echo "size=$(stty size)"; echo ready; read x; echo "size=$(stty size)"; cat /proc/$$/stat; exit 7`)
	if err := pty.Setsize(s.ptmx, &pty.Winsize{Rows: 20, Cols: 60}); err != nil {
		t.Fatal(err)
	}
	s.write(t, "go\n")
	s.waitFor(t, "ready\r\n", "")
	if err := pty.Setsize(s.ptmx, &pty.Winsize{Rows: 41, Cols: 123}); err != nil {
		t.Fatal(err)
	}
	s.write(t, "\n")
	ps := s.wait(t)
	out := s.output()
	if ps.ExitCode() != 7 {
		t.Errorf("exit %v, want 7: %q", ps, out)
	}
	m := regexp.MustCompile(`\r\ntty=(/dev/pts/[0-9]+)\r\n`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("tty names no /dev/pts/N: %q", out)
	}
	for _, want := range []string{
		"\r\nnode=" + strconv.Itoa(int(uid)) + " 620\r\n",
		"\r\nfd0=" + m[1] + "\r\n",
		"\r\nsize=20 60\r\n",
		"\r\nsize=41 123\r\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the terminal lacks %q: %q", want, out)
		}
	}
	i := strings.LastIndexByte(out, ')')
	j := strings.LastIndex(out[:max(i, 0)], "\n")
	if i < 0 || j < 0 {
		t.Fatalf("no stat line: %q", out)
	}
	pid := strings.Fields(out[j+1:])[0]
	f := strings.Fields(out[i+1:])
	// f[0] is field 3 (state): pgrp f[2], session f[3], tty_nr f[4], tpgid f[5].
	if f[2] != pid || f[3] != pid || f[4] == "0" || f[5] != pid {
		t.Errorf("pid %s: pgrp %s session %s tty %s foreground %s; want a session and foreground group of its own on the terminal", pid, f[2], f[3], f[4], f[5])
	}
}

// Job control in an interactive shell on the terminal: background jobs,
// jobs, kill %1, ^C, ^Z and fg.
func TestEnterTerminalJobControl(t *testing.T) {
	b, uid, gid := sleepingBox(t)
	for _, shell := range []string{"/bin/sh", "/bin/bash"} {
		t.Run(shell, func(t *testing.T) {
			s := enterTerminal(t, b, uid, gid, shell, "-i")
			jobcontrol.Run(t, jobcontrol.Terminal{Write: s.write, WaitFor: s.waitFor, EOL: "\n"})
			ps := s.wait(t)
			out := s.output()
			if ps.ExitCode() != 3 {
				t.Errorf("exit %v, want 3", ps)
			}
			jobcontrol.Check(t, out)
			t.Logf("%s", out)
		})
	}
}

// While an exec session has its terminal, the task's own processes see an
// empty /dev/pts and cannot change /dev: the instance is the session's.
func TestEnterTerminalIsNotTheTasks(t *testing.T) {
	b, uid, gid := sleepingBox(t)
	s := enterTerminal(t, b, uid, gid, "sh", "-c", "tty; echo ready; read x")
	s.waitFor(t, "ready", "")
	out, ps := enter(t, b, Enter{UID: uid, GID: gid, Env: map[string]string{"PATH": "/usr/bin:/bin"},
		Command: []string{"sh", "-c", `echo "pts=[$(ls -A /dev/pts)] devpts=$(grep -c devpts /proc/self/mountinfo)"
ln -sf /local /dev/ptmx 2>/dev/null && echo SWAPPED-PTMX
mkdir /dev/pts/x 2>/dev/null && echo WROTE-PTS
(exec 3<>/dev/ptmx) 2>/dev/null && echo OPENED-PTMX
true`}})
	if ps.ExitCode() != 0 || !strings.Contains(out, "pts=[] devpts=0\n") {
		t.Errorf("the task's view during the session: exit %d %q, want an empty /dev/pts and no devpts", ps.ExitCode(), out)
	}
	for _, bad := range []string{"SWAPPED-PTMX", "WROTE-PTS", "OPENED-PTMX"} {
		if strings.Contains(out, bad) {
			t.Errorf("the task: %s", bad)
		}
	}
	s.write(t, "\n")
	if ps := s.wait(t); ps.ExitCode() != 0 {
		t.Errorf("the session: %v %q", ps, s.output())
	}
}

// devOfTheTask makes the spec's /dev as sandboxes had it before the
// launcher built it as a tree of root's: a tmpfs of the task's with the same
// entries, remounted read-only only when readOnly is set.
func devOfTheTask(spec *Spec, readOnly bool) {
	var out []Mount
	for _, m := range spec.Mounts {
		switch {
		case m.Kind == RemountRO && m.Dest == "/dev" && !readOnly:
		case m.Kind == Tree && m.Dest == "/dev":
			out = append(out, Mount{Kind: Tmpfs, Dest: "/dev", Perms: 0o755})
			for _, e := range m.Entries {
				if e.Kind == TreeLink {
					out = append(out, Mount{Kind: Symlink, Source: e.Source, Dest: "/dev/" + e.Path})
				} else {
					out = append(out, Mount{Kind: DevBind, Source: e.Source, Dest: "/dev/" + e.Path, Optional: true})
				}
			}
		default:
			out = append(out, m)
		}
	}
	spec.Mounts = out
}

// dropMounts removes from a spec the mounts with the given destinations and
// kinds.
func dropMounts(spec *Spec, drop func(Mount) bool) {
	spec.Mounts = slices.DeleteFunc(spec.Mounts, drop)
}

// Were /dev writable by the task, what it plants there is never the
// terminal: the launcher opens the pty through the devpts instance it
// mounted, and refuses a /dev/pts that is not a plain directory.
func TestEnterTerminalIgnoresWhatTheTaskPlants(t *testing.T) {
	uid, gid := nobody(t)
	writableDev := func(spec *Spec) { devOfTheTask(spec, false) }
	box := func(plant string) *testBox {
		b := startBoxWith(t, uid, gid, NetworkShared, writableDev, "/bin/sh", "-c", plant+" && echo planted; exec sleep 600")
		waitFor(t, b, "planted")
		return b
	}
	t.Run("ptmx", func(t *testing.T) {
		b := box(`mkfifo /local/fifo && rm /dev/ptmx && ln -s /local/fifo /dev/ptmx`)
		s := enterTerminal(t, b, uid, gid, "sh", "-c", `echo "tty=$(tty) ptmx=$(readlink /dev/ptmx)"`)
		s.wait(t)
		if out := s.output(); !regexp.MustCompile(`tty=/dev/pts/[0-9]+ ptmx=/local/fifo\r\n`).MatchString(out) {
			t.Errorf("with /dev/ptmx planted: %q, want a terminal of the session's own", out)
		}
	})
	for _, c := range []struct{ name, plant, want string }{
		{"pts link", `mkdir /local/fake && rmdir /dev/pts && ln -s /local/fake /dev/pts`, "/dev/pts"},
		{"pts file", `rmdir /dev/pts && echo x > /dev/pts`, "/dev/pts"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := box(c.plant)
			cmd, ptmx, err := b.EnterTerminal(context.Background(), Enter{Launcher: []string{os.Args[0], EnterCommand}, Seccomp: testFilter(t),
				UID: uid, GID: gid, Env: map[string]string{"PATH": "/usr/bin:/bin"}, Command: []string{"true"}})
			if err == nil {
				ptmx.Close()
				_ = cmd.Wait()
				t.Fatal("exec -t into a sandbox whose /dev/pts the task planted: started, want refused")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("refused with %q, want it to name %s", err, c.want)
			}
			t.Logf("refused: %v", err)
		})
	}
}

// A sandbox started before /dev/pts was in it (kept running across a plugin
// upgrade) still gets terminals: the launcher makes the mount point, as the
// task, and /dev stays read-only for the task.
func TestEnterTerminalInAnOlderSandbox(t *testing.T) {
	uid, gid := nobody(t)
	b := startBoxWith(t, uid, gid, NetworkShared, func(spec *Spec) {
		devOfTheTask(spec, true)
		dropMounts(spec, func(m Mount) bool { return m.Dest == "/dev/pts" || m.Dest == "/dev/ptmx" })
	}, "/bin/sh", "-c", "test -e /dev/pts || test -L /dev/ptmx || echo older; exec sleep 600")
	waitFor(t, b, "older")
	for i := 0; i < 2; i++ {
		s := enterTerminal(t, b, uid, gid, "sh", "-c", `echo "tty=$(tty)"`)
		s.wait(t)
		if out := s.output(); !regexp.MustCompile(`tty=/dev/pts/[0-9]+\r\n`).MatchString(out) {
			t.Errorf("session %d: %q, want a /dev/pts terminal", i, out)
		}
	}
	out, _ := enter(t, b, Enter{UID: uid, GID: gid, Env: map[string]string{"PATH": "/usr/bin:/bin"},
		Command: []string{"sh", "-c", `echo "$(stat -c '%u %a' /dev/pts) [$(ls -A /dev/pts)] $(readlink /dev/ptmx)"; touch /dev/x 2>/dev/null && echo WROTE-DEV; true`}})
	if want := strconv.Itoa(int(uid)) + " 755 [] pts/ptmx\n"; out != want {
		t.Errorf("the task's /dev after: %q, want %q", out, want)
	}
}

// The driver takes only a pty's master from the launcher: anything else on
// the console socket is refused.
func TestReceiveTerminalRefusesAllButAPtyMaster(t *testing.T) {
	master, slave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	defer slave.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	null, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	file, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for _, c := range []struct {
		name string
		send []*os.File
		want string
	}{
		{"master", []*os.File{master}, ""},
		{"slave", []*os.File{slave}, "not a pty master"},
		{"pipe", []*os.File{r}, "not a pty master"},
		{"null", []*os.File{null}, "not a pty master"},
		{"file", []*os.File{file}, "not a pty master"},
		{"two", []*os.File{master, null}, "2 descriptors"},
		{"none", nil, "ended before"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			ours := os.NewFile(uintptr(pair[0]), "ours")
			defer ours.Close()
			if c.send != nil {
				var fds []int
				for _, f := range c.send {
					fds = append(fds, int(f.Fd()))
				}
				if err := unix.Sendmsg(pair[1], []byte{'T'}, unix.UnixRights(fds...), nil, 0); err != nil {
					t.Fatal(err)
				}
			}
			unix.Close(pair[1])
			got, err := receiveTerminal(context.Background(), ours)
			if c.want == "" {
				if err != nil {
					t.Fatalf("a pty master refused: %v", err)
				}
				got.Close()
				return
			}
			if err == nil {
				got.Close()
				t.Fatalf("took a %s", c.name)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("refused with %q, want %q", err, c.want)
			}
		})
	}
}

// A launcher started inside a session with a controlling terminal (the
// plugin of an agent an operator runs in a terminal) gives it up: the
// command cannot open /dev/tty to reach it.
func TestEnterLeavesTheCallersTerminal(t *testing.T) {
	b, uid, gid := sleepingBox(t)
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var seen bytes.Buffer
	read := make(chan struct{})
	go func() { _, _ = seen.ReadFrom(ptmx); close(read) }()
	cmd, err := b.EnterCmd(Enter{Launcher: []string{os.Args[0], EnterCommand}, Seccomp: testFilter(t),
		UID: uid, GID: gid, Env: map[string]string{"PATH": "/usr/bin:/bin"},
		Command: []string{"sh", "-c", `if (echo reached > /dev/tty) 2>/dev/null; then echo OPENED; else echo refused; fi`}})
	if err != nil {
		t.Fatal(err)
	}
	// The launcher is the child of a shell that leads a session with the
	// terminal as its controlling terminal; only /dev/tty could reach it.
	wrapper := exec.Command("/bin/sh", append([]string{"-c", `"$@" </dev/null; exit $?`, "sh", cmd.Path}, cmd.Args[1:]...)...)
	wrapper.Env = []string{}
	wrapper.ExtraFiles = cmd.ExtraFiles
	var out bytes.Buffer
	wrapper.Stdin, wrapper.Stdout, wrapper.Stderr = tty, &out, &out
	wrapper.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	err = wrapper.Start()
	CloseFiles(cmd)
	tty.Close()
	if err != nil {
		t.Fatal(err)
	}
	_ = wrapper.Wait()
	_ = ptmx.SetReadDeadline(time.Now().Add(time.Second))
	<-read
	if strings.TrimSpace(out.String()) != "refused" || strings.Contains(seen.String(), "reached") {
		t.Errorf("the command opened the caller's terminal: %q; the terminal showed %q", out.String(), seen.String())
	}

	// Leading the terminal's session itself, it refuses to run (giving the
	// terminal up would hang up its foreground jobs).
	ptmx2, tty2, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx2.Close()
	cmd, err = b.EnterCmd(Enter{Launcher: []string{os.Args[0], EnterCommand}, Seccomp: testFilter(t),
		UID: uid, GID: gid, Env: map[string]string{"PATH": "/usr/bin:/bin"}, Command: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	var out2 bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty2, &out2, &out2
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	err = cmd.Start()
	CloseFiles(cmd)
	tty2.Close()
	if err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if cmd.ProcessState.ExitCode() != 126 || !strings.Contains(out2.String(), "leader of a terminal's session") {
		t.Errorf("a launcher leading a terminal's session: %v %q, want refused", cmd.ProcessState, out2.String())
	}
}

// rawEnter runs the launcher with hand-made flags, as a confused or hostile
// caller might.
func rawEnter(t *testing.T, args ...string) (string, int) {
	t.Helper()
	env, err := memfd("env", []byte("PATH=/usr/bin:/bin\x00"))
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	filter, err := memfd("filter", testFilter(t))
	if err != nil {
		t.Fatal(err)
	}
	defer filter.Close()
	cmd := exec.Command(os.Args[0], append([]string{EnterCommand}, args...)...)
	cmd.Env = []string{}
	cmd.ExtraFiles = []*os.File{env, filter}
	out, _ := cmd.CombinedOutput()
	return string(out), cmd.ProcessState.ExitCode()
}

func TestEnterRefusesAWrongTarget(t *testing.T) {
	b, uid, gid := sleepingBox(t)
	target, err := b.Command()
	if err != nil {
		t.Fatal(err)
	}
	pid, start := strconv.Itoa(target.Pid), strconv.FormatUint(target.StartTime, 10)
	id := func(n uint32) string { return strconv.Itoa(int(n)) }
	// A host process of the task's UID: right UID, but the host's namespaces.
	host := exec.Command("sleep", "60")
	host.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = host.Process.Kill(); _ = host.Wait() }()
	hostProc, err := ProcOf(host.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"control", []string{"-pid", pid, "-start", start, "-uid", id(uid), "-gid", id(gid), "--", "true"}, ""},
		{"reused pid", []string{"-pid", pid, "-start", "1", "-uid", id(uid), "-gid", id(gid), "--", "true"}, "gone"},
		{"another uid", []string{"-pid", pid, "-start", start, "-uid", "65533", "-gid", id(gid), "--", "true"}, "not the task's"},
		{"host process", []string{"-pid", strconv.Itoa(hostProc.Pid), "-start", strconv.FormatUint(hostProc.StartTime, 10), "-uid", id(uid), "-gid", id(gid), "--", "true"}, "not a sandbox"},
		{"root", []string{"-pid", pid, "-start", start, "-uid", "0", "-gid", "0", "--", "true"}, "as root"},
		{"no pid", []string{"-uid", id(uid), "-gid", id(gid), "--", "true"}, "want -pid"},
		{"relative cwd", []string{"-pid", pid, "-start", start, "-uid", id(uid), "-gid", id(gid), "-cwd", "local", "--", "true"}, "not an absolute path"},
		{"unknown flag", []string{"-pid", pid, "-start", start, "-uid", id(uid), "-gid", id(gid), "-env", "X=1", "--", "true"}, "unknown flag"},
		{"tty without a console", []string{"-pid", pid, "-start", start, "-uid", id(uid), "-gid", id(gid), "-tty", "--", "true"}, "console socket"},
	} {
		out, code := rawEnter(t, c.args...)
		if c.want == "" {
			if code != 0 {
				t.Errorf("%s: exit %d: %s", c.name, code, out)
			}
			continue
		}
		if code != 126 || !strings.Contains(out, c.want) {
			t.Errorf("%s: exit %d %q, want 126 and %q", c.name, code, out, c.want)
		}
	}
}
