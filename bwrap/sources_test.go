package bwrap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// closedRoot makes a directory as Nomad makes its data_dir: root's, 0700, so
// that no task UID can walk a path through it.
func closedRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "bwrap-closed-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// stageDir is a staging dir for the launcher, as the driver keeps one in
// its state dir: root's, 0711.
func stageDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "bwrap-stage-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	return dir
}

// ownedDir makes dir/name owned by uid:gid, holding a file marker with text.
func ownedDir(t *testing.T, dir, name string, uid, gid uint32, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "marker"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{p, filepath.Join(p, "marker")} {
		if err := os.Chown(q, int(uid), int(gid)); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// runIn starts a sandbox with extra mounts and returns how it ended, its
// output, or the error Start gave.
func runIn(t *testing.T, uid, gid uint32, mounts []Mount, script string) (ExitStatus, string, error) {
	t.Helper()
	return runWith(t, uid, gid, append(SystemMounts(16<<20), mounts...), script)
}

// runWith is runIn with all of the sandbox's mounts given.
func runWith(t *testing.T, uid, gid uint32, mounts []Mount, script string) (ExitStatus, string, error) {
	t.Helper()
	bw := needSandbox(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sb, err := Start(Launch{
		Bwrap: bw, Shim: []string{os.Args[0], ShimCommand},
		Spec: &Spec{
			Command: "/bin/sh", Args: []string{"-c", script},
			Env:    map[string]string{"PATH": "/usr/bin:/bin"},
			Mounts: mounts,
			UID:    uid, GID: gid,
		},
		Stdout: f, Stderr: f, StatusPath: filepath.Join(dir, "status"), Seccomp: testFilter(t),
		StageDir: stageDir(t),
	})
	if err != nil {
		return ExitStatus{}, "", err
	}
	if !sb.Wait(30 * time.Second) {
		_ = sb.Kill()
		t.Fatal("sandbox did not end")
	}
	b, _ := os.ReadFile(out)
	return sb.Status(), string(b), nil
}

// A task's dirs below a root-only 0700 directory are bound, because root
// opens them and bwrap binds the descriptors; bwrap, running as the task,
// could not walk that path itself.
func TestBindsReachSourcesTheTaskCannotWalk(t *testing.T) {
	uid, gid := nobody(t)
	root := closedRoot(t)
	local := ownedDir(t, root, "local", uid, gid, "mine")
	st, out, err := runIn(t, uid, gid, []Mount{
		{Kind: Bind, Source: local, Dest: "/local", Beneath: root, Owner: &uid, MustBeDir: true},
		{Kind: ROBind, Source: filepath.Join(local, "marker"), Dest: "/marker", Beneath: root},
	}, "cat /local/marker; echo; echo written > /local/new && cat /marker; ls "+root+" >/dev/null 2>&1 || echo closed")
	if err != nil {
		t.Fatal(err)
	}
	if st.Code != 0 || out != "mine\nmineclosed\n" {
		t.Errorf("exit %d %v, output %q", st.Code, st.Err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(local, "new")); string(b) != "written\n" {
		t.Errorf("the bind is not the task's dir: %q", b)
	}
}

func TestBindSourceRefusals(t *testing.T) {
	uid, gid := nobody(t)
	root := closedRoot(t)
	local := ownedDir(t, root, "local", uid, gid, "mine")
	rootsOwn := filepath.Join(root, "roots")
	if err := os.Mkdir(rootsOwn, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "link")
	if err := os.Symlink("/etc", link); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(local, "marker")
	other := uid + 1
	for _, c := range []struct {
		name  string
		mount Mount
		want  string
	}{
		{"a link", Mount{Kind: Bind, Source: link, Dest: "/local", Beneath: root}, "a link"},
		{"through a link", Mount{Kind: ROBind, Source: filepath.Join(link, "passwd"), Dest: "/x", Beneath: root}, "a link"},
		{"outside its root", Mount{Kind: Bind, Source: "/etc", Dest: "/local", Beneath: root}, "lies outside " + root},
		{"dot-dot out of its root", Mount{Kind: Bind, Source: root + "/../", Dest: "/local", Beneath: root}, "lies outside"},
		{"the wrong owner", Mount{Kind: Bind, Source: rootsOwn, Dest: "/local", Beneath: root, Owner: &uid}, "owned by uid 0"},
		{"not a directory", Mount{Kind: Bind, Source: file, Dest: "/local", Beneath: root, MustBeDir: true}, "not a directory"},
		{"another owner", Mount{Kind: Bind, Source: local, Dest: "/local", Beneath: root, Owner: &other}, "not"},
		{"missing", Mount{Kind: Bind, Source: filepath.Join(root, "nope"), Dest: "/local", Beneath: root}, "no such file"},
	} {
		_, _, err := runIn(t, uid, gid, []Mount{c.mount}, "true")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.mount.Source) {
			t.Errorf("%s: got %v, want an error naming %s with %q", c.name, err, c.mount.Source, c.want)
		}
	}
	// An optional source that is missing is left out, as bwrap's -try does.
	st, _, err := runIn(t, uid, gid, []Mount{{Kind: ROBind, Source: filepath.Join(root, "nope"), Dest: "/opt/x", Beneath: root, Optional: true}}, "test ! -e /opt/x")
	if err != nil || st.Code != 0 {
		t.Errorf("optional missing source: %v %+v", err, st)
	}
}

// While sandboxes start, another process keeps swapping the task's dir for a
// link to a directory the task must not get: a start either binds the real
// dir or fails naming the link; no bind ever lands on the link's target.
func TestBindSourceSwapRace(t *testing.T) {
	uid, gid := nobody(t)
	root := closedRoot(t)
	ownedDir(t, root, "real", uid, gid, "real")
	secret := ownedDir(t, root, "secret", 0, 0, "secret")
	local := filepath.Join(root, "local")
	linkTmp := filepath.Join(root, "local-link")
	dirTmp := filepath.Join(root, "local-dir")
	if err := os.Rename(filepath.Join(root, "real"), local); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var swaps atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			// local becomes a link to secret, then the real dir again.
			_ = os.Symlink(secret, linkTmp)
			_ = os.Rename(local, dirTmp)
			_ = os.Rename(linkTmp, local)
			_ = os.Remove(local)
			_ = os.Rename(dirTmp, local)
			swaps.Add(1)
		}
	}()
	var bound, refused int
	for i := 0; i < 60; i++ {
		st, out, err := runIn(t, uid, gid, []Mount{{Kind: Bind, Source: local, Dest: "/local", Beneath: root, Owner: &uid, MustBeDir: true}}, "cat /local/marker")
		switch {
		case err != nil && (strings.Contains(err.Error(), "a link") || strings.Contains(err.Error(), "no such file")):
			refused++
		case err != nil:
			t.Errorf("start %d: %v", i, err)
		case out == "real":
			bound++
		default:
			t.Errorf("start %d: the bind landed elsewhere: %q (exit %d)", i, out, st.Code)
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d starts bound the real dir, %d were refused, %d swaps", bound, refused, swaps.Load())
	if bound == 0 || refused == 0 {
		t.Errorf("the race was not exercised: %d bound, %d refused", bound, refused)
	}
}

// Ready is waited for before anything of the launch runs, and its error
// stops the launch: no command, no status file.
func TestReadyGatesTheLaunch(t *testing.T) {
	bw := needSandbox(t)
	uid, gid := nobody(t)
	root := closedRoot(t)
	dir := ownedDir(t, root, "out", uid, gid, "")
	marker := filepath.Join(dir, "ran")
	launch := func(ready func() error) (*Sandbox, error) {
		return Start(Launch{
			Bwrap: bw, Shim: []string{os.Args[0], ShimCommand},
			Spec: &Spec{
				Command: "/bin/sh", Args: []string{"-c", "touch /out/ran"},
				Env:    map[string]string{"PATH": "/usr/bin:/bin"},
				Mounts: append(SystemMounts(16<<20), Mount{Kind: Bind, Source: dir, Dest: "/out", Beneath: root, Owner: &uid, MustBeDir: true}),
				UID:    uid, GID: gid,
			},
			StatusPath: filepath.Join(root, "status"), Seccomp: testFilter(t),
			StageDir: stageDir(t), Ready: ready,
		})
	}
	refused := errors.New("not ready")
	if sb, err := launch(func() error { time.Sleep(200 * time.Millisecond); return refused }); !errors.Is(err, refused) {
		if sb != nil {
			sb.Kill()
		}
		t.Fatalf("Start: %v, want the Ready error", err)
	}
	time.Sleep(300 * time.Millisecond)
	for _, p := range []string{marker, filepath.Join(root, "status")} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after a launch that was not ready: %v", p, err)
		}
	}
	// Ready first, then the command: a command started alongside Ready
	// would have run well within its 200 ms.
	var readyFrom time.Time
	sb, err := launch(func() error {
		readyFrom = time.Now()
		time.Sleep(200 * time.Millisecond)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !sb.Wait(30*time.Second) || sb.Status().Code != 0 {
		t.Fatalf("sandbox: %+v", sb.Status())
	}
	fi, err := os.Stat(marker)
	if err != nil {
		t.Fatal(err)
	}
	if ran := fi.ModTime().Sub(readyFrom); ran < 150*time.Millisecond {
		t.Errorf("the command ran %v after Ready was called, before it returned (200 ms)", ran)
	}
}

// mountNSFDs lists this process's descriptors that are mount namespaces.
func mountNSFDs(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "mnt:[") {
			out = append(out, l)
		}
	}
	return out
}

// While a sandbox runs, the launcher's process holds the mount namespaces
// of bwrap's monitor and of the sandbox (so that neither's last process
// tears its mounts down on the exit's path), and lets go of both once the
// sandbox has ended.
func TestSandboxMountNamespacesHeldUntilItEnds(t *testing.T) {
	bw := needSandbox(t)
	uid, gid := nobody(t)
	root := closedRoot(t)
	// The launchers' template namespace is held for the process's life.
	if _, err := templateNS([]string{os.Args[0], ShimCommand}, root); err != nil {
		t.Fatal(err)
	}
	own, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	sb, err := Start(Launch{
		Bwrap: bw, Shim: []string{os.Args[0], ShimCommand},
		Spec: &Spec{
			Command: "/bin/sleep", Args: []string{"30"},
			Env:    map[string]string{"PATH": "/usr/bin:/bin"},
			Mounts: SystemMounts(16 << 20),
			UID:    uid, GID: gid,
		},
		StatusPath: filepath.Join(root, "status"), Seccomp: testFilter(t),
		StageDir: stageDir(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	// By name, not by count: an earlier test's sandbox may still be letting
	// go of its own.
	held := mountNSFDs(t)
	var theirs []string
	for _, pid := range []int{sb.Monitor.Pid, sb.Init.Pid} {
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
		if err != nil {
			t.Fatal(err)
		}
		theirs = append(theirs, ns)
	}
	if theirs[0] == theirs[1] || theirs[0] == own || theirs[1] == own {
		t.Fatalf("the monitor's and the sandbox's mount namespaces %v, this process's %s: want three", theirs, own)
	}
	for _, ns := range theirs {
		if !slices.Contains(held, ns) {
			t.Errorf("while running: mount namespaces held %v, want the monitor's and the sandbox's %v among them", held, theirs)
		}
	}
	if err := sb.Kill(); err != nil {
		t.Fatal(err)
	}
	if !sb.Wait(30 * time.Second) {
		t.Fatal("sandbox did not end")
	}
	sb.Released()
	left := mountNSFDs(t)
	for _, ns := range theirs {
		if slices.Contains(left, ns) {
			t.Errorf("once released: mount namespaces held %v, the sandbox's %v among them", left, theirs)
		}
	}
}

// A start refused before its launch leaves no status file behind (it is made
// alongside the launch's preparation), so the same task can start again.
func TestRefusedStartLeavesNoStatusFile(t *testing.T) {
	uid, gid := nobody(t)
	bw := needSandbox(t)
	root := closedRoot(t)
	status := filepath.Join(t.TempDir(), "status")
	launch := func(source string) error {
		sb, err := Start(Launch{
			Bwrap: bw, Shim: []string{os.Args[0], ShimCommand},
			Spec: &Spec{
				Command: "/bin/true", Env: map[string]string{"PATH": "/usr/bin:/bin"},
				Mounts: append(SystemMounts(16<<20), Mount{Kind: Bind, Source: source, Dest: "/local", Beneath: root}),
				UID:    uid, GID: gid,
			},
			StatusPath: status, StageDir: stageDir(t),
		})
		if err == nil && (!sb.Wait(30*time.Second) || sb.Status().Code != 0) {
			return fmt.Errorf("sandbox: %+v", sb.Status())
		}
		return err
	}
	for i := 0; i < 20; i++ {
		if err := launch(filepath.Join(root, "nope")); err == nil || !strings.Contains(err.Error(), "no such file") {
			t.Fatalf("start with a missing source: %v", err)
		}
		if _, err := os.Lstat(status); !os.IsNotExist(err) {
			t.Fatalf("after a refused start, the status file: %v", err)
		}
	}
	ownedDir(t, root, "local", uid, gid, "local")
	if err := launch(filepath.Join(root, "local")); err != nil {
		t.Fatalf("the start after them: %v", err)
	}
}
