package bwrap

import (
	"golang.org/x/sys/unix"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// Without a launcher a tree is what bwrap-r's /etc and /dev always were: one
// bwrap operation per entry.
func TestTreeArgvWithoutLauncher(t *testing.T) {
	argv, err := (&Spec{Command: "/bin/true", UID: 1000, GID: 1000, Mounts: SystemMounts(1 << 20)}).Argv()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(argv, " ")
	for _, want := range []string{
		"--ro-bind-try /etc/passwd /etc/passwd --ro-bind-try /etc/protocols /etc/protocols",
		"--ro-bind-try /etc/ssl/certs /etc/ssl/certs",
		"--proc /proc --perms 0755 --tmpfs /dev --dev-bind-try /dev/null /dev/null",
		"--dev-bind-try /dev/tty /dev/tty --symlink /proc/self/fd /dev/fd",
		"--symlink /proc/self/fd/2 /dev/stderr --symlink pts/ptmx /dev/ptmx --perms 1777 --size 1048576 --tmpfs /dev/shm --perms 0755 --dir /dev/pts --remount-ro /dev",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("argv lacks %q:\n%s", want, got)
		}
	}
}

// The launcher's flags for a tree: its entries, then a mount point for each
// later mount inside it, except inside a bound host directory or a link.
func TestTreeArgs(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	mounts := []Mount{
		{Kind: ROBind, Source: "/usr", Dest: "/usr"},
		{Kind: Tree, Dest: "/etc", Entries: []TreeEntry{
			{Kind: TreeBind, Source: "/etc/hosts", Path: "hosts"},
			{Kind: TreeBind, Source: "/etc/ssl/certs", Path: "ssl/certs"},
			{Kind: TreeLink, Source: "/proc/self/mounts", Path: "mtab"},
			{Kind: TreeData, Data: []byte("x:1\n"), Path: "passwd"},
		}},
		{Kind: ROBind, Source: file, Dest: "/etc/hosts"},
		{Kind: Bind, Source: dir, Dest: "/etc/app/conf.d"},
		{Kind: ROBind, Source: file, Dest: "/etc/app/key"},
		{Kind: ROBind, Source: filepath.Join(dir, "missing"), Dest: "/etc/gone", Optional: true},
		{Kind: Tmpfs, Dest: "/etc/cache"},
		{Kind: ROBind, Source: file, Dest: "/etc/ssl/certs/extra.pem"},
		{Kind: Bind, Source: dir, Dest: "/etc/mtab/x"},
		{Kind: RemountRO, Dest: "/etc"},
		{Kind: Tmpfs, Dest: "/tmp"},
	}
	staged := map[int]string{}
	args, data, err := treeArgs(mounts, "/stage", staged, func(j int) (bool, bool) { return pathKind(mounts[j]) }, 9)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-tree", "tree1",
		"-tree-bind", "/etc/hosts", "hosts", "-tree-bind", "/etc/ssl/certs", "ssl/certs", "-tree-link", "/proc/self/mounts", "mtab",
		"-tree-data", "9", "passwd",
		"-tree-file", "hosts", "-tree-dir", "app/conf.d", "-tree-file", "app/key", "-tree-dir", "cache"}
	if !reflect.DeepEqual(args, want) {
		t.Errorf("flags\n got %q\nwant %q", args, want)
	}
	if len(data) != 1 || string(data[0]) != "x:1\n" {
		t.Errorf("data %q, want the passwd entry's", data)
	}
	if staged[1] != "/stage/tree1" || len(staged) != 1 {
		t.Errorf("staged %v, want the tree at /stage/tree1", staged)
	}
	opts, _, err := (&Spec{Command: "/bin/true", UID: 1000, GID: 1000, Mounts: mounts}).split(staged)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(opts, " "); !strings.Contains(got, "--ro-bind /usr /usr --ro-bind /stage/tree1 /etc --ro-bind "+file+" /etc/hosts") {
		t.Errorf("bwrap binds the tree as one mount: %s", got)
	}

	for name, bad := range map[string][]Mount{
		"dotdot entry":    {{Kind: Tree, Dest: "/etc", Entries: []TreeEntry{{Kind: TreeBind, Source: "/etc/hosts", Path: "../hosts"}}}},
		"absolute entry":  {{Kind: Tree, Dest: "/etc", Entries: []TreeEntry{{Kind: TreeBind, Source: "/etc/hosts", Path: "/hosts"}}}},
		"relative source": {{Kind: Tree, Dest: "/etc", Entries: []TreeEntry{{Kind: TreeBind, Source: "etc/hosts", Path: "hosts"}}}},
		"node in ro tree": {{Kind: Tree, Dest: "/dev", Entries: []TreeEntry{{Kind: TreeNode, Source: "/dev/null", Path: "null"}}}},
		"tree at /":       {{Kind: Tree, Dest: "/"}},
		"link into tree":  {{Kind: Tree, Dest: "/etc"}, {Kind: Symlink, Source: "/x", Dest: "/etc/x"}},
		"data and source": {{Kind: Tree, Dest: "/etc", Entries: []TreeEntry{{Kind: TreeData, Source: "/etc/passwd", Path: "passwd"}}}},
		"data too large":  {{Kind: Tree, Dest: "/etc", Entries: []TreeEntry{{Kind: TreeData, Data: make([]byte, TreeDataMax+1), Path: "passwd"}}}},
	} {
		if _, _, err := treeArgs(bad, "/stage", map[int]string{}, func(int) (bool, bool) { return false, false }, 9); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Without the launcher there is nothing to write the data with.
	if _, err := (&Spec{Command: "/bin/true", UID: 1000, GID: 1000, Mounts: mounts}).Argv(); err == nil || !strings.Contains(err.Error(), "launcher") {
		t.Errorf("a data entry without the launcher: %v, want a refusal naming the launcher", err)
	}
}

// startWith runs a script in a sandbox of the system mounts plus extra, built
// by the launcher with a staging dir, and returns how it ended and its output
// (or Start's error).
func startWith(t *testing.T, extra []Mount, script string) (ExitStatus, string, error) {
	t.Helper()
	uid, gid := nobody(t)
	return runIn(t, uid, gid, extra, script)
}

// The launcher builds /etc and /dev in the sandbox's root, holding what they
// held as binds one by one: the same entries, read-only, device nodes usable.
func TestTreesInTheSandbox(t *testing.T) {
	st, out, err := startWith(t, nil, `set -e
ls -A /etc | tr '\n' ' '; echo
ls -A /etc/ssl | tr '\n' ' '; echo
ls -A /dev | tr '\n' ' '; echo
awk '$5 == "/" || $5 == "/etc" || $5 == "/dev" {print "mount", $5, $(NF-1)}' /proc/self/mountinfo
! touch /etc/x 2>/dev/null
! touch /etc/ssl/x 2>/dev/null
! mkdir /dev/x 2>/dev/null
! touch /etc/hosts 2>/dev/null
echo x > /dev/null
[ "$(head -c 3 /dev/zero | wc -c)" = 3 ]
[ "$(head -c 3 /dev/urandom | wc -c)" = 3 ]
echo y > /dev/shm/y
[ "$(readlink /dev/fd)" = /proc/self/fd ]
[ -r /etc/passwd ] && [ -r /etc/ssl/certs ]
echo done`)
	if err != nil || st.Code != 0 || !strings.HasSuffix(strings.TrimSpace(out), "done") {
		t.Fatalf("sandbox: %v %+v\n%s", err, st, out)
	}
	lines := strings.Split(out, "\n")
	var etc []string
	ssl := false
	for _, p := range etcFiles {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		name := strings.Split(strings.TrimPrefix(p, "/etc/"), "/")[0]
		if name == "ssl" {
			ssl = true
		}
		if !slices.Contains(etc, name) {
			etc = append(etc, name)
		}
	}
	slices.Sort(etc)
	got := strings.Fields(lines[0])
	slices.Sort(got)
	if !reflect.DeepEqual(got, etc) {
		t.Errorf("/etc holds %q, want exactly the host's %q", got, etc)
	}
	if ssl && strings.TrimSpace(lines[1]) != "certs openssl.cnf" {
		t.Errorf("/etc/ssl holds %q", lines[1])
	}
	if got := strings.Fields(lines[2]); !reflect.DeepEqual(got, []string{"fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"}) {
		t.Errorf("/dev holds %q", got)
	}
	// No mount of their own: they lie on the root the launcher assembled.
	if !strings.Contains(out, "mount / bwrap-r-sandbox") || strings.Contains(out, "mount /etc") || strings.Contains(out, "mount /dev") {
		t.Errorf("/etc and /dev do not lie on the launcher's root:\n%s", out)
	}
}

// Every start builds its trees from the host as it is then: a file replaced
// (a new inode, as by rename) shows at the next start.
func TestTreeIsNeverStale(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "app.conf")
	tree := []Mount{{Kind: Tree, Dest: "/opt/cfg", Entries: []TreeEntry{{Kind: TreeBind, Source: conf, Path: "app.conf"}}}}
	for _, v := range []string{"one", "two"} {
		tmp := conf + ".new"
		if err := os.WriteFile(tmp, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, conf); err != nil {
			t.Fatal(err)
		}
		st, out, err := startWith(t, tree, `cat /opt/cfg/app.conf`)
		if err != nil || st.Code != 0 || out != v {
			t.Fatalf("after writing %q the sandbox read %q (%v %+v)", v, out, err, st)
		}
	}
}

// A mount inside a tree gets its mount point on the tree's tmpfs; one inside
// a host directory bound in the tree gets none: the launcher, as root, never
// makes anything there (bwrap, as the task, fails the start instead).
func TestTreeNeverWritesTheHost(t *testing.T) {
	host := stageDir(t)
	// bwrap binds data by path as the task: every parent must be open to it.
	data := stageDir(t)
	if err := os.Chmod(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	tree := Mount{Kind: Tree, Dest: "/opt/cfg", Entries: []TreeEntry{{Kind: TreeBind, Source: host, Path: "d"}}}
	st, out, err := startWith(t, []Mount{tree, {Kind: ROBind, Source: data, Dest: "/opt/cfg/sub/data"}}, `cat /opt/cfg/sub/data/f`)
	if err != nil || st.Code != 0 || out != "data" {
		t.Fatalf("a mount inside the tree: %q (%v %+v)", out, err, st)
	}
	st, out, err = startWith(t, []Mount{tree, {Kind: ROBind, Source: data, Dest: "/opt/cfg/d/new"}}, `true`)
	if err == nil && st.Err == nil && st.Code == 0 {
		t.Errorf("a mount inside the host directory bound in the tree started: %q", out)
	}
	if _, err := os.Lstat(filepath.Join(host, "new")); err == nil {
		t.Errorf("something made %s on the host", filepath.Join(host, "new"))
	}
}

// The shim builds trees only as told: clean relative paths, nothing through
// a link or into a bound host directory, device nodes only in a tree for
// devices, and never without a staging dir.
func TestShimTreeRefusals(t *testing.T) {
	host := t.TempDir()
	ids := []string{"-uid", "65534", "-gid", "65534"}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no stage", []string{"-tree", "t", "--", "/bin/true"}, "need -stage"},
		{"entry before tree", []string{"-stage", stageDir(t), "-tree-dir", "a", "-tree", "t", "--", "/bin/true"}, "a -tree or -devtree first"},
		{"tree name with slash", []string{"-stage", stageDir(t), "-tree", "a/b", "--", "/bin/true"}, "want a plain name"},
		{"dotdot", []string{"-stage", stageDir(t), "-tree", "t", "-tree-dir", "a/../../x", "--", "/bin/true"}, "not a clean relative path"},
		{"absolute", []string{"-stage", stageDir(t), "-tree", "t", "-tree-file", "/x", "--", "/bin/true"}, "not a relative path"},
		{"relative source", []string{"-stage", stageDir(t), "-tree", "t", "-tree-bind", "etc/hosts", "hosts", "--", "/bin/true"}, "not an absolute path"},
		{"through a link", []string{"-stage", stageDir(t), "-tree", "t", "-tree-link", host, "l", "-tree-bind", "/etc/hosts", "l/hosts", "--", "/bin/true"}, "tree entry l/hosts"},
		{"into a bound directory", []string{"-stage", stageDir(t), "-tree", "t", "-tree-bind", host, "d", "-tree-bind", "/etc/hosts", "d/hosts", "--", "/bin/true"}, "tree entry d/hosts"},
		{"node outside a device tree", []string{"-stage", stageDir(t), "-tree", "t", "-tree-node", "/dev/null", "null", "--", "/bin/true"}, "not a device node in a tree for devices"},
		{"not a node", []string{"-stage", stageDir(t), "-devtree", "t", "-tree-node", "/etc/hosts", "null", "--", "/bin/true"}, "not a device node"},
		{"missing path", []string{"-stage", stageDir(t), "-tree", "t", "-tree-bind", "/etc/hosts"}, "needs a source and a path"},
		{"root's entry in a tree", []string{"-stage", stageDir(t), "-tree", "t", "-tree-tmpfs", "0", "755", "x", "--", "/bin/true"}, "only a -roottree has it"},
		{"root's bind in a tree", []string{"-stage", stageDir(t), "-devtree", "t", "-tree-devpath", "/dev/null", "x", "--", "/bin/true"}, "only a -roottree has it"},
		{"root tree after a tree", []string{"-stage", stageDir(t), "-tree", "t", "-roottree", "r", "--", "/bin/true"}, "it comes first"},
		{"descriptor not a source", []string{"-stage", stageDir(t), "-roottree", "r", "-tree-fd", "2", "x", "--", "/bin/true"}, "want an open descriptor above 6"},
		{"tmpfs size", []string{"-stage", stageDir(t), "-roottree", "r", "-tree-tmpfs", "-1", "755", "x", "--", "/bin/true"}, "not a size"},
		{"tmpfs mode", []string{"-stage", stageDir(t), "-roottree", "r", "-tree-tmpfs", "0", "9", "x", "--", "/bin/true"}, "not a mode"},
		{"tmpfs without a path", []string{"-stage", stageDir(t), "-roottree", "r", "-tree-tmpfs", "0", "755"}, "needs a size, a mode and a path"},
		{"path the task cannot reach", []string{"-stage", stageDir(t), "-roottree", "r", "-tree-path", filepath.Join(host, "x"), "x", "--", "/bin/true"}, "as uid 65534 gid 65534: Permission denied"},
		{"missing root path", []string{"-stage", stageDir(t), "-roottree", "r", "-tree-path", "/nonexistent-bwrap-r", "x", "--", "/bin/true"}, "No such file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, stderr, _, code := runShim(t, append(ids, c.args...)...)
			if code != 125 || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want 125 and %q", code, stderr, c.want)
			}
		})
	}
	if entries, _ := os.ReadDir(host); len(entries) != 0 {
		t.Errorf("the shim made %v in a host directory", entries)
	}
}

// A tree's binds are made when the sandbox starts, not later: a sandbox that
// runs on keeps what its tree held at its start, whatever the host does.
func TestTreeHeldFromStart(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "app.conf")
	if err := os.WriteFile(conf, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	uid, gid := nobody(t)
	bw := needSandbox(t)
	out := filepath.Join(t.TempDir(), "out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mounts := append(SystemMounts(16<<20), Mount{Kind: Tree, Dest: "/opt/cfg", Entries: []TreeEntry{{Kind: TreeBind, Source: conf, Path: "app.conf"}}})
	sb, err := Start(Launch{
		Bwrap: bw, Shim: []string{os.Args[0], ShimCommand},
		Spec:   &Spec{Command: "/bin/sh", Args: []string{"-c", "read x; cat /opt/cfg/app.conf"}, Env: map[string]string{"PATH": "/usr/bin:/bin"}, Mounts: mounts, UID: uid, GID: gid},
		Stdout: f, Stderr: f, StatusPath: filepath.Join(t.TempDir(), "status"), Seccomp: testFilter(t), StageDir: stageDir(t),
		Stdin: mustPipeReader(t, "go\n", 300*time.Millisecond),
	})
	if err != nil {
		t.Fatal(err)
	}
	tmp := conf + ".new"
	if err := os.WriteFile(tmp, []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, conf); err != nil {
		t.Fatal(err)
	}
	if !sb.Wait(30 * time.Second) {
		_ = sb.Kill()
		t.Fatal("sandbox did not end")
	}
	if b, _ := os.ReadFile(out); string(b) != "one" {
		t.Errorf("the running sandbox read %q, want what its tree held at start", b)
	}
}

// mustPipeReader returns a pipe's read end that gets text after delay.
func mustPipeReader(t *testing.T, text string, delay time.Duration) *os.File {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	go func() {
		time.Sleep(delay)
		w.WriteString(text)
		w.Close()
	}()
	return r
}

// A small file every user may read is copied into its tree (no mount for
// bwrap to parse and tear down); any other is bound, so that what the task
// may read of it is still the host file's own permissions.
func TestTreeCopiesOnlyWhatEveryoneMayRead(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	open, closed := filepath.Join(dir, "open.conf"), filepath.Join(dir, "closed.conf")
	if err := os.WriteFile(open, []byte("open"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(closed, []byte("closed"), 0o640); err != nil {
		t.Fatal(err)
	}
	uid, gid := nobody(t)
	st, out, err := runIn(t, uid, gid, []Mount{{Kind: Tree, Dest: "/opt/cfg", Entries: []TreeEntry{
		{Kind: TreeBind, Source: open, Path: "open.conf"},
		{Kind: TreeBind, Source: closed, Path: "closed.conf"},
	}}}, "cat /opt/cfg/open.conf; cat /opt/cfg/closed.conf 2>/dev/null || echo ' refused'; grep -o ' /opt/cfg/[a-z.]*' /proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if st.Code != 0 || out != "open refused\n /opt/cfg/closed.conf\n" {
		t.Errorf("exit %d %v, output %q; want the open file copied (read, no mount) and the closed one bound (unread, a mount)", st.Code, st.Err, out)
	}
}

// NameUser adds the task's user and group to the host's files, and only
// where they have neither its ID nor its name.
func TestNameUser(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	etc := func(passwd, group string) []Mount {
		return []Mount{{Kind: Tree, Dest: "/etc", Entries: []TreeEntry{
			{Kind: TreeBind, Source: "/etc/hosts", Path: "hosts"},
			{Kind: TreeBind, Source: passwd, Path: "passwd"},
			{Kind: TreeBind, Source: group, Path: "group"},
		}}}
	}
	passwd := write("passwd", "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin")
	group := write("group", "root:x:0:\n")
	in := etc(passwd, group)
	got, err := NameUser(in, "nomad-80123", 80123, 80124, "/local")
	if err != nil {
		t.Fatal(err)
	}
	e := got[0].Entries
	if e[0].Kind != TreeBind || e[1].Kind != TreeData || e[2].Kind != TreeData {
		t.Fatalf("entries %+v: want hosts bound, passwd and group as data", e)
	}
	if want := "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\nnomad-80123:x:80123:80124::/local:/bin/sh\n"; string(e[1].Data) != want {
		t.Errorf("passwd\n%s\nwant\n%s", e[1].Data, want)
	}
	if want := "root:x:0:\nnomad-80123:x:80124:\n"; string(e[2].Data) != want {
		t.Errorf("group\n%s\nwant\n%s", e[2].Data, want)
	}
	if in[0].Entries[1].Kind != TreeBind {
		t.Error("NameUser changed the mounts it was given")
	}

	// The host's own entries win: by ID, and by name.
	for _, c := range []struct {
		name     string
		uid, gid uint32
	}{{"nomad-65534", 65534, 65534}, {"nobody", 80123, 0}} {
		got, err := NameUser(etc(passwd, group), c.name, c.uid, c.gid, "/local")
		if err != nil {
			t.Fatal(err)
		}
		if got[0].Entries[1].Kind != TreeBind {
			t.Errorf("%s (uid %d): the host's passwd has it, yet it was rewritten", c.name, c.uid)
		}
	}
	// A host file the launcher would not copy is bound as the host has it:
	// one only root may read, a FIFO (never opened for reading), a larger
	// one.
	closed := write("closed", "root:x:0:0:secret:/root:/bin/bash\n")
	if err := os.Chmod(closed, 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	large := write("large", strings.Repeat("u:x:1:1::/:/bin/sh\n", TreeDataMax/19+1))
	for _, src := range []string{closed, fifo, large} {
		got, err := NameUser(etc(src, group), "nomad-80123", 80123, 80123, "/local")
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if e := got[0].Entries[1]; e.Kind != TreeBind || e.Source != src {
			t.Errorf("%s: passwd entry %+v, want the host's bound as it is", src, e)
		}
	}
	// The written file has nothing below it that could be a mount point.
	named, err := NameUser(append(SystemMounts(1<<20), Mount{Kind: Bind, Source: dir, Dest: "/etc/passwd/x"}), "nomad-80123", 80123, 80123, "/local")
	if err != nil {
		t.Fatal(err)
	}
	flags, _, err := treeArgs(named, "/stage", map[int]string{}, func(int) (bool, bool) { return true, false }, 9)
	if err != nil {
		t.Fatal(err)
	}
	if j := strings.Join(flags, " "); strings.Contains(j, "passwd/x") {
		t.Errorf("a mount point made below the written passwd: %s", j)
	}
	for _, bad := range []struct{ name, home string }{{"x:0:0", "/local"}, {"a\nroot", "/local"}, {"", "/local"}, {"nomad-1", "/lo:cal"}, {"nomad-1", "local"}} {
		if _, err := NameUser(etc(passwd, group), bad.name, 80123, 80123, bad.home); err == nil {
			t.Errorf("name %q home %q: accepted", bad.name, bad.home)
		}
	}
}

// In the sandbox the task's user has a name, the files stay read-only and
// root's, and the descriptors that carried them do not reach the task.
func TestNamedUserInTheSandbox(t *testing.T) {
	const uid, gid = 80123, 80124
	mounts, err := NameUser(SystemMounts(16<<20), "nomad-80123", uid, gid, "/tmp")
	if err != nil {
		t.Fatal(err)
	}
	st, out, err := runWith(t, uid, gid, mounts, `id -un; id -gn; grep '^nomad-80123:' /etc/passwd
head -1 /etc/passwd; stat -c '%a' /etc/passwd /etc/group
ls /proc/self/fd | tr '\n' ' '; echo
if (echo x >> /etc/passwd) 2>/dev/null; then echo written; else echo refused; fi`)
	if err != nil || st.Code != 0 {
		t.Fatalf("%v %+v: %s", err, st, out)
	}
	host, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(host), "\n")
	want := "nomad-80123\nnomad-80123\nnomad-80123:x:80123:80124::/tmp:/bin/sh\n" + first + "\n644\n644\n0 1 2 3 \nrefused\n"
	if out != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
}
