package bwrap

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

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

// With a terminal the command leads a session of its own inside the sandbox,
// with the terminal as its controlling terminal, so shells get job control.
func TestEnterTerminal(t *testing.T) {
	b, uid, gid := sleepingBox(t)
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	cmd, err := b.EnterCmd(Enter{Launcher: []string{os.Args[0], EnterCommand}, Seccomp: testFilter(t),
		UID: uid, GID: gid, Tty: true, Env: map[string]string{"PATH": "/usr/bin:/bin"},
		Command: []string{"sh", "-c", "cat /proc/$$/stat"}})
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	CloseFiles(cmd)
	tty.Close()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	done := make(chan struct{})
	go func() { _, _ = out.ReadFrom(ptmx); close(done) }()
	_ = cmd.Wait()
	_ = ptmx.SetReadDeadline(time.Now().Add(time.Second))
	<-done
	s := out.String()
	i := strings.LastIndexByte(s, ')')
	if i < 0 || cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("exit %d: %q", cmd.ProcessState.ExitCode(), s)
	}
	f := strings.Fields(s[i+1:])
	pid := strings.Fields(s)[0]
	// f[0] is field 3 (state): pgrp f[2], session f[3], tty_nr f[4], tpgid f[5].
	if f[2] != pid || f[3] != pid || f[4] == "0" || f[5] != pid {
		t.Errorf("pid %s: pgrp %s session %s tty %s foreground %s; want a session and foreground group of its own on the terminal", pid, f[2], f[3], f[4], f[5])
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
