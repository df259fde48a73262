package driver

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/nomad/plugins/base"
	"github.com/hashicorp/nomad/plugins/drivers"
	"github.com/hashicorp/nomad/plugins/drivers/testutils"

	"github.com/bwrap-r/bwrap-r/egress"
	"github.com/bwrap-r/bwrap-r/internal/testnet"
)

// refused starts task as user and wants an error holding every one of want;
// the refusal comes before any side effect: no task kept, the task's dirs
// still owned as the client made them.
func refused(t *testing.T, h *testutils.DriverHarness, d *Driver, user string, tc TaskConfig, want ...string) {
	t.Helper()
	task := newTask(t, h, "refused", tc)
	task.User = user
	owner := func() uint32 {
		fi, err := os.Stat(task.TaskDir().LocalDir)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Uid
	}
	before := owner()
	_, _, err := h.StartTask(task)
	endLogs(task)
	if err == nil {
		_ = h.DestroyTask(task.ID, true)
		t.Fatalf("user %q started", user)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("user %q: error %q lacks %q", user, err, w)
		}
	}
	if _, ok := d.tasks.Get(task.ID); ok {
		t.Errorf("user %q: a refused start left a task", user)
	}
	if after := owner(); after != before {
		t.Errorf("user %q: a refused start gave local/ to uid %d", user, after)
	}
}

// endLogs opens and closes a refused task's log FIFOs, which no writer
// opened: the close ends logmon's copy now rather than at its 4 s timeout.
func endLogs(task *drivers.TaskConfig) {
	for _, p := range []string{task.StdoutPath, task.StderrPath} {
		if f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	}
}

// idOf runs `id -u; id -g` as user and returns what the task printed.
func idOf(t *testing.T, h *testutils.DriverHarness, user string) string {
	t.Helper()
	task := startAs(t, h, "id", user, sh("id -u; id -g"))
	if res := waitExit(t, h, task.ID, 20*time.Second); res.ExitCode != 0 {
		t.Fatalf("user %q: %+v %s", user, res, logs(t, task, "stderr"))
	}
	return strings.Join(strings.Fields(logs(t, task, "stdout")), " ")
}

// A job's user is a task identity of the operator's, or the task is refused
// with what the operator could allow.
func TestHarnessUserOutsideTheIdentitiesRefused(t *testing.T) {
	h, d := newHarness(t, Config{})
	refused(t, h, d, "nobody", sh("true"),
		`user "nobody" (uid 65534) is not a task identity on this node: tasks run as UIDs in task_uid_range 80000-89999; the operator can allow it with allowed_users = ["nobody"] or allowed_uids = "65534" in the plugin config`)
	refused(t, h, d, "nomad-100000", sh("true"),
		`user "nomad-100000" (uid 100000) is not a task identity on this node`, `allowed_uids = "100000"`)
	refused(t, h, d, "nomad-79999", sh("true"), "not a task identity on this node")
	refused(t, h, d, "www-data", sh("true"), `user "www-data" (uid 33) is not a task identity on this node`, `allowed_users = ["www-data"]`)
	// Nomad gives every task a user: none is an error, not nobody.
	refused(t, h, d, "", sh("true"), "no user")
	if got := idOf(t, h, "nomad-89999"); got != "89999 89999" {
		t.Errorf("the range's top uid: %q", got)
	}
}

func TestHarnessAllowedUsersAndUIDs(t *testing.T) {
	h, d := newHarness(t, Config{AllowedUsers: []string{"nobody"}, AllowedUIDs: "90000-90009, 91000"})
	if got := idOf(t, h, "nobody"); got != "65534 65534" {
		t.Errorf("allowed user nobody ran as %q", got)
	}
	for _, uid := range []string{"90000", "90009", "91000"} {
		if got := idOf(t, h, "nomad-"+uid); got != uid+" "+uid {
			t.Errorf("allowed uid %s ran as %q", uid, got)
		}
	}
	refused(t, h, d, "nomad-90010", sh("true"),
		`tasks run as UIDs in task_uid_range 80000-89999 or allowed_uids "90000-90009, 91000" and as allowed_users ["nobody"]`)
	refused(t, h, d, "www-data", sh("true"), "not a task identity on this node")
}

// A named host user whose UID lies in task_uid_range is a task identity.
func TestHarnessNamedUserInTheRange(t *testing.T) {
	useradd, err := exec.LookPath("useradd")
	if err != nil {
		t.Skip("no useradd")
	}
	h, _ := newHarness(t, Config{})
	name := "bwrapr-t" + strconv.Itoa(os.Getpid()%100000)
	if out, err := exec.Command(useradd, "-u", "89990", "-U", "-M", "-N", "-s", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		// -U and -N are exclusive on some versions: make the group first.
		if out2, err2 := exec.Command("groupadd", "-g", "89990", name).CombinedOutput(); err2 != nil {
			t.Skipf("cannot add a user: %v %s; %v %s", err, out, err2, out2)
		}
		t.Cleanup(func() { _ = exec.Command("groupdel", name).Run() })
		if out, err := exec.Command(useradd, "-u", "89990", "-g", "89990", "-M", "-s", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
			t.Skipf("cannot add a user: %v %s", err, out)
		}
	}
	t.Cleanup(func() { _ = exec.Command("userdel", name).Run() })
	if got := idOf(t, h, name); got != "89990 89990" {
		t.Errorf("user %s ran as %q", name, got)
	}
}

// No allowed identity may be one no task may run as.
func TestConfigRefusesPrivilegedAllowedIdentities(t *testing.T) {
	for _, c := range []struct {
		conf Config
		want string
	}{
		{Config{AllowedUsers: []string{"root"}}, `allowed_users: "root" is root`},
		{Config{AllowedUsers: []string{"sync"}, DeniedHostGIDs: "65534"}, `allowed_users: "sync" (gid 65534) is in denied_host_gids`},
		{Config{AllowedUsers: []string{"www-data"}, DeniedHostUIDs: "0-999"}, `allowed_users: "www-data" (uid 33) is in denied_host_uids "0-999"`},
		{Config{AllowedUsers: []string{"no-such-user-xyz"}}, `allowed_users: "no-such-user-xyz" is not a user on this node`},
		{Config{AllowedUIDs: "0-10"}, `allowed_uids "0-10": 0-10 holds root`},
		{Config{AllowedUIDs: "90000,500-1500", DeniedHostUIDs: "0-999"}, `allowed_uids "90000,500-1500": 500-1500 overlaps denied_host_uids "0-999"`},
		{Config{AllowedUIDs: "9x"}, `allowed_uids: invalid id`},
	} {
		c.conf.TmpSizeMB, c.conf.Egress = 64, &EgressConfig{}
		var data []byte
		if err := base.MsgPackEncode(&data, &c.conf); err != nil {
			t.Fatal(err)
		}
		err := New(nullLogger()).SetConfig(&base.Config{PluginConfig: data})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.conf, err, c.want)
		}
	}
}

// nftTable is `nft list table inet name`, "" when there is none.
func nftTable(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("nft", "list", "table", "inet", name).CombinedOutput()
	if err != nil {
		return ""
	}
	return string(out)
}

// The managed rules hold every UID a task may run as, not task_uid_range
// alone: a task of an allowed identity cannot reach a denied address.
func TestHarnessManagedRulesHoldEveryIdentity(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("no nft")
	}
	needRoot(t)
	target := testnet.Listen(t)
	d := New(nullLogger())
	d.rulesName = "bwrap_r_test_" + strconv.Itoa(os.Getpid())
	t.Cleanup(func() { egress.Remove(d.rulesName) })
	configure(t, d, Config{AllowedUsers: []string{"nobody"}, AllowedUIDs: "90000-90009,91000",
		Egress: &EgressConfig{ManageRules: true, Deny: []string{target}}})
	h := testutils.NewDriverHarness(t, d)

	table := nftTable(t, d.rulesName)
	if !strings.Contains(table, "meta skuid { 65534, 80000-90009, 91000 } ct state new") {
		t.Errorf("the managed rules do not hold every task identity:\n%s", table)
	}
	_, port, _ := strings.Cut(target, ":")
	connect := sh(`if bash -c 'exec 3<>/dev/tcp/127.0.0.1/` + port + `' 2>/dev/null; then echo connected; else echo refused; fi`)
	for _, user := range []string{"nobody", "nomad-91000", "nomad-90005", "nomad-80123"} {
		task := startAs(t, h, "connect", user, connect)
		waitExit(t, h, task.ID, 20*time.Second)
		if got := strings.TrimSpace(logs(t, task, "stdout")); got != "refused" {
			t.Errorf("a task as %s: %q, want refused", user, got)
		}
	}
}

// One UID is one task on the node: a start as a UID another task holds
// (of any allocation, recovered ones too) is refused with that task named,
// until the holder is destroyed.
func TestHarnessUIDHeldByAnotherTaskRefused(t *testing.T) {
	h, d := newHarness(t, Config{AllowedUsers: []string{"nobody"}})
	holder := newTaskWith(t, h, "web", sh("sleep 60"), func(task *drivers.TaskConfig) {
		task.JobName, task.User = "tenant-a", "nomad-83010"
	})
	start(t, h, holder)
	name := `uid 83010 is held by task "web" of job "tenant-a" (allocation ` + holder.AllocID[:8] + `) on this node`
	refused(t, h, d, "nomad-83010", sh("true"), name)
	// Another task of the same allocation is refused too.
	sibling := newTaskWith(t, h, "sidecar", sh("true"), func(task *drivers.TaskConfig) {
		task.AllocID, task.User = holder.AllocID, "nomad-83010"
	})
	if _, _, err := h.StartTask(sibling); err == nil || !strings.Contains(err.Error(), name) {
		t.Errorf("a task of the holder's allocation: %v", err)
	}
	endLogs(sibling)
	// Named users are held the same way.
	first := startAs(t, h, "first", "nobody", sh("sleep 60"))
	refused(t, h, d, "nobody", sh("true"), `uid 65534 is held by task "first" of job "job-first"`)

	// An exited task holds its UID until Nomad destroys it.
	if err := h.StopTask(holder.ID, time.Second, "SIGKILL"); err != nil {
		t.Fatal(err)
	}
	waitExit(t, h, holder.ID, 10*time.Second)
	refused(t, h, d, "nomad-83010", sh("true"), name)
	if err := h.DestroyTask(holder.ID, true); err != nil {
		t.Fatal(err)
	}
	if got := idOf(t, h, "nomad-83010"); got != "83010 83010" {
		t.Errorf("after the holder's destroy: %q", got)
	}
	_ = h.DestroyTask(first.ID, true)

	// Concurrent starts as one UID: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for i := 0; i < 4; i++ {
		task := newTask(t, h, "racer", sh("sleep 30"))
		task.User = "nomad-83020"
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := h.StartTask(task); err == nil {
				mu.Lock()
				won++
				mu.Unlock()
				t.Cleanup(func() { _ = h.Impl().DestroyTask(task.ID, true) })
			} else {
				endLogs(task)
				if !strings.Contains(err.Error(), "uid 83020 is held by task") {
					t.Errorf("racer: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	if won != 1 {
		t.Errorf("%d concurrent starts as one uid succeeded, want 1", won)
	}
}

func TestHarnessRecoveredTaskHoldsItsUID(t *testing.T) {
	needRoot(t)
	state := stateDir(t)
	h1, _ := newHarness(t, Config{StateDir: state})
	holder := newTaskWith(t, h1, "web", sh("sleep 60"), func(task *drivers.TaskConfig) {
		task.JobName, task.User = "tenant-a", "nomad-83030"
	})
	handle, _, err := h1.StartTask(holder)
	if err != nil {
		t.Fatal(err)
	}
	h1.Kill()
	h2, d2 := newHarness(t, Config{StateDir: state})
	if err := h2.RecoverTask(handle); err != nil {
		t.Fatal(err)
	}
	refused(t, h2, d2, "nomad-83030", sh("true"), `uid 83030 is held by task "web" of job "tenant-a" (allocation `+holder.AllocID[:8]+`)`)
	if err := h2.DestroyTask(holder.ID, true); err != nil {
		t.Fatal(err)
	}
	if got := idOf(t, h2, "nomad-83030"); got != "83030 83030" {
		t.Errorf("after the holder's destroy: %q", got)
	}
}

// A task's egress_deny rules are a table of its own, named by the task:
// destroying one task never removes another's, and a handle of the old
// format (named by UID) still has its table removed.
func TestHarnessTaskRulesKeyedByTask(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("no nft")
	}
	needRoot(t)
	state := stateDir(t)
	h1, d1 := newHarness(t, Config{StateDir: state})
	port := loopbackListener(t)
	deny := TaskConfig{Command: "/bin/sh", Args: []string{"-c", "sleep 60"}, EgressDeny: []string{"127.0.0.1:" + port}}
	a := startAs(t, h1, "a", "nomad-83041", deny)
	b := startAs(t, h1, "b", "nomad-83042", deny)
	for _, task := range []*drivers.TaskConfig{a, b} {
		th, _ := d1.tasks.Get(task.ID)
		want := taskRulesName(task.ID)
		if th.state.TaskRulesName != want || !strings.HasPrefix(want, "bwrap_r_t") || len(want) > 28 {
			t.Fatalf("task %s: rules %q in its state, want %q", task.Name, th.state.TaskRulesName, want)
		}
		if table := nftTable(t, want); !strings.Contains(table, "meta skuid "+strconv.Itoa(int(th.state.UID))+" ") {
			t.Errorf("task %s: table %s:\n%s", task.Name, want, table)
		}
		if nftTable(t, legacyTaskRulesName(th.state.UID)) != "" {
			t.Errorf("task %s: a table named by its uid", task.Name)
		}
	}
	if err := h1.DestroyTask(a.ID, true); err != nil {
		t.Fatal(err)
	}
	if nftTable(t, taskRulesName(a.ID)) != "" {
		t.Error("a's table survived its destroy")
	}
	if nftTable(t, taskRulesName(b.ID)) == "" {
		t.Fatal("destroying a removed b's table")
	}

	// A task started by an earlier version: its handle says TaskRules and
	// its table is named by its UID.
	old := newTask(t, h1, "old", sh("sleep 60"))
	old.User = "nomad-83043"
	handle, _, err := h1.StartTask(old)
	if err != nil {
		t.Fatal(err)
	}
	var st TaskState
	if err := handle.GetDriverState(&st); err != nil {
		t.Fatal(err)
	}
	st.TaskRules, st.TaskRulesName = true, ""
	if err := handle.SetDriverState(&st); err != nil {
		t.Fatal(err)
	}
	legacy := legacyTaskRulesName(83043)
	blocked, err := egress.ParseDeny("127.0.0.1:" + port)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := egress.Install(egress.Rules{Name: legacy, UIDs: []egress.UIDRange{{Min: 83043, Max: 83043}}, Deny: []egress.Deny{blocked}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { egress.Remove(legacy) })
	h1.Kill()
	h2, _ := newHarness(t, Config{StateDir: state})
	if err := h2.RecoverTask(handle); err != nil {
		t.Fatal(err)
	}
	if err := h2.DestroyTask(old.ID, true); err != nil {
		t.Fatal(err)
	}
	if nftTable(t, legacy) != "" {
		t.Error("the old-format handle's table survived its destroy")
	}
	if nftTable(t, taskRulesName(b.ID)) == "" {
		t.Error("destroying the old task removed b's table")
	}
	// b outlived h1; its table goes with it.
	bh := &drivers.TaskHandle{Version: taskHandleVersion, Config: b, State: drivers.TaskStateRunning}
	th, _ := d1.tasks.Get(b.ID)
	if err := bh.SetDriverState(&th.state); err != nil {
		t.Fatal(err)
	}
	if err := h2.RecoverTask(bh); err != nil {
		t.Fatal(err)
	}
	if err := h2.DestroyTask(b.ID, true); err != nil {
		t.Fatal(err)
	}
	if nftTable(t, taskRulesName(b.ID)) != "" {
		t.Error("b's table survived its destroy")
	}
}

// A job may lower the plugin's pids_limit, not raise it.
func TestHarnessPidsLimitCeiling(t *testing.T) {
	h, d := newHarness(t, Config{PidsLimit: 2048})
	refused(t, h, d, "nomad-83050", TaskConfig{Command: "/bin/true", PidsLimit: 1000000},
		"config: pids_limit 1000000 is above the plugin's pids_limit 2048: a job may lower it, not raise it")
	refused(t, h, d, "nomad-83050", TaskConfig{Command: "/bin/true", PidsLimit: 2049}, "above the plugin's pids_limit")
	for _, n := range []int64{2048, 100} {
		task := limitedTask(t, h, "pids", 64, TaskConfig{Command: "/bin/sh", Args: []string{"-c", "sleep 30"}, PidsLimit: n})
		start(t, h, task)
		th, _ := d.tasks.Get(task.ID)
		dir := th.state.Cgroups.Controllers["pids"]
		if th.state.Cgroups.V2 {
			dir = th.state.Cgroups.Unified
		}
		b, err := os.ReadFile(dir + "/pids.max")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(b)); got != strconv.FormatInt(n, 10) {
			t.Errorf("pids_limit %d: pids.max %s", n, got)
		}
		_ = h.DestroyTask(task.ID, true)
	}
}

// A dynamic workload user has a name in its sandbox, as a host user has:
// `id -un`, a shell's prompt and R's Sys.info() see nomad-<N>, with /local
// as its home. A host user keeps the host's own entry.
func TestHarnessDynamicUserHasAName(t *testing.T) {
	h, _ := newHarness(t, Config{AllowedUsers: []string{"nobody"}})
	script := `id -un; id -gn; getent passwd "$(id -u)"; getent group "$(id -g)" | cut -d: -f1,3`
	task := startAs(t, h, "named", "nomad-89990", sh(script))
	if res := waitExit(t, h, task.ID, 20*time.Second); res.ExitCode != 0 {
		t.Fatalf("%+v %s", res, logs(t, task, "stderr"))
	}
	if got, want := logs(t, task, "stdout"), "nomad-89990\nnomad-89990\nnomad-89990:x:89990:89990::/local:/bin/sh\nnomad-89990:89990\n"; got != want {
		t.Errorf("dynamic user:\n%s\nwant\n%s", got, want)
	}
	host, err := exec.Command("getent", "passwd", "nobody").Output()
	if err != nil {
		t.Fatal(err)
	}
	task = startAs(t, h, "host-user", "nobody", sh(`getent passwd nobody; grep -c '^nomad-' /etc/passwd || true`))
	if res := waitExit(t, h, task.ID, 20*time.Second); res.ExitCode != 0 {
		t.Fatalf("%+v %s", res, logs(t, task, "stderr"))
	}
	if got, want := logs(t, task, "stdout"), string(host)+"0\n"; got != want {
		t.Errorf("host user:\n%s\nwant\n%s", got, want)
	}
}
