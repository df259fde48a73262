//go:build bench

package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/ci"
	"github.com/hashicorp/nomad/client/allocdir"
	"github.com/hashicorp/nomad/client/lib/cgroupslib"
	"github.com/hashicorp/nomad/client/lib/numalib"
	"github.com/hashicorp/nomad/client/taskenv"
	execdriver "github.com/hashicorp/nomad/drivers/exec"
	"github.com/hashicorp/nomad/drivers/rawexec"
	"github.com/hashicorp/nomad/drivers/shared/capabilities"
	"github.com/hashicorp/nomad/helper/uuid"
	"github.com/hashicorp/nomad/nomad/mock"
	"github.com/hashicorp/nomad/nomad/structs"
	"github.com/hashicorp/nomad/plugins/base"
	"github.com/hashicorp/nomad/plugins/drivers"
	"github.com/hashicorp/nomad/plugins/drivers/fsisolation"
	"github.com/hashicorp/nomad/plugins/drivers/testutils"

	"github.com/bwrap-r/bwrap-r/driver"
)

const (
	bwrapR  = "bwrap-r"
	rawExec = "raw_exec"
	execDrv = "exec"
)

// dut is one driver under test, behind its own DriverHarness (the plugin's
// gRPC client and server, as the Nomad client talks to a driver).
type dut struct {
	name   string
	h      *testutils.DriverHarness
	fsi    fsisolation.Mode
	chroot map[string]string
	cancel context.CancelFunc
}

// task is one task of the bench, with what was made for it.
type task struct {
	d       *dut
	cfg     *drivers.TaskConfig
	handle  *drivers.TaskHandle
	cleanup func()
	// startedAt is when StartTask was called; runningAfter is how long after
	// it InspectTask first said running.
	startedAt    time.Time
	runningAfter time.Duration
	// destroyed once DestroyTask has run and the alloc dir is gone.
	destroyed bool
}

type env struct {
	t   *testing.T
	rep *report
	sz  sizes
	// base holds every alloc dir and the plugin's state dir (0711, as Nomad's
	// data dir: bwrap runs as the task's UID and must traverse it).
	base   string
	logger hclog.Logger
	drv    map[string]*dut
	// token is the argument every sleep and true task gets, so that what is
	// left of them can be found.
	token string

	mu    sync.Mutex
	tasks map[string]*task
	// users counts the dynamic workload users handed to bwrap-r tasks.
	users int
	// execKept are exec's sleep tasks from the start workload, kept running
	// for the memory workload (each exec task costs a chroot build).
	execKept []*task
	// traced is one launch as StartTask makes it (bwrap.Start joining the
	// task's cgroups), for the tracer, which it tells (mark) when bwrap.Start
	// is called and when the exit status is read.
	traced func(mark func(string)) error
}

func newEnv(t *testing.T, rep *report) *env {
	dir, err := os.MkdirTemp("", benchDirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	// The harness's plugin sockets and the executors' go-plugin sockets are
	// made in TMPDIR and not all removed: keep them in the bench's dir.
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", tmp)
	e := &env{
		t:      t,
		rep:    rep,
		sz:     rep.sizes,
		base:   dir,
		logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Error, Output: os.Stderr}),
		drv:    map[string]*dut{},
		token:  fmt.Sprintf("31337.%d", os.Getpid()),
		tasks:  map[string]*task{},
	}
	topology := numalib.Scan(numalib.PlatformScanners(false))
	agent := &base.AgentConfig{Driver: &base.ClientDriverConfig{
		Topology:      topology,
		ClientMinPort: 14000,
		ClientMaxPort: 14512,
	}}

	// bwrap-r, as Nomad would configure it (its shim is /proc/self/exe: this
	// test binary, whose TestMain runs the shim).
	bd := driver.New(e.logger)
	e.setConfig(bd, &driver.Config{StateDir: filepath.Join(dir, "state"), TmpSizeMB: 64, PidsLimit: 2048}, nil)
	e.drv[bwrapR] = &dut{name: bwrapR, h: testutils.NewDriverHarness(t, bd), fsi: fsisolation.Image}

	ctx, cancel := context.WithCancel(context.Background())
	rd := rawexec.NewRawExecDriver(ctx, e.logger)
	e.setConfig(rd, &rawexec.Config{Enabled: true}, agent)
	e.drv[rawExec] = &dut{name: rawExec, h: testutils.NewDriverHarness(t, rd), fsi: fsisolation.None, cancel: cancel}

	ctx, cancel = context.WithCancel(context.Background())
	ed := execdriver.NewExecDriver(ctx, e.logger)
	// The defaults of exec's config spec.
	e.setConfig(ed, &execdriver.Config{
		DefaultModePID: "private",
		DefaultModeIPC: "private",
		AllowCaps:      capabilities.NomadDefaults().Slice(false),
	}, agent)
	// The harness's chroot, plus /bin/true for the start-and-wait workload.
	chroot := map[string]string{"/usr/bin/true": "/bin/true"}
	for k, v := range ci.TinyChroot {
		chroot[k] = v
	}
	e.drv[execDrv] = &dut{name: execDrv, h: testutils.NewDriverHarness(t, ed), fsi: fsisolation.Chroot, chroot: chroot, cancel: cancel}
	for _, d := range e.drv {
		e.fingerprint(d)
	}
	return e
}

// fingerprint keeps the driver's fingerprint stream open, as Nomad's client
// does for every driver. For bwrap-r that is also when the link guards of
// allocations whose dirs are gone come off (every 30 s): without it they
// would pile up in the host's mount table for the whole run, two for each
// task, as on no node.
func (e *env) fingerprint(d *dut) {
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := d.h.Fingerprint(ctx)
	if err != nil {
		cancel()
		e.t.Fatalf("%s: Fingerprint: %v", d.name, err)
	}
	go func() {
		for range ch {
		}
	}()
	stop := d.cancel
	d.cancel = func() {
		cancel()
		if stop != nil {
			stop()
		}
	}
}

func (e *env) setConfig(d drivers.DriverPlugin, conf any, agent *base.AgentConfig) {
	var data []byte
	if err := base.MsgPackEncode(&data, conf); err != nil {
		e.t.Fatal(err)
	}
	if err := d.SetConfig(&base.Config{PluginConfig: data, AgentConfig: agent}); err != nil {
		e.t.Fatal(err)
	}
}

// taskConfig is the part of the three drivers' task configs the bench uses.
type taskConfig struct {
	Command string   `codec:"command"`
	Args    []string `codec:"args"`
}

// newTask makes a task with what the Nomad client makes before StartTask: an
// alloc dir (with exec's chroot), the task's environment, its resources and
// its cgroup. None of that is timed.
func (e *env) newTask(d *dut, memoryMB int64, command string, args ...string) (*task, error) {
	const name = "bench"
	cfg := &drivers.TaskConfig{
		ID:      uuid.Generate(),
		AllocID: uuid.Generate(),
		Name:    name,
	}
	if d.name == bwrapR {
		// As the client does: a dynamic workload user of the task's own
		// (bwrap-r refuses a UID another task holds), from its default
		// 80000-89999.
		e.mu.Lock()
		cfg.User = fmt.Sprintf("nomad-%d", 80000+e.users%10000)
		e.users++
		e.mu.Unlock()
	}
	cfg.Resources = &drivers.Resources{
		NomadResources: &structs.AllocatedTaskResources{
			Memory: structs.AllocatedMemoryResources{MemoryMB: memoryMB},
			Cpu:    structs.AllocatedCpuResources{CpuShares: 100},
		},
		LinuxResources: &drivers.LinuxResources{
			CPUShares:        100,
			MemoryLimitBytes: memoryMB << 20,
			CpusetCgroupPath: cgroupslib.LinuxResourcesPath(cfg.AllocID, name, false),
		},
	}
	if err := cfg.EncodeConcreteDriverConfig(&taskConfig{Command: command, Args: args}); err != nil {
		return nil, err
	}
	cleanup, err := e.mkAllocDir(d, cfg)
	if err != nil {
		return nil, err
	}
	tk := &task{d: d, cfg: cfg, cleanup: cleanup}
	e.mu.Lock()
	e.tasks[cfg.ID] = tk
	e.mu.Unlock()
	return tk, nil
}

// mkAllocDir is the harness's MkAllocDir without logmon (stdout and stderr go
// to /dev/null for every driver) and with a cleanup that can run per task
// (the harness's closes the harness's plugin client).
func (e *env) mkAllocDir(d *dut, cfg *drivers.TaskConfig) (func(), error) {
	// One alloc dir for all, as a client's <data_dir>/alloc, whose mounts
	// (every task's) are in the host's mount table. Nomad's client makes
	// the path to alloc dirs traversable (0711).
	dir := filepath.Join(e.base, "alloc")
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, err
	}
	mountsDir, err := os.MkdirTemp(e.base, "mounts-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(mountsDir, 0o755); err != nil {
		return nil, err
	}
	ad := allocdir.NewAllocDir(e.logger, dir, mountsDir, cfg.AllocID)
	cg := cgroupslib.Factory(cfg.AllocID, cfg.Name, false)
	cleanup := func() {
		_ = cg.Kill()
		_ = cg.Teardown()
		_ = ad.Destroy()
		_ = os.RemoveAll(filepath.Join(dir, cfg.AllocID))
		_ = os.RemoveAll(mountsDir)
	}
	fail := func(err error) (func(), error) {
		cleanup()
		return nil, err
	}
	if err := ad.Build(); err != nil {
		return fail(err)
	}
	cfg.AllocDir = ad.AllocDir
	st := &structs.Task{Name: cfg.Name, Env: cfg.Env}
	td := ad.NewTaskDir(st)
	if err := td.Build(d.fsi, d.chroot, cfg.User); err != nil {
		return fail(err)
	}
	alloc := mock.Alloc()
	alloc.ID = cfg.AllocID
	alloc.AllocatedResources.Tasks[cfg.Name] = cfg.Resources.NomadResources
	b := taskenv.NewBuilder(mock.Node(), alloc, st, "global")
	testutils.SetEnvvars(b, d.fsi, td)
	cfg.Env = b.Build().Map()
	if err := cg.Setup(); err != nil {
		return fail(err)
	}
	return cleanup, nil
}

// destroy ends the task (DestroyTask with force, as the client does after a
// kill) and removes its alloc dir and cgroup.
func (e *env) destroy(tk *task) error {
	if tk.destroyed {
		return nil
	}
	var err error
	if tk.handle != nil {
		err = tk.d.h.DestroyTask(tk.cfg.ID, true)
		if errors.Is(err, drivers.ErrTaskNotFound) || (err != nil && err.Error() == drivers.ErrTaskNotFound.Error()) {
			err = nil
		}
		if err != nil {
			// Nomad's client retries a failed destroy.
			time.Sleep(100 * time.Millisecond)
			if err2 := tk.d.h.DestroyTask(tk.cfg.ID, true); err2 == nil {
				err = nil
			}
		}
	}
	tk.cleanup()
	tk.destroyed = true
	e.mu.Lock()
	delete(e.tasks, tk.cfg.ID)
	e.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%s: destroying task: %w", tk.d.name, err)
	}
	return nil
}

func (e *env) destroyAll() {
	e.mu.Lock()
	var left []*task
	for _, tk := range e.tasks {
		left = append(left, tk)
	}
	e.mu.Unlock()
	e.execKept = nil
	parallel(len(left), 16, func(i int) {
		if err := e.destroy(left[i]); err != nil {
			e.rep.errorf("%v", err)
		}
	})
}

func (e *env) close() {
	e.destroyAll()
	for _, d := range e.drv {
		d.h.Kill()
		if d.cancel != nil {
			d.cancel()
		}
	}
	// The link guards of tasks destroyed less than a reap ago.
	unmountBelow(e.base)
	_ = os.RemoveAll(e.base)
}

// start runs StartTask and returns how long it took to return.
func (e *env) start(tk *task) (time.Duration, error) {
	t0 := time.Now()
	tk.startedAt = t0
	h, _, err := tk.d.h.StartTask(tk.cfg)
	took := time.Since(t0)
	if err != nil {
		return took, fmt.Errorf("%s: StartTask: %w", tk.d.name, err)
	}
	tk.handle = h
	return took, nil
}

// untilRunning polls InspectTask until Nomad would see the task running.
func (e *env) untilRunning(tk *task, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := tk.d.h.InspectTask(tk.cfg.ID)
		if err != nil {
			return fmt.Errorf("%s: InspectTask: %w", tk.d.name, err)
		}
		switch st.State {
		case drivers.TaskStateRunning:
			tk.runningAfter = time.Since(tk.startedAt)
			return nil
		case drivers.TaskStateExited:
			return fmt.Errorf("%s: task exited before it was seen running: %+v", tk.d.name, st.ExitResult)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: task not running after %v (%s)", tk.d.name, timeout, st.State)
		}
		time.Sleep(500 * time.Microsecond)
	}
}

// wait blocks until the task's exit result arrives.
func (e *env) wait(tk *task, timeout time.Duration) (*drivers.ExitResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ch, err := tk.d.h.WaitTask(ctx, tk.cfg.ID)
	if err != nil {
		return nil, fmt.Errorf("%s: WaitTask: %w", tk.d.name, err)
	}
	select {
	case res, ok := <-ch:
		if !ok || res == nil {
			return nil, fmt.Errorf("%s: WaitTask closed without a result", tk.d.name)
		}
		return res, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: task did not exit within %v", tk.d.name, timeout)
	}
}

// rootPid is the host pid the driver keeps for the task: bwrap-r's sandbox
// pid 1, raw_exec's and exec's task process.
func (tk *task) rootPid() (int, error) {
	if tk.handle == nil {
		return 0, errors.New("task not started")
	}
	switch tk.d.name {
	case bwrapR:
		var st driver.TaskState
		if err := tk.handle.GetDriverState(&st); err != nil {
			return 0, err
		}
		return st.Init.Pid, nil
	case rawExec:
		var st rawexec.TaskState
		if err := tk.handle.GetDriverState(&st); err != nil {
			return 0, err
		}
		return st.Pid, nil
	default:
		var st execdriver.TaskState
		if err := tk.handle.GetDriverState(&st); err != nil {
			return 0, err
		}
		return st.Pid, nil
	}
}

// helperPids are the task's per-task processes on the host that are not the
// task: bwrap's monitor and the sandbox's pid 1 for bwrap-r, the executor
// for raw_exec and exec.
func (e *env) helperPids(tk *task, procs []proc) ([]int, error) {
	if tk.d.name == bwrapR {
		var st driver.TaskState
		if err := tk.handle.GetDriverState(&st); err != nil {
			return nil, err
		}
		if !st.Monitor.Alive() || !st.Init.Alive() {
			return nil, fmt.Errorf("bwrap-r: monitor %d or pid 1 %d not running", st.Monitor.Pid, st.Init.Pid)
		}
		return []int{st.Monitor.Pid, st.Init.Pid}, nil
	}
	// Nomad's executor is `<agent binary> executor <json config>`; the JSON
	// names the task's executor.out.
	logFile := filepath.Join(tk.cfg.TaskDir().Dir, "executor.out")
	for _, p := range procs {
		if len(p.argv) >= 3 && p.argv[1] == "executor" && strings.Contains(p.argv[2], logFile) {
			return []int{p.pid}, nil
		}
	}
	return nil, fmt.Errorf("%s: no executor process for %s", tk.d.name, tk.cfg.ID)
}

// parallel runs f(0..n-1) on at most workers goroutines.
func parallel(n, workers int, f func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers && w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}
