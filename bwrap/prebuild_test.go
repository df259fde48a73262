package bwrap

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// etcWith is SystemMounts with the host files src bound in /etc at rel (pairs).
func etcWith(pairs ...string) []Mount {
	ms := SystemMounts(16 << 20)
	for i := range ms {
		if ms[i].Kind == Tree && ms[i].Dest == "/etc" {
			for k := 0; k+1 < len(pairs); k += 2 {
				ms[i].Entries = append(ms[i].Entries, TreeEntry{Kind: TreeBind, Source: pairs[k], Path: pairs[k+1]})
			}
		}
	}
	return ms
}

// primeSpare launches with mounts, so that the spare started after it
// copies that launch's /etc files ahead, and waits until it has: it then
// waits for its request in recvmsg, with its prepared root open. A spare
// that an earlier launch had on its way, with that launch's files, is let
// go, and it launches again.
func primeSpare(t *testing.T, mounts []Mount) {
	t.Helper()
	uid, gid := nobody(t)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if st, out, err := runWith(t, uid, gid, mounts, "true"); err != nil || st.Code != 0 {
			t.Fatalf("priming launch: %v %+v %s", err, st, out)
		}
		ln := readySpare(t, testShim(), needSandbox(t))
		b, _ := os.ReadFile("/proc/" + itoa(ln.cmd.Process.Pid) + "/cmdline")
		if strings.Contains(string(b), "\x00"+strings.Join(expectedPairs(mounts), "\x00")+"\x00") {
			return
		}
		if taken := takeSpare(testShim(), needSandbox(t)); taken != nil {
			unix.Close(taken.conn)
			taken.cmd.Wait()
		}
	}
	t.Fatal("no spare with a prepared root came")
}

// expectedPairs are the /etc pairs a spare copies after a launch with mounts.
func expectedPairs(mounts []Mount) []string {
	var pairs []string
	for _, m := range mounts {
		if m.Kind == Tree && m.Dest == "/etc" {
			for _, e := range m.Entries {
				pairs = append(pairs, e.Source, "etc/"+e.Path)
			}
		}
	}
	return pairs
}

// fileIn reports, from inside a sandbox with mounts, the content and mtime
// (ns) of each path, or "missing".
func fileIn(t *testing.T, mounts []Mount, paths ...string) []string {
	t.Helper()
	uid, gid := nobody(t)
	script := ""
	for _, p := range paths {
		script += `if [ -e ` + p + ` ]; then printf '%s %s\n' "$(cat ` + p + `)" "$(date -r ` + p + ` +%s%N)"; else echo missing; fi;`
	}
	st, out, err := runWith(t, uid, gid, mounts, script)
	if err != nil || st.Code != 0 {
		t.Fatalf("launch: %v %+v %s", err, st, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(paths) {
		t.Fatalf("sandbox said %q", out)
	}
	return lines
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// copiedBefore reports whether a fileIn line is content, copied well before
// t0. A file's times come from the kernel's clock as of its last tick, up to
// a tick (4 or 10 ms) behind time.Now: a copy made at the launch, just after
// t0, can carry a time before t0. The copies made ahead are 50 ms older (the
// tests wait that long before t0).
func copiedBefore(t *testing.T, line, content string, t0 time.Time) bool {
	t.Helper()
	f := strings.Fields(line)
	if len(f) != 2 || f[0] != content {
		t.Fatalf("sandbox's file %q, want %q", line, content)
	}
	ns, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return time.Unix(0, ns).Before(t0.Add(-25 * time.Millisecond))
}

// The spare copies the /etc files of the launch before it ahead, and a
// launch with the same files takes those copies: the file in the sandbox
// was written before the launch began.
func TestSpareCopiesEtcAhead(t *testing.T) {
	needSandbox(t)
	src := filepath.Join(t.TempDir(), "conf")
	writeFile(t, src, "first")
	mounts := etcWith(src, "bwrap-r-test/conf")
	primeSpare(t, mounts)
	time.Sleep(50 * time.Millisecond)
	t0 := time.Now()
	if line := fileIn(t, mounts, "/etc/bwrap-r-test/conf")[0]; !copiedBefore(t, line, "first", t0) {
		t.Errorf("the sandbox's copy %q was made during the launch, want the spare's", line)
	}
}

// A file changed after the spare copied it (same size, so only its times
// tell) is copied again; one removed is missing; one that became a
// directory is bound.
func TestSpareCopiesThatChangedAreRedone(t *testing.T) {
	needSandbox(t)
	dir := t.TempDir()
	changed, removed, kept, becameDir := filepath.Join(dir, "changed"), filepath.Join(dir, "removed"), filepath.Join(dir, "kept"), filepath.Join(dir, "dir")
	writeFile(t, changed, "old1")
	writeFile(t, removed, "gone")
	writeFile(t, kept, "kept")
	writeFile(t, becameDir, "file")
	mounts := etcWith(changed, "bwrap-r-test/changed", removed, "bwrap-r-test/sub/removed", kept, "bwrap-r-test/kept", becameDir, "bwrap-r-test/dir")
	primeSpare(t, mounts)
	writeFile(t, changed, "new2")
	if err := os.Remove(removed); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(becameDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(becameDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(becameDir, "inside"), "inside")
	time.Sleep(50 * time.Millisecond)
	t0 := time.Now()
	lines := fileIn(t, mounts, "/etc/bwrap-r-test/changed", "/etc/bwrap-r-test/sub/removed", "/etc/bwrap-r-test/kept", "/etc/bwrap-r-test/dir/inside")
	if copiedBefore(t, lines[0], "new2", t0) {
		t.Errorf("changed file %q: want it copied at the launch", lines[0])
	}
	if lines[1] != "missing" {
		t.Errorf("the removed file: %q, want it missing", lines[1])
	}
	if !copiedBefore(t, lines[2], "kept", t0) {
		t.Errorf("unchanged file %q: want the spare's copy", lines[2])
	}
	if !strings.HasPrefix(lines[3], "inside ") {
		t.Errorf("the directory's file: %q", lines[3])
	}
}

// A launch whose /etc files are not the ones the spare copied gets none of
// the spare's: no file of the launch before it appears in its /etc.
func TestSpareCopiesOfAnotherLaunchAreNotUsed(t *testing.T) {
	needSandbox(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	writeFile(t, a, "aaa")
	writeFile(t, b, "bbb")
	primeSpare(t, etcWith(a, "bwrap-r-test/a"))
	t0 := time.Now()
	lines := fileIn(t, etcWith(b, "bwrap-r-test/b"), "/etc/bwrap-r-test/a", "/etc/bwrap-r-test/b")
	if lines[0] != "missing" {
		t.Errorf("the other launch's file is in /etc: %q", lines[0])
	}
	if copiedBefore(t, lines[1], "bbb", t0) {
		t.Errorf("file %q: want it copied at the launch", lines[1])
	}
}

// A file closed to other users after the spare copied it (chmod 0600, the
// same content) is not shown from that copy: the sandbox gets the host's
// file as it is now, which the task cannot read.
func TestSpareCopyOfAFileClosedSinceIsNotShown(t *testing.T) {
	needSandbox(t)
	src := filepath.Join(t.TempDir(), "secret")
	writeFile(t, src, "secret")
	mounts := etcWith(src, "bwrap-r-test/secret")
	primeSpare(t, mounts)
	if err := os.Chmod(src, 0o600); err != nil {
		t.Fatal(err)
	}
	uid, gid := nobody(t)
	st, out, err := runWith(t, uid, gid, mounts, "cat /etc/bwrap-r-test/secret; echo rc=$?")
	if err != nil || st.Code != 0 {
		t.Fatalf("launch: %v %+v %s", err, st, out)
	}
	if strings.HasPrefix(out, "secret") || !strings.Contains(out, "rc=1") {
		t.Errorf("a file closed since the spare's copy: the task read %q, want a refusal", out)
	}
}
