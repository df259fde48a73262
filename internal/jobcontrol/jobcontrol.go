// Package jobcontrol is the interactive-shell session that the sandbox's,
// the driver's and the agent's tests of a terminal type into a shell: a
// background job, jobs, kill %1, ^C, ^Z, fg and exit 3.
package jobcontrol

import (
	"strings"
	"testing"
	"time"
)

// Terminal is what a test's session offers: write types text; waitFor waits
// until the terminal has shown text, typing retype (when set) again meanwhile
// (^C and ^Z flush what was typed ahead).
type Terminal struct {
	Write   func(t *testing.T, text string)
	WaitFor func(t *testing.T, text, retype string)
	// EOL ends a typed line: "\n" on a pty of the test's own, "\r" through
	// the Nomad CLI, which puts its terminal in raw mode.
	EOL string
}

// Run types the session into a shell (/bin/sh -i or bash -i) up to its exit
// 3. Each job says when it runs (an exec'd sh, then exec sleep) before it is
// signalled: a child of an interactive shell that has not exec'd yet still
// ignores SIGTERM (and handles SIGINT) as the shell does, so a signal sent
// that early is lost, with any shell. The first job's marker is named by the
// shell's pid: one sandbox may see several sessions.
func Run(t *testing.T, term Terminal) {
	t.Helper()
	typeLine := func(line string) { term.Write(t, line+term.EOL) }
	step := func(line, want string) {
		t.Helper()
		typeLine(line)
		term.WaitFor(t, want, "")
	}
	step(`sh -c "touch /tmp/up.$$; exec sleep 100" & while [ ! -e /tmp/up.$$ ]; do sleep 0.1; done; jobs; echo M1`, "\r\nM1\r\n")
	step("kill %1; sleep 0.3; jobs; echo M2", "\r\nM2\r\n")
	// ^C ends the foreground job, not the shell.
	step("sh -c 'echo UP3; exec sleep 60'", "\r\nUP3\r\n")
	term.Write(t, "\x03")
	term.WaitFor(t, "\r\nM4\r\n", "echo M4"+term.EOL)
	// ^Z stops it; fg gives it the terminal again, and ^C ends it.
	step("sh -c 'echo UP5; exec sleep 70'", "\r\nUP5\r\n")
	term.Write(t, "\x1a")
	term.WaitFor(t, "\r\nM6\r\n", "jobs; echo M6"+term.EOL)
	step("fg", "sleep 70")
	// fg prints the job before it hands it the terminal.
	time.Sleep(300 * time.Millisecond)
	term.Write(t, "\x03")
	term.WaitFor(t, "\r\nM7\r\n", "jobs; echo M7"+term.EOL)
	typeLine("exit 3")
}

// Check reports what the terminal showed that a working job control would
// not: a shell without the terminal, or a job never seen running, terminated
// or stopped.
func Check(t *testing.T, out string) {
	t.Helper()
	for _, bad := range []string{"Cannot set tty process group", "can't access tty", "no job control"} {
		if strings.Contains(out, bad) {
			t.Errorf("the shell says %q", bad)
		}
	}
	lower := strings.ToLower(out)
	for _, want := range []string{"running", "terminated", "stopped"} {
		if !strings.Contains(lower, want) {
			t.Errorf("no job %s in the session", want)
		}
	}
}
