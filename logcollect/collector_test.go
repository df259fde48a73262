package logcollect

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// collectorIn starts an in-process collector with its socket in dir.
func collectorIn(t *testing.T, dir string) (*Collector, *Client) {
	t.Helper()
	c, err := Listen(filepath.Join(dir, "sock"), filepath.Join(dir, "lock"), log.New(os.Stderr, "logd: ", 0))
	if err != nil {
		t.Fatal(err)
	}
	go c.Serve()
	t.Cleanup(c.Close)
	cl, err := Dial(filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return c, cl
}

type taskPipes struct {
	logs    string
	dir     *os.File
	readers []*os.File
	writers []*os.File
}

func newTaskPipes(t *testing.T, n int) *taskPipes {
	t.Helper()
	tp := &taskPipes{logs: t.TempDir()}
	d, err := os.Open(tp.logs)
	if err != nil {
		t.Fatal(err)
	}
	tp.dir = d
	t.Cleanup(func() { d.Close() })
	for i := 0; i < n; i++ {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close(); w.Close() })
		tp.readers = append(tp.readers, r)
		tp.writers = append(tp.writers, w)
	}
	return tp
}

// waitGone waits until the collector holds no task called id.
func waitGone(t *testing.T, cl *Client, id string) {
	t.Helper()
	done, err := cl.Wait(id, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !done {
		t.Fatalf("the collector still holds %s", id)
	}
}

// Wait answers when a task's streams have all ended, not before; at once
// for a task the collector does not know.
func TestWaitAnswersWhenTheStreamsEnd(t *testing.T) {
	_, cl := collectorIn(t, t.TempDir())
	if done, err := cl.Wait("nobody", time.Minute); err != nil || !done {
		t.Fatalf("Wait of an unknown task: %v, %v; want done at once", done, err)
	}
	tp := newTaskPipes(t, 2)
	if err := cl.Add("t1", tp.dir, []string{"web.stdout", "web.stderr"}, tp.readers, Limits{MaxFiles: 2, FileSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	tp.writers[0].Close()
	if done, err := cl.Wait("t1", 200*time.Millisecond); err != nil || done {
		t.Fatalf("Wait with one stream still open: %v, %v; want not done", done, err)
	}
	tp.writers[1].WriteString("last line\n")
	tp.writers[1].Close()
	if done, err := cl.Wait("t1", time.Minute); err != nil || !done {
		t.Fatalf("Wait once both streams ended: %v, %v; want done", done, err)
	}
	if b, _ := os.ReadFile(filepath.Join(tp.logs, "web.stderr.0")); string(b) != "last line\n" {
		t.Fatalf("web.stderr.0 holds %q when Wait answers", b)
	}
}

// A subscribed connection hears of each task once all its streams have
// ended, with its output already in its files, and of no task before; a
// subscriber that goes is forgotten.
func TestSubscriptionHearsOfEndedTasks(t *testing.T) {
	dir := t.TempDir()
	c, cl := collectorIn(t, dir)
	sub := dialIn(t, dir)
	ended, err := sub.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	lim := Limits{MaxFiles: 2, FileSize: 1 << 20}
	tp1, tp2 := newTaskPipes(t, 2), newTaskPipes(t, 2)
	if err := cl.Add("t1", tp1.dir, []string{"web.stdout", "web.stderr"}, tp1.readers, lim); err != nil {
		t.Fatal(err)
	}
	if err := cl.Add("t2", tp2.dir, []string{"web.stdout", "web.stderr"}, tp2.readers, lim); err != nil {
		t.Fatal(err)
	}
	// The plugin's own read ends stay open, as the driver keeps them.
	tp2.writers[0].Close()
	tp1.writers[0].WriteString("first\n")
	tp1.writers[0].Close()
	select {
	case id := <-ended:
		t.Fatalf("heard of %s with a stream of each task still open", id)
	case <-time.After(200 * time.Millisecond):
	}
	tp1.writers[1].WriteString("last line\n")
	tp1.writers[1].Close()
	select {
	case id := <-ended:
		if id != "t1" {
			t.Fatalf("heard of %s, want t1", id)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no word of t1 after both its streams ended")
	}
	if b, _ := os.ReadFile(filepath.Join(tp1.logs, "web.stderr.0")); string(b) != "last line\n" {
		t.Fatalf("web.stderr.0 holds %q when the subscriber hears of t1", b)
	}
	sub.Close()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c.mu.Lock()
		n := len(c.subs)
		c.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the collector keeps a subscriber that went")
		}
	}
	// A request connection still works as before.
	tp2.writers[1].Close()
	waitGone(t, cl, "t2")
}

// dialIn is a second connection to the collector in dir, closed at the end.
func dialIn(t *testing.T, dir string) *Client {
	t.Helper()
	cl, err := Dial(filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// A forgotten task's streams were cut off, not drained: no word of it.
func TestSubscriptionNoWordOfAForgottenTask(t *testing.T) {
	dir := t.TempDir()
	_, cl := collectorIn(t, dir)
	ended, err := dialIn(t, dir).Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	tp := newTaskPipes(t, 1)
	if err := cl.Add("cut", tp.dir, []string{"web.stdout"}, tp.readers, Limits{MaxFiles: 2, FileSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := cl.Forget("cut"); err != nil {
		t.Fatal(err)
	}
	waitGone(t, cl, "cut")
	select {
	case id := <-ended:
		t.Fatalf("heard of %s, which was forgotten with its writer still open", id)
	case <-time.After(300 * time.Millisecond):
	}
}

// A subscriber that stops reading costs the collector at most
// maxPendingWords words, and its connection is closed once the collector
// can write again.
func TestSubscriberThatDoesNotReadIsBounded(t *testing.T) {
	old := maxPendingWords
	maxPendingWords = 8
	defer func() { maxPendingWords = old }()
	dir := t.TempDir()
	c, cl := collectorIn(t, dir)
	// Subscribed, and never read until the end.
	sub := dialIn(t, dir)
	if _, _, err := sub.call(request{Op: opSubscribe}, nil); err != nil {
		t.Fatal(err)
	}
	// Held here: once it overflows, the collector lets it go from c.subs.
	var subscribers []*subscriber
	c.mu.Lock()
	for s := range c.subs {
		subscribers = append(subscribers, s)
	}
	c.mu.Unlock()
	lim := Limits{MaxFiles: 1, FileSize: 1 << 20}
	for i := 0; i < 1500; i++ {
		tp := newTaskPipes(t, 1)
		id := fmt.Sprintf("t%d", i)
		if err := cl.Add(id, tp.dir, []string{"web.stdout"}, tp.readers, lim); err != nil {
			t.Fatal(err)
		}
		tp.writers[0].Close()
		tp.readers[0].Close()
		waitGone(t, cl, id)
		c.mu.Lock()
		for s := range c.subs {
			if len(s.ended) > maxPendingWords {
				c.mu.Unlock()
				t.Fatalf("%d words pending for a subscriber, past the bound of %d", len(s.ended), maxPendingWords)
			}
		}
		c.mu.Unlock()
	}
	c.mu.Lock()
	overflowed := false
	for _, s := range subscribers {
		overflowed = overflowed || s.overflowed
	}
	c.mu.Unlock()
	if !overflowed {
		t.Fatal("1500 unread words never filled the subscriber's socket: the test shows nothing")
	}
	// Reading again lets the collector write, see the overflow and hang up.
	buf := make([]byte, maxMsg)
	deadline := time.Now().Add(20 * time.Second)
	for {
		sub.conn.SetReadDeadline(deadline)
		n, err := sub.conn.Read(buf)
		if err != nil && time.Now().After(deadline) {
			t.Fatal("the collector kept the connection of a subscriber that overflowed")
		}
		if err != nil || n == 0 {
			break
		}
	}
}

// logFiles returns base's files in dir, oldest first.
func logFiles(t *testing.T, dir, base string) []string {
	t.Helper()
	r := &rotator{base: base}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	r.dir = fd
	idxs, err := r.indexes()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, i := range idxs {
		out = append(out, filepath.Join(dir, base+"."+strconv.Itoa(i)))
	}
	return out
}

func readAll(t *testing.T, files []string) []byte {
	t.Helper()
	var all []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

// Rotation keeps logmon's limits: no file beyond its size, no more than
// max_files, no line cut in two, and what is kept is exactly the tail of what
// was written.
func TestRotationKeepsLimitsAndLines(t *testing.T) {
	_, cl := collectorIn(t, t.TempDir())
	tp := newTaskPipes(t, 1)
	lim := Limits{MaxFiles: 3, FileSize: 64 * 1024}
	if err := cl.Add("t1", tp.dir, []string{"web.stdout"}, tp.readers, lim); err != nil {
		t.Fatal(err)
	}
	var written bytes.Buffer
	w := bufio.NewWriterSize(tp.writers[0], 3000)
	for i := 0; written.Len() < 1<<20; i++ {
		line := fmt.Sprintf("line %d %s\n", i, strings.Repeat("x", i%700))
		written.WriteString(line)
		w.WriteString(line)
	}
	w.Flush()
	tp.writers[0].Close()
	waitGone(t, cl, "t1")

	files := logFiles(t, tp.logs, "web.stdout")
	if len(files) != lim.MaxFiles {
		t.Fatalf("%d files kept, want %d: %v", len(files), lim.MaxFiles, files)
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if int64(len(b)) > lim.FileSize {
			t.Errorf("%s holds %d bytes, over %d", f, len(b), lim.FileSize)
		}
		if len(b) == 0 || b[len(b)-1] != '\n' {
			t.Errorf("%s does not end at a line's end", f)
		}
		if int64(len(b)) < lim.FileSize-lineScanLimit && f != files[len(files)-1] {
			t.Errorf("%s was left at %d bytes, well short of %d", f, len(b), lim.FileSize)
		}
	}
	kept := readAll(t, files)
	if !bytes.HasSuffix(written.Bytes(), kept) {
		t.Fatalf("the %d bytes kept are not the tail of what was written", len(kept))
	}
	if !bytes.HasPrefix(kept, []byte("line ")) {
		t.Fatalf("the oldest file kept starts mid-line: %q", kept[:20])
	}
}

// A line longer than a whole file fills files rather than waiting for a
// newline that never comes; nothing is lost.
func TestLineLongerThanAFile(t *testing.T) {
	_, cl := collectorIn(t, t.TempDir())
	tp := newTaskPipes(t, 1)
	lim := Limits{MaxFiles: 10, FileSize: 1 << 20}
	if err := cl.Add("t1", tp.dir, []string{"a.stderr"}, tp.readers, lim); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789"), 300000) // 3 MB, no newline
	go func() {
		_, _ = tp.writers[0].Write(data)
		tp.writers[0].Close()
	}()
	waitGone(t, cl, "t1")
	files := logFiles(t, tp.logs, "a.stderr")
	if got := readAll(t, files); !bytes.Equal(got, data) {
		t.Fatalf("kept %d bytes of %d", len(got), len(data))
	}
	for _, f := range files[:len(files)-1] {
		// Short of full only where the pipe ran dry near the file's end.
		if fi, _ := os.Stat(f); fi.Size() < lim.FileSize-lineScanLimit {
			t.Errorf("%s: %d bytes, want it within %d of full (%d)", f, fi.Size(), lineScanLimit, lim.FileSize)
		}
	}
}

// A collector started again goes on in the newest file, as logmon does.
func TestCollectorAppendsToTheNewestFile(t *testing.T) {
	_, cl := collectorIn(t, t.TempDir())
	tp := newTaskPipes(t, 1)
	for i, s := range []string{"old0\n", "old1\n"} {
		if err := os.WriteFile(filepath.Join(tp.logs, "x.stdout."+strconv.Itoa(i)), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.Add("t1", tp.dir, []string{"x.stdout"}, tp.readers, Limits{MaxFiles: 5, FileSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	tp.writers[0].WriteString("new\n")
	tp.writers[0].Close()
	waitGone(t, cl, "t1")
	b, _ := os.ReadFile(filepath.Join(tp.logs, "x.stdout.1"))
	if string(b) != "old1\nnew\n" {
		t.Fatalf("x.stdout.1 = %q", b)
	}
}

// The collector is root: a link or a hard link in place of a log file is
// refused, never written through, and the data waits in the pipe.
func TestCollectorRefusesPlantedLinks(t *testing.T) {
	needRoot(t)
	for _, kind := range []string{"symlink", "hardlink", "fifo"} {
		t.Run(kind, func(t *testing.T) {
			_, cl := collectorIn(t, t.TempDir())
			tp := newTaskPipes(t, 1)
			victim := filepath.Join(t.TempDir(), "victim")
			if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			planted := filepath.Join(tp.logs, "web.stdout.0")
			var err error
			switch kind {
			case "symlink":
				err = os.Symlink(victim, planted)
			case "hardlink":
				err = os.Link(victim, planted)
			case "fifo":
				err = unix.Mkfifo(planted, 0o644)
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := cl.Add("t1", tp.dir, []string{"web.stdout"}, tp.readers, Limits{MaxFiles: 2, FileSize: 1 << 20}); err != nil {
				t.Fatal(err)
			}
			tp.writers[0].WriteString("attacker data\n")
			time.Sleep(300 * time.Millisecond)
			if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
				t.Fatalf("written through a planted %s: %q", kind, b)
			}
			// Nothing was taken from the pipe either.
			if err := cl.Forget("t1"); err != nil {
				t.Fatal(err)
			}
			tp.writers[0].Close()
			got, _ := io.ReadAll(tp.readers[0])
			if string(got) != "attacker data\n" {
				t.Fatalf("the pipe holds %q after a refused write", got)
			}
		})
	}
}

// Add refuses descriptors that are not what they claim.
func TestAddRefusals(t *testing.T) {
	c, cl := collectorIn(t, t.TempDir())
	tp := newTaskPipes(t, 1)
	lim := Limits{MaxFiles: 1, FileSize: 1 << 20}
	cases := []struct {
		name  string
		dir   *os.File
		names []string
		pipes []*os.File
		lim   Limits
	}{
		{"write end", tp.dir, []string{"a.stdout"}, tp.writers, lim},
		{"dir not a dir", tp.readers[0], []string{"a.stdout"}, tp.readers, lim},
		{"slash in name", tp.dir, []string{"../a.stdout"}, tp.readers, lim},
		{"dot dot", tp.dir, []string{".."}, tp.readers, lim},
		{"no limits", tp.dir, []string{"a.stdout"}, tp.readers, Limits{}},
	}
	for _, c := range cases {
		if err := cl.Add("bad", c.dir, c.names, c.pipes, c.lim); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.tasks) != 0 {
		t.Fatalf("refused adds left tasks: %v", slices.Collect(maps.Keys(c.tasks)))
	}
}

// Only the collector's own UID may connect, and a client refuses a listener
// of another UID.
func TestSocketOnlyForItsUID(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	collectorIn(t, dir)
	fi, err := os.Stat(filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("socket mode %v", fi.Mode())
	}
	cmd := exec.Command("/bin/sh", "-c", "exec python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.connect(sys.argv[1])' "+filepath.Join(dir, "sock"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("uid 65534 connected to the collector: %s", out)
	}
}

// spawnCollector starts this test binary as a collector process.
func spawnCollector(t *testing.T, dir string) (*Client, int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := Spawn(exe, filepath.Join(dir, "sock"), filepath.Join(dir, "lock"), filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	pid := peerPid(t, cl)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	return cl, pid
}

func peerPid(t *testing.T, cl *Client) int {
	pid, err := cl.PeerPid()
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// A collector killed with -9 while a task writes loses nothing and writes
// nothing twice: the next one goes on from the pipes the client kept.
func TestCollectorKilledLosesNothing(t *testing.T) {
	dir := t.TempDir()
	cl, pid := spawnCollector(t, dir)
	tp := newTaskPipes(t, 2)
	names := []string{"c.stdout", "c.stderr"}
	lim := Limits{MaxFiles: 1000, FileSize: 1 << 20}
	if err := cl.Add("t1", tp.dir, names, tp.readers, lim); err != nil {
		t.Fatal(err)
	}
	const lines = 400000
	done := make(chan error, 2)
	for _, w := range tp.writers {
		go func(w *os.File) {
			bw := bufio.NewWriterSize(w, 512)
			for i := 0; i < lines; i++ {
				fmt.Fprintf(bw, "%d\n", i)
			}
			err := bw.Flush()
			w.Close()
			done <- err
		}(w)
	}
	for kill := 0; kill < 3; kill++ {
		time.Sleep(150 * time.Millisecond)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cl.Close()
		for syscall.Kill(pid, 0) == nil {
			time.Sleep(5 * time.Millisecond)
		}
		// The pipes stay open (we hold their read ends): the writers block,
		// they do not fail.
		cl, pid = spawnCollector(t, dir)
		if err := cl.Add("t1", tp.dir, names, tp.readers, lim); err != nil {
			t.Fatal(err)
		}
	}
	for range tp.writers {
		if err := <-done; err != nil {
			t.Fatalf("a writer failed: %v", err)
		}
	}
	waitGone(t, cl, "t1")
	for _, n := range names {
		got := readAll(t, logFiles(t, tp.logs, n))
		fields := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
		if len(fields) != lines {
			t.Fatalf("%s: %d lines, want %d", n, len(fields), lines)
		}
		for i, f := range fields {
			if f != strconv.Itoa(i) {
				t.Fatalf("%s: line %d is %q", n, i, f)
			}
		}
	}
}

// A stream that never writes a newline does not grow the collector.
func TestCollectorMemoryFlat(t *testing.T) {
	dir := t.TempDir()
	cl, pid := spawnCollector(t, dir)
	tp := newTaskPipes(t, 1)
	if err := cl.Add("t1", tp.dir, []string{"m.stdout"}, tp.readers, Limits{MaxFiles: 2, FileSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("y"), 1<<16)
	for i := 0; i < 800; i++ { // 50 MiB
		if _, err := tp.writers[0].Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	tp.writers[0].Close()
	waitGone(t, cl, "t1")
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	var hwm int
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			hwm, _ = strconv.Atoi(strings.Fields(l)[1])
		}
	}
	if hwm == 0 || hwm > 64*1024 {
		t.Fatalf("collector peak RSS %d kB after 50 MiB without a newline", hwm)
	}
	total := 0
	for _, f := range logFiles(t, tp.logs, "m.stdout") {
		fi, _ := os.Stat(f)
		total += int(fi.Size())
	}
	if total < 1<<20 || total > 2<<20 {
		t.Fatalf("kept %d bytes, want the last two files' worth", total)
	}
}

// A descriptor its starter left inheritable (a lock, say) is not held by
// the collector: it would be held for as long as the collector runs.
func TestCollectorHoldsNothingInherited(t *testing.T) {
	dir := t.TempDir()
	lock := filepath.Join(dir, "held")
	fd, err := unix.Open(lock, unix.O_RDWR|unix.O_CREAT, 0o600) // no O_CLOEXEC
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	_, pid := spawnCollector(t, dir)
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); target == lock {
			t.Fatalf("the collector holds its starter's descriptor %s -> %s", e.Name(), target)
		}
	}
}

// rotatorOn is a rotator for web.stdout in a fresh dir whose web.stdout.0
// holds first, and a pipe (1 MiB) to feed it.
func rotatorOn(t *testing.T, lim Limits, first string) (dir string, r *rotator, pk *peeker, rd, wr int) {
	t.Helper()
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "web.stdout.0"), []byte(first), 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, 1<<20); err != nil {
		t.Fatal(err)
	}
	if pk, err = newPeeker(); err != nil {
		t.Fatal(err)
	}
	r = newRotator(fd, "web.stdout", lim)
	t.Cleanup(r.close)
	return dir, r, pk, p[0], p[1]
}

// drain moves until the pipe is empty (EAGAIN) or ended.
func drain(t *testing.T, r *rotator, pk *peeker, rd int) {
	t.Helper()
	for {
		switch err := r.move(rd, pk); {
		case err == errEOF || errors.Is(err, unix.EAGAIN):
			return
		case err != nil:
			t.Fatal(err)
		}
	}
}

func mustWrite(t *testing.T, fd int, s string) {
	t.Helper()
	if _, err := unix.Write(fd, []byte(s)); err != nil {
		t.Fatal(err)
	}
}

// A file a few bytes short of full, with a line in the pipe that does not fit
// and much more behind it: the line starts the next file, the full one ends
// at its last whole line.
func TestLineThatDoesNotFitStartsTheNextFile(t *testing.T) {
	lim := Limits{MaxFiles: 5, FileSize: 64 * 1024}
	short := strings.Repeat("a", int(lim.FileSize)-101) + "\n"
	dir, r, pk, rd, wr := rotatorOn(t, lim, short)
	var pending bytes.Buffer
	for pending.Len() <= lineScanLimit+8000 {
		pending.WriteString(strings.Repeat("b", 999) + "\n")
	}
	mustWrite(t, wr, pending.String())
	drain(t, r, pk, rd)
	first, _ := os.ReadFile(filepath.Join(dir, "web.stdout.0"))
	if string(first) != short {
		t.Fatalf("web.stdout.0 was changed: %d bytes, ends %q", len(first), first[len(first)-5:])
	}
	second, _ := os.ReadFile(filepath.Join(dir, "web.stdout.1"))
	if !bytes.Equal(second, pending.Bytes()) {
		t.Fatalf("web.stdout.1 holds %d bytes, want the %d pending", len(second), pending.Len())
	}
}

// A line begun in a file near its end, whose rest comes in pieces: the pieces
// go on in that file; the next file does not start mid-line.
func TestLineWrittenInPiecesStaysInItsFile(t *testing.T) {
	lim := Limits{MaxFiles: 5, FileSize: 64 * 1024}
	begun := strings.Repeat("a", int(lim.FileSize)-lineScanLimit) // no newline: cut in one go
	dir, r, pk, rd, wr := rotatorOn(t, lim, begun)
	mustWrite(t, wr, "bbb")
	drain(t, r, pk, rd)
	mustWrite(t, wr, "ccc\nnext line\n")
	drain(t, r, pk, rd)
	first, _ := os.ReadFile(filepath.Join(dir, "web.stdout.0"))
	if want := begun + "bbbccc\nnext line\n"; string(first) != want {
		t.Fatalf("web.stdout.0 ends %q, want it to end %q", first[len(begun):], want[len(begun):])
	}
	if _, err := os.Stat(filepath.Join(dir, "web.stdout.1")); err == nil {
		t.Fatal("a next file was started mid-line")
	}
}
