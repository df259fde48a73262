package preflight

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/bwrap-r/bwrap-r/bwrap"
	"github.com/bwrap-r/bwrap-r/internal/testnet"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case ProbeCommand:
			os.Exit(RunProbe(os.Args[2:]))
		}
	}
	os.Exit(m.Run())
}

func writeSysctls(t *testing.T, values map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for k, v := range values {
		p := filepath.Join(dir, strings.ReplaceAll(k, ".", "/"))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestUserNamespaceSysctls(t *testing.T) {
	cases := []struct {
		name   string
		values map[string]string
		want   Result
		detail string
	}{
		{"debian default", map[string]string{"kernel.unprivileged_userns_clone": "1", "user.max_user_namespaces": "63000"}, OK, "63000"},
		{"clone off", map[string]string{"kernel.unprivileged_userns_clone": "0", "user.max_user_namespaces": "63000"}, Error, "unprivileged_userns_clone = 0"},
		{"max zero", map[string]string{"user.max_user_namespaces": "0"}, Error, "max_user_namespaces = 0"},
		{"max low", map[string]string{"user.max_user_namespaces": "50"}, Warning, "= 50"},
		{"apparmor", map[string]string{"user.max_user_namespaces": "63000", "kernel.apparmor_restrict_unprivileged_userns": "1"}, Error, "apparmor"},
		{"no userns", map[string]string{}, Error, "not readable"},
	}
	for _, c := range cases {
		r := &Report{}
		checkUserNamespaces(r, writeSysctls(t, c.values))
		got, _ := r.Get("userns")
		if got.Result != c.want || !strings.Contains(got.Detail, c.detail) {
			t.Errorf("%s: got %s %q, want %s containing %q", c.name, got.Result, got.Detail, c.want, c.detail)
		}
		if got.Result != OK && got.Fix == "" {
			t.Errorf("%s: no fix given", c.name)
		}
	}
}

func TestCgroupCheck(t *testing.T) {
	write := func(dir, file, content string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	all := "cpuset cpu io memory hugetlb pids rdma\n"
	v2 := t.TempDir()
	write(v2, "cgroup.controllers", all)
	v2missing := t.TempDir()
	write(v2missing, "cgroup.controllers", "cpu io memory\n")
	// The client made its partitions, but memory is not enabled for the
	// scopes below share.slice.
	v2undelegated := t.TempDir()
	write(v2undelegated, "cgroup.controllers", all)
	write(filepath.Join(v2undelegated, "nomad.slice"), "cgroup.controllers", all)
	write(filepath.Join(v2undelegated, "nomad.slice", "share.slice"), "cgroup.subtree_control", "cpuset cpu pids\n")
	v2delegated := t.TempDir()
	write(v2delegated, "cgroup.controllers", all)
	write(filepath.Join(v2delegated, "nomad.slice", "share.slice"), "cgroup.subtree_control", "cpuset cpu io memory pids\n")
	write(filepath.Join(v2delegated, "nomad.slice", "reserve.slice"), "cgroup.subtree_control", "cpuset cpu io memory pids\n")
	// The parent exists but its own parent enabled no cpuset for it.
	v2parent := t.TempDir()
	write(v2parent, "cgroup.controllers", all)
	write(filepath.Join(v2parent, "nomad.slice"), "cgroup.controllers", "cpu io memory pids\n")
	v1 := t.TempDir()
	for _, c := range []string{"memory", "cpu", "pids", "cpuset", "freezer"} {
		os.Mkdir(filepath.Join(v1, c), 0o755)
	}
	v1missing := t.TempDir()
	os.Mkdir(filepath.Join(v1missing, "memory"), 0o755)
	for _, c := range []struct {
		name, root string
		want       Result
		detail     string
	}{
		{"v2", v2, OK, "not made yet"},
		{"v2 missing at the root", v2missing, Error, "cpuset"},
		{"v2 not delegated to the scopes", v2undelegated, Error, "memory not delegated to the tasks in " + filepath.Join(v2undelegated, "nomad.slice", "share.slice")},
		{"v2 delegated", v2delegated, OK, "share.slice,reserve.slice"},
		{"v2 not delegated to the parent", v2parent, Error, "cpuset not delegated to " + filepath.Join(v2parent, "nomad.slice")},
		{"v1", v1, OK, "v1"},
		{"v1 missing", v1missing, Error, "cpu, pids, cpuset, freezer"},
	} {
		r := &Report{}
		checkCgroups(r, c.root, "")
		got, _ := r.Get("cgroups")
		if got.Result != c.want || !strings.Contains(got.Detail, c.detail) {
			t.Errorf("%s: %s %q, want %s naming %q", c.name, got.Result, got.Detail, c.want, c.detail)
		}
		if got.Result != OK && got.Fix == "" {
			t.Errorf("%s: no fix given", c.name)
		}
	}
}

// On a real v2 kernel (v2 only: it skips on v1): a parent whose partitions
// lack the memory and cpuset controllers is an error naming them, and one
// with every controller enabled passes.
func TestCgroupCheckV2Delegation(t *testing.T) {
	const root = "/sys/fs/cgroup"
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err != nil {
		t.Skip("cgroups v2 only: " + root + " is not the unified hierarchy")
	}
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	enable := func(dir, controllers string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(controllers), 0); err != nil {
			t.Fatalf("%s: enabling %s: %v", dir, controllers, err)
		}
	}
	// As the Nomad client does at the root.
	enable(root, "+cpuset +cpu +memory +pids")
	parent := filepath.Join(root, "bwrap-r-preflight-test.slice")
	share := filepath.Join(parent, "share.slice")
	for _, d := range []string{parent, share} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { os.Remove(share); os.Remove(parent) })
	enable(parent, "+cpu +pids")
	enable(share, "+cpu +pids")
	r := &Report{}
	checkCgroups(r, root, parent)
	got, _ := r.Get("cgroups")
	t.Logf("cpu and pids only: %s: %s", got.Result, got.Detail)
	if got.Result != Error || !strings.Contains(got.Detail, "memory, cpuset not delegated") || !strings.Contains(got.Detail, share) {
		t.Errorf("cgroups: %s %q, want an error naming memory and cpuset and %s", got.Result, got.Detail, share)
	}

	enable(parent, "+cpuset +memory")
	enable(share, "+cpuset +memory")
	r = &Report{}
	checkCgroups(r, root, parent)
	got, _ = r.Get("cgroups")
	t.Logf("all four: %s: %s", got.Result, got.Detail)
	if got.Result != OK {
		t.Errorf("cgroups: %s %q, want ok", got.Result, got.Detail)
	}
}

func TestBwrapMissing(t *testing.T) {
	r := Run(context.Background(), Config{BwrapPath: "", Targets: []Target{{Name: "x", Address: "127.0.0.1:1"}}, StateDir: t.TempDir()})
	for _, name := range []string{"bwrap", "uid_mapping", "egress.x"} {
		if c, _ := r.Get(name); c.Result != Error {
			t.Errorf("%s: %s, want error", name, c.Result)
		}
	}
	// The other checks still ran.
	if _, ok := r.Get("cgroups"); !ok {
		t.Error("cgroups check skipped")
	}
	attrs, health := r.Attributes()
	if !strings.Contains(health, "bwrap") || !strings.HasPrefix(attrs["preflight.bwrap"], "error: ") {
		t.Errorf("attributes %v, health %q", attrs, health)
	}
}

// sandboxConfig is a real configuration: the pool UID is an unused one.
func sandboxConfig(t *testing.T, uid uint32, targets ...Target) Config {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	bw, err := exec.LookPath("bwrap")
	if err != nil {
		t.Skip("bwrap not installed")
	}
	// The test binary's own dir is private; the pool UID needs a copy it can reach.
	dir, err := os.MkdirTemp("", "probe-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "bwrap-r")
	src, _ := os.Open(os.Args[0])
	dst, _ := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	io.Copy(dst, src)
	src.Close()
	dst.Close()
	return Config{
		BwrapPath: bw, Shim: []string{os.Args[0], bwrap.ShimCommand}, ProbeBinary: bin,
		UID: uid, GID: uid, StateDir: t.TempDir(), Targets: targets,
		RRoot: filepath.Join(t.TempDir(), "none"),
	}
}

func TestUIDMappingReal(t *testing.T) {
	r := Run(context.Background(), sandboxConfig(t, 89990))
	c, _ := r.Get("uid_mapping")
	if c.Result != OK || !strings.Contains(c.Detail, "89990 89990 1") {
		t.Fatalf("uid_mapping: %s %q", c.Result, c.Detail)
	}
}

func TestEgressProbeReal(t *testing.T) {
	open := testnet.Listen(t)
	warnOnly := testnet.Listen(t)
	closed := "127.0.0.1:1"
	cfg := sandboxConfig(t, 89991,
		Target{Name: "metadata", Address: open},
		Target{Name: "consul", Address: warnOnly, WarnOnly: true},
		Target{Name: "closed", Address: closed})
	r := Run(context.Background(), cfg)
	for name, want := range map[string]Result{"egress.metadata": Error, "egress.consul": Warning, "egress.closed": OK} {
		if c, _ := r.Get(name); c.Result != want {
			t.Errorf("%s: %s %q, want %s", name, c.Result, c.Detail, want)
		}
	}

	// An owner-match rule for the pool UID blocks it: the check turns ok.
	ipt, err := exec.LookPath("iptables")
	if err != nil {
		t.Skip("no iptables")
	}
	_, port, _ := net.SplitHostPort(open)
	rule := []string{"OUTPUT", "-p", "tcp", "-d", "127.0.0.1", "--dport", port, "-m", "owner", "--uid-owner", strconv.Itoa(89991), "-j", "REJECT", "--reject-with", "tcp-reset"}
	if out, err := exec.Command(ipt, append([]string{"-I"}, rule...)...).CombinedOutput(); err != nil {
		t.Skipf("iptables: %v %s", err, out)
	}
	defer exec.Command(ipt, append([]string{"-D"}, rule...)...).Run()
	r = Run(context.Background(), cfg)
	if c, _ := r.Get("egress.metadata"); c.Result != OK {
		t.Fatalf("with the rule: %s %q", c.Result, c.Detail)
	}
}

// task_start starts a task as the client would: its dirs in a root-only
// 0700 dir below the client's alloc dir, bound by descriptor. Without a
// staging dir (so without binds by descriptor) the same start fails, and the
// check says so: a node that cannot start tasks is not healthy.
func TestTaskStartReal(t *testing.T) {
	cfg := sandboxConfig(t, 89992)
	allocRoot, err := os.MkdirTemp("", "alloc-root-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(allocRoot) })
	// As a data_dir Nomad made: root's, 0700.
	if err := os.Chmod(allocRoot, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg.AllocRoot = allocRoot
	// The launcher's staging dir, as the driver keeps it: root's, 0711.
	stage, err := os.MkdirTemp("", "stage-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(stage) })
	os.Chmod(stage, 0o711)
	cfg.StageDir = stage

	r := Run(context.Background(), cfg)
	c, _ := r.Get("task_start")
	if c.Result != OK || !strings.Contains(c.Detail, allocRoot) {
		t.Fatalf("task_start: %s %q", c.Result, c.Detail)
	}
	if entries, _ := os.ReadDir(allocRoot); len(entries) != 0 {
		t.Errorf("the check left %d entries in the alloc dir", len(entries))
	}

	cfg.StageDir = ""
	r = Run(context.Background(), cfg)
	c, _ = r.Get("task_start")
	if c.Result != Error || !strings.Contains(c.Detail, "did not start") || c.Fix == "" {
		t.Fatalf("task_start without binds by descriptor: %s %q (fix %q)", c.Result, c.Detail, c.Fix)
	}
	if _, failed := r.Attributes(); !strings.Contains(failed, "task_start") {
		t.Errorf("the health description %q does not name task_start", failed)
	}
}
