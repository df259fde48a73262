package bwrap

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// entryPaths lists the assembled root's entries as "kind path".
func entryPaths(m Mount) []string {
	names := map[TreeEntryKind]string{TreeBind: "bind", TreeNode: "node", TreeLink: "link", TreeData: "data",
		rootPath: "path", rootDevPath: "devpath", rootFD: "fd", rootTmpfs: "tmpfs", rootDir: "dir"}
	var out []string
	for _, e := range m.Entries {
		out = append(out, names[e.Kind]+" "+e.Path)
	}
	return out
}

func dests(ms []Mount) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Dest)
	}
	return out
}

// The launcher takes the run of mounts it can build as bwrap would, from the
// first; /proc is left to bwrap with only its mount point made; the first
// mount it cannot take ends the run, and it and every later one are bwrap's,
// in order, with their sources' descriptors and staging paths re-keyed.
func TestAssembleRootTakesTheLeadingRun(t *testing.T) {
	uid := uint32(1000)
	mounts := []Mount{
		{Kind: ROBind, Source: "/usr", Dest: "/usr"},
		{Kind: Symlink, Source: "usr/lib", Dest: "/lib"},
		{Kind: Tree, Dest: "/etc", Entries: []TreeEntry{{Kind: TreeBind, Source: "/etc/hosts", Path: "hosts"}, {Kind: TreeData, Path: "passwd", Data: []byte("x")}}},
		{Kind: Procfs, Dest: "/proc"},
		{Kind: Tree, Dest: "/dev", Devices: true, Entries: []TreeEntry{{Kind: TreeNode, Source: "/dev/null", Path: "null"}, {Kind: TreeLink, Source: "/proc/self/fd", Path: "fd"}}},
		{Kind: Tmpfs, Dest: "/dev/shm", Size: 1 << 20},
		{Kind: Dir, Dest: "/dev/pts", Perms: 0o755},
		{Kind: RemountRO, Dest: "/dev"},
		{Kind: DevBind, Source: "/dev/fuse", Dest: "/dev/fuse"},
		{Kind: Tmpfs, Dest: "/tmp", Perms: 0o1777},
		{Kind: Bind, Source: "/a/local", Dest: "/local", Beneath: "/a", Owner: &uid},    // 10: fd 7
		{Kind: ROBind, Source: "/a/secrets", Dest: "/secrets", Beneath: "/a"},           // 11: fd 8
		{Kind: ROBind, Source: "/a/gone", Dest: "/gone", Beneath: "/a", Optional: true}, // 12: missing
		{Kind: Bind, Source: "/a/alloc", Dest: "/alloc", Beneath: "/a"},                 // 13: fd 9
		{Kind: ROBind, Source: "/a/alloc/logs", Dest: "/alloc/logs", Beneath: "/a"},     // 14: fd 10, below a bind: bwrap's
		{Kind: ROBind, Source: "/opt/R", Dest: "/opt/R"},                                // after the run: bwrap's
	}
	fdOf := map[int]int{10: 7, 11: 8, 13: 9, 14: 10}
	staged := map[int]string{10: "/s/7", 11: "/s/8", 12: "", 13: "/s/9", 14: "/s/10"}
	logs := os.NewFile(0, "logs")
	opened := map[int]*os.File{14: logs}
	out, outStaged, outOpened := assembleRoot(mounts, fdOf, staged, opened)

	if got, want := dests(out), []string{"/", "/proc", "/alloc/logs", "/opt/R"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("mounts %q, want %q", got, want)
	}
	root := out[0]
	if !root.root || root.Kind != Tree || !root.Devices {
		t.Fatalf("first mount %+v, want the assembled root", root)
	}
	want := []string{"path usr", "link lib", "dir etc", "bind etc/hosts", "data etc/passwd", "dir proc",
		"dir dev", "node dev/null", "link dev/fd", "tmpfs dev/shm", "dir dev/pts", "devpath dev/fuse",
		"tmpfs tmp", "fd local", "fd secrets", "fd alloc"}
	if got := entryPaths(root); !reflect.DeepEqual(got, want) {
		t.Errorf("root entries\n%q\nwant\n%q", got, want)
	}
	for _, e := range root.Entries {
		switch e.Path {
		case "local":
			if e.root.fd != 7 || !e.root.writable {
				t.Errorf("/local: %+v, want descriptor 7, writable", e.root)
			}
		case "secrets":
			if e.root.fd != 8 || e.root.writable {
				t.Errorf("/secrets: %+v, want descriptor 8, read-only", e.root)
			}
		case "tmp":
			if e.root.perms != 0o1777 || e.root.size != 0 {
				t.Errorf("/tmp: %+v", e.root)
			}
		case "dev/shm":
			if e.root.perms != 0o755 || e.root.size != 1<<20 {
				t.Errorf("/dev/shm: %+v, want bwrap's default mode and the size", e.root)
			}
		}
	}
	if !reflect.DeepEqual(outStaged, map[int]string{2: "/s/10"}) || outOpened[2] != logs || len(outOpened) != 1 {
		t.Errorf("re-keyed maps: staged %v opened %v, want only /alloc/logs at 2", outStaged, outOpened)
	}
	if fds := takenFDs(root); !reflect.DeepEqual(fds, []int{7, 8, 9}) {
		t.Errorf("taken descriptors %v, want 7 8 9 (not 10: bwrap binds it from the stage)", fds)
	}
	// The launcher's flags for it, and bwrap's: one bind as the root, no
	// remount of / (the root is read-only already), then bwrap's own.
	trees, _, err := treeArgs(out, "/s", outStaged, func(int) (bool, bool) { return true, false }, 20)
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Join(trees, " ")
	for _, w := range []string{"-roottree tree0 ", "-tree-path /usr usr ", "-tree-fd-rw 7 local ", "-tree-fd 8 secrets ",
		"-tree-tmpfs 0 1777 tmp ", "-tree-tmpfs 1048576 755 dev/shm ", "-tree-devpath /dev/fuse dev/fuse ", "-tree-dir proc ", "-tree-dir opt/R"} {
		if !strings.Contains(args+" ", w) {
			t.Errorf("launcher flags lack %q:\n%s", w, args)
		}
	}
	if strings.Contains(args, "alloc/logs") {
		t.Errorf("a mount point made inside the bound /alloc: %s", args)
	}
	spec := &Spec{Command: "/bin/true", UID: 1000, GID: 1000, Mounts: out}
	opts, _, err := spec.split(outStaged)
	if err != nil {
		t.Fatal(err)
	}
	o := strings.Join(opts, " ")
	if !strings.Contains(o, "--dev-bind /s/tree0 / --proc /proc --ro-bind /s/10 /alloc/logs --ro-bind /opt/R /opt/R") || strings.Contains(o, "--remount-ro /") {
		t.Errorf("bwrap's options: %s", o)
	}
}

// What ends the run: a writable bind by path, a mount below one the run took
// (a tmpfs, a bind, a tree's entry, a link) or below /proc, a tree of
// devices with a read-only bind in it, a dir of another mode, a remount of
// something not a tree. Each such mount, and the mount after it, are bwrap's.
func TestAssembleRootStops(t *testing.T) {
	usr := Mount{Kind: ROBind, Source: "/usr", Dest: "/usr"}
	after := Mount{Kind: Tmpfs, Dest: "/zzz"}
	for _, c := range []struct {
		name   string
		before []Mount
		stop   Mount
	}{
		{"writable bind by path", nil, Mount{Kind: Bind, Source: "/srv", Dest: "/srv"}},
		{"below a tmpfs", []Mount{{Kind: Tmpfs, Dest: "/tmp"}}, Mount{Kind: Tmpfs, Dest: "/tmp/x"}},
		{"below a bind", nil, Mount{Kind: ROBind, Source: "/opt", Dest: "/usr/x"}},
		{"over a bind", nil, Mount{Kind: ROBind, Source: "/opt", Dest: "/usr"}},
		{"over a tree's entry", []Mount{{Kind: Tree, Dest: "/etc", Entries: []TreeEntry{{Kind: TreeBind, Source: "/etc/hosts", Path: "hosts"}}}},
			Mount{Kind: ROBind, Source: "/x/hosts", Dest: "/etc/hosts"}},
		{"below a link", []Mount{{Kind: Symlink, Source: "usr/lib", Dest: "/lib"}}, Mount{Kind: Tmpfs, Dest: "/lib/x"}},
		{"below /proc", []Mount{{Kind: Procfs, Dest: "/proc"}}, Mount{Kind: Tmpfs, Dest: "/proc/x"}},
		{"devices tree with a bind", nil, Mount{Kind: Tree, Dest: "/dev", Devices: true, Entries: []TreeEntry{{Kind: TreeBind, Source: "/dev/null", Path: "null"}}}},
		{"dir of another mode", nil, Mount{Kind: Dir, Dest: "/d", Perms: 0o700}},
		{"tree over a bind", []Mount{{Kind: ROBind, Source: "/x/hosts", Dest: "/etc/hosts"}},
			Mount{Kind: Tree, Dest: "/etc", Entries: []TreeEntry{{Kind: TreeBind, Source: "/etc/hosts", Path: "hosts"}}}},
		{"tree over /proc", []Mount{{Kind: Procfs, Dest: "/p/proc"}}, Mount{Kind: Tree, Dest: "/p", Entries: []TreeEntry{{Kind: TreeLink, Source: "x", Path: "l"}}}},
		{"remount of a tmpfs", []Mount{{Kind: Tmpfs, Dest: "/tmp"}}, Mount{Kind: RemountRO, Dest: "/tmp"}},
		{"unclean destination", nil, Mount{Kind: Tmpfs, Dest: "/a/../b"}},
	} {
		mounts := append(append([]Mount{usr}, c.before...), c.stop, after)
		out, _, _ := assembleRoot(mounts, nil, nil, nil)
		got := dests(out[1:])
		want := []string{c.stop.Dest, after.Dest}
		if len(c.before) == 1 && c.before[0].Kind == Procfs {
			want = append([]string{c.before[0].Dest}, want...)
		}
		if !out[0].root || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: bwrap's mounts %q, want %q", c.name, got, want)
		}
	}
	// Nothing taken: the mounts as they were, no root.
	mounts := []Mount{{Kind: Bind, Source: "/srv", Dest: "/srv"}, usr}
	if out, _, _ := assembleRoot(mounts, nil, nil, nil); !reflect.DeepEqual(out, mounts) {
		t.Errorf("with nothing to take: %+v", out)
	}
}

// In the sandbox, every mount of the assembled root has the flags bwrap's
// own binds gave it: all nosuid; nodev but for device nodes; read-only but
// for the tmpfs, the devices and the writable binds. The root itself is the
// launcher's read-only tmpfs, and what the task may not change it cannot.
func TestAssembledRootFlags(t *testing.T) {
	uid, gid := nobody(t)
	dir := t.TempDir()
	for _, d := range []string{"rw", "ro"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Join(dir, d), int(uid), int(gid)); err != nil {
			t.Fatal(err)
		}
	}
	st, out, err := runIn(t, uid, gid, []Mount{
		{Kind: Bind, Source: filepath.Join(dir, "rw"), Dest: "/local", Beneath: dir, MustBeDir: true},
		{Kind: ROBind, Source: filepath.Join(dir, "ro"), Dest: "/secrets", Beneath: dir, MustBeDir: true},
	}, `awk '{print $5, $6, $(NF-2)}' /proc/self/mountinfo
for p in / /etc /etc/x /dev/x /usr/x /secrets/x /proc/x; do touch $p 2>/dev/null && echo "wrote $p"; done
for p in /tmp/x /dev/shm/x /local/x; do touch $p || echo "could not write $p"; done
echo x > /dev/null || echo "no /dev/null"`)
	if err != nil || st.Code != 0 {
		t.Fatalf("sandbox: %v %+v\n%s", err, st, out)
	}
	writable := map[string]bool{"/tmp": true, "/dev/shm": true, "/local": true, "/proc": true}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Errorf("unexpected line %q", line)
			continue
		}
		point, opts, fstype := f[0], ","+f[1]+",", f[2]
		seen[point] = true
		device := strings.HasPrefix(point, "/dev/") && point != "/dev/shm"
		switch {
		case !strings.Contains(opts, ",nosuid,"):
			t.Errorf("%s: %s, not nosuid", point, opts)
		case device == strings.Contains(opts, ",nodev,"):
			t.Errorf("%s: %s: want nodev on everything but device nodes", point, opts)
		case !device && writable[point] == strings.Contains(opts, ",ro,"):
			t.Errorf("%s: %s: want read-only but for %v and the device nodes", point, opts, writable)
		}
		if point == "/" && (fstype != "tmpfs" || !strings.Contains(opts, ",noexec,")) {
			t.Errorf("/ is %s %s, want the launcher's read-only tmpfs, noexec", fstype, opts)
		}
	}
	for _, p := range []string{"/", "/usr", "/proc", "/dev/null", "/dev/shm", "/tmp", "/local", "/secrets"} {
		if !seen[p] {
			t.Errorf("no mount at %s:\n%s", p, out)
		}
	}
	for _, bad := range []string{"wrote", "could not", "no /dev/null"} {
		if strings.Contains(out, bad) {
			t.Errorf("%s:\n%s", bad, out)
		}
	}
}

// A mount the host makes after the start, below what the sandbox binds,
// never reaches the sandbox, even where the host's mount is shared (as
// systemd makes /): every bind's copy is private, whether the launcher
// attached it in the root (a task dir, a bind by path) or bwrap bound it
// (a bind below a task dir, a bind by path from the launch's root).
func TestHostMountsDoNotReachTheSandbox(t *testing.T) {
	bw := needSandbox(t)
	uid, gid := nobody(t)
	// Where every user may look, as below /opt: the bind by path is looked
	// up as the task.
	dir, err := os.MkdirTemp("", "bwrap-r-shared")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bwrap-r-test", dir, "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH); os.Remove(dir) })
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"local", "local/sub", "sys", "sys2"} {
		p := filepath.Join(dir, d)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, int(uid), int(gid)); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	status := filepath.Join(t.TempDir(), "status")
	sb, err := Start(Launch{
		Bwrap: bw, Shim: []string{os.Args[0], ShimCommand},
		Spec: &Spec{
			Command: "/bin/sh", Args: []string{"-c", `while [ ! -e /local/go ]; do sleep 0.01; done
grep -c -e ' /local/m ' -e ' /local/sub/m ' -e ' /opt/sys/m ' -e ' /opt/sys2/m ' /proc/self/mountinfo; ls /local/m /local/sub/m /opt/sys/m /opt/sys2/m`},
			Env: map[string]string{"PATH": "/usr/bin:/bin"},
			Mounts: append(SystemMounts(16<<20),
				Mount{Kind: Bind, Source: filepath.Join(dir, "local"), Dest: "/local", Beneath: dir, MustBeDir: true},
				Mount{Kind: ROBind, Source: filepath.Join(dir, "sys"), Dest: "/opt/sys"},
				// After a bind by path the launcher does not take: bwrap's.
				Mount{Kind: Bind, Source: filepath.Join(dir, "local/sub"), Dest: "/local/sub", Beneath: dir, MustBeDir: true},
				// By path, from the launch's root.
				Mount{Kind: ROBind, Source: filepath.Join(dir, "sys2"), Dest: "/opt/sys2"}),
			UID: uid, GID: gid,
		},
		Stdout: f, Stderr: f, StatusPath: status, Seccomp: testFilter(t), StageDir: stageDir(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"local/m", "local/sub/m", "sys/m", "sys2/m"} {
		p := filepath.Join(dir, d)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("bwrap-r-late", p, "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(p, "late"), nil, 0o644)
	}
	if err := os.WriteFile(filepath.Join(dir, "local", "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if !sb.Wait(30 * time.Second) {
		_ = sb.Kill()
		t.Fatal("sandbox did not end")
	}
	b, _ := os.ReadFile(out)
	if got := strings.Fields(string(b)); len(got) == 0 || got[0] != "0" || strings.Contains(string(b), "late") {
		t.Errorf("the host's later mounts reached the sandbox:\n%s", b)
	}
}

// takenFDs lists the source descriptors the assembled root binds itself
// (the launcher does not stage them).
func takenFDs(m Mount) []int {
	var fds []int
	for _, e := range m.Entries {
		if e.Kind == rootFD {
			fds = append(fds, e.root.fd)
		}
	}
	return fds
}
