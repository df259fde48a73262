package driver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/drivers/shared/eventer"
	"github.com/hashicorp/nomad/plugins/base"
	"github.com/hashicorp/nomad/plugins/drivers"
	"github.com/hashicorp/nomad/plugins/shared/hclspec"
	pstructs "github.com/hashicorp/nomad/plugins/shared/structs"
	"golang.org/x/sys/unix"

	"github.com/bwrap-r/bwrap-r/bwrap"
	"github.com/bwrap-r/bwrap-r/egress"
	"github.com/bwrap-r/bwrap-r/logcollect"
	"github.com/bwrap-r/bwrap-r/syscallfilter"
)

// Driver is the bwrap-r task driver.
type Driver struct {
	eventer *eventer.Eventer
	logger  hclog.Logger
	ctx     context.Context
	cancel  context.CancelFunc
	tasks   *taskStore

	mu     sync.RWMutex
	config Config
	// bwrapPath is the resolved bwrap binary, "" when none was found.
	bwrapPath string
	bwrapErr  error

	// shim is the argv that starts the launcher shim; tests replace argv[0]
	// when the driver runs inside a test binary.
	shim []string
	// rLinkDir holds rig's R-<alias> links.
	rLinkDir string
	// selfBinary is bwrap-r's executable as task UIDs can reach it, for the
	// preflight's egress probe.
	selfBinary string
	// seccomp is the compiled syscall filter every task runs under.
	seccomp   []byte
	preflight preflightCache
	// rulesName is the nft table / iptables chain of the egress rules.
	rulesName string
	// mhzPerCore turns CPU percent into the MHz Nomad shows (guarded by mu).
	mhzPerCore float64
	// allocRoot is the client's alloc dir, learnt from the tasks it hands
	// over, for the preflight's task_start check (guarded by mu).
	allocRoot string
	// uids are the UIDs of starts under way (d.tasks holds the others').
	uids uidHolders
	// guardMu orders the link guards of task dirs (linkguard.go) with the
	// check for other tasks of an allocation.
	guardMu sync.Mutex
	// logs is the plugin's side of the node's log collector (nil until
	// SetConfig names the state dir; guarded by mu).
	logs *collector
}

// New returns a driver; Nomad configures it through SetConfig.
func New(logger hclog.Logger) *Driver {
	ctx, cancel := context.WithCancel(context.Background())
	logger = logger.Named(PluginName)
	// The filter is fixed: a failure here is a bug, caught by every test.
	program, err := syscallfilter.Program()
	if err != nil {
		panic(fmt.Sprintf("bwrap-r: seccomp filter: %v", err))
	}
	d := &Driver{
		eventer:   eventer.NewEventer(ctx, logger),
		logger:    logger,
		ctx:       ctx,
		cancel:    cancel,
		tasks:     newTaskStore(),
		seccomp:   program,
		rulesName: egressRulesName,
		shim:      []string{"/proc/self/exe", bwrap.ShimCommand},
		rLinkDir:  "/usr/local/bin",
		config: Config{StateDir: "/run/bwrap-r", TmpSizeMB: 256, PidsLimit: 2048, RRoot: "/opt/R", RVersionMatch: "minor",
			Logs: &LogsConfig{Collector: collectorBwrapR, MaxFiles: 10, MaxFileSizeMB: 10}},
	}
	d.logs = newCollector(d.config.StateDir, d.shim[0], logger)
	return d
}

// collector is the plugin's side of the log collector for the current
// config.
func (d *Driver) collector() *collector {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.logs
}

// Shutdown removes the managed egress rules when the config says so; main
// calls it once the plugin has stopped serving.
func (d *Driver) Shutdown() {
	d.mu.RLock()
	c := d.config
	d.mu.RUnlock()
	if c.Egress != nil && c.Egress.ManageRules && c.Egress.RemoveRulesOnShutdown {
		if err := egress.Remove(d.rulesName); err != nil {
			d.logger.Warn("removing egress rules", "error", err)
		}
	}
	d.collector().shutdown()
	d.cancel()
}

func nullLogger() hclog.Logger { return hclog.NewNullLogger() }

func (d *Driver) PluginInfo() (*base.PluginInfoResponse, error) { return pluginInfo, nil }

func (d *Driver) ConfigSchema() (*hclspec.Spec, error) { return configSpec, nil }

func (d *Driver) SetConfig(cfg *base.Config) error {
	var c Config
	if len(cfg.PluginConfig) != 0 {
		if err := base.MsgPackDecode(cfg.PluginConfig, &c); err != nil {
			return err
		}
	}
	if err := c.normalize(); err != nil {
		return err
	}
	if err := validateTargets(c); err != nil {
		return fmt.Errorf("egress probe target: %w", err)
	}
	if backend, err := installRules(c, d.rulesName); err != nil {
		return fmt.Errorf("egress rules: %w", err)
	} else if backend != "" {
		d.logger.Info("egress rules installed", "backend", backend, "uids", fmt.Sprint(c.identityUIDs()), "deny", c.Egress.Deny)
	}
	d.preflight.reset()
	d.installSelf(c.StateDir)
	mhz := 0.0
	if cfg.AgentConfig != nil {
		if compute := cfg.AgentConfig.Compute(); compute.NumCores > 0 {
			mhz = float64(compute.TotalCompute) / float64(compute.NumCores)
		}
	}
	bwrapPath, bwrapErr := findBwrap(c.BwrapPath)
	// One plugin a process: its spares are made as its config says.
	bwrap.DisablePreload(c.PreloadLauncher != nil && !*c.PreloadLauncher)
	d.mu.Lock()
	d.mhzPerCore = mhz
	d.config, d.bwrapPath, d.bwrapErr = c, bwrapPath, bwrapErr
	if d.logs.socket != filepath.Join(c.StateDir, "logd.sock") {
		d.logs.shutdown()
		d.logs = newCollector(c.StateDir, d.shim[0], d.logger)
	}
	d.mu.Unlock()
	return nil
}

// findBwrap resolves the configured bwrap, or bwrap on PATH.
func findBwrap(configured string) (string, error) {
	if configured == "" {
		p, err := exec.LookPath("bwrap")
		if err != nil {
			return "", errors.New("bubblewrap (bwrap) not found on PATH: install it (apt-get install bubblewrap) or set bwrap_path")
		}
		configured = p
	}
	abs, err := filepath.Abs(configured)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("bwrap_path %s: %w", configured, err)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("bwrap_path %s is not an executable file", configured)
	}
	return abs, nil
}

func (d *Driver) TaskConfigSchema() (*hclspec.Spec, error) { return taskConfigSpec, nil }

func (d *Driver) Capabilities() (*drivers.Capabilities, error) {
	d.mu.RLock()
	ours := d.config.Logs.Collector == collectorBwrapR
	d.mu.RUnlock()
	caps := *capabilities
	// Nomad starts no logmon for the tasks: the node's one collector
	// writes their logs.
	caps.DisableLogCollection = ours
	return &caps, nil
}

func (d *Driver) Fingerprint(ctx context.Context) (<-chan *drivers.Fingerprint, error) {
	ch := make(chan *drivers.Fingerprint)
	go func() {
		defer close(ch)
		t := time.NewTimer(0)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-d.ctx.Done():
				return
			case <-t.C:
				t.Reset(fingerprintPeriod)
				d.reapGuards()
				select {
				case ch <- d.buildFingerprint():
				case <-ctx.Done():
					return
				case <-d.ctx.Done():
					return
				}
			}
		}
	}()
	return ch, nil
}

func (d *Driver) buildFingerprint() *drivers.Fingerprint {
	if runtime.GOOS != "linux" {
		return &drivers.Fingerprint{Health: drivers.HealthStateUndetected, HealthDescription: "bwrap-r runs on Linux only"}
	}
	d.mu.RLock()
	bwrapPath, bwrapErr, conf, self := d.bwrapPath, d.bwrapErr, d.config, d.selfBinary
	d.mu.RUnlock()
	if bwrapErr != nil {
		return &drivers.Fingerprint{Health: drivers.HealthStateUndetected, HealthDescription: bwrapErr.Error()}
	}
	// Run every time: bwrap may have been removed or upgraded since.
	version, err := bwrap.Version(bwrapPath)
	if err != nil {
		return &drivers.Fingerprint{Health: drivers.HealthStateUndetected, HealthDescription: err.Error()}
	}
	attrs := map[string]*pstructs.Attribute{}
	desc := drivers.DriverHealthy
	// R is optional: without it the driver still serves non-R commands.
	if cat, err := d.catalog(conf); err != nil {
		desc = fmt.Sprintf("%s; R: %v", drivers.DriverHealthy, err)
	} else {
		var note string
		attrs, note = rAttributes(cat)
		if note != "" {
			desc = drivers.DriverHealthy + "; " + note
		}
	}
	attrs["driver.bwrap-r.version"] = pstructs.NewStringAttribute(PluginVersion)
	attrs["driver.bwrap-r.bwrap.version"] = pstructs.NewStringAttribute(version)
	attrs["driver.bwrap-r.bwrap.path"] = pstructs.NewStringAttribute(bwrapPath)
	// Whether spare launchers are bwrap with the launcher preloaded (a
	// make build) or this binary exec'd (a plain go build, or
	// preload_launcher = false): 1.1 to 1.4 ms a start.
	attrs["driver.bwrap-r.launcher.preloaded"] = pstructs.NewBoolAttribute(bwrap.Preloaded(bwrapPath))
	fp := &drivers.Fingerprint{
		Attributes:        attrs,
		Health:            drivers.HealthStateHealthy,
		HealthDescription: desc,
	}
	d.preflightFingerprint(fp, conf, bwrapPath, self)
	return fp
}

func (d *Driver) StartTask(cfg *drivers.TaskConfig) (*drivers.TaskHandle, *drivers.DriverNetwork, error) {
	if _, ok := d.tasks.Get(cfg.ID); ok {
		return nil, nil, fmt.Errorf("task with ID %q already started", cfg.ID)
	}
	var tc TaskConfig
	if err := cfg.DecodeDriverConfig(&tc); err != nil {
		return nil, nil, fmt.Errorf("failed to decode driver config: %v", err)
	}
	if tc.PidsLimit < 0 {
		return nil, nil, fmt.Errorf("config: pids_limit must not be negative, got %d", tc.PidsLimit)
	}
	d.mu.RLock()
	conf, bwrapPath, bwrapErr := d.config, d.bwrapPath, d.bwrapErr
	d.mu.RUnlock()
	if bwrapErr != nil {
		return nil, nil, bwrapErr
	}
	// The operator's pids_limit is a ceiling (0: none), checked before any
	// side effect.
	if conf.PidsLimit > 0 && tc.PidsLimit > conf.PidsLimit {
		return nil, nil, fmt.Errorf("config: pids_limit %d is above the plugin's pids_limit %d: a job may lower it, not raise it", tc.PidsLimit, conf.PidsLimit)
	}
	logLimits, err := conf.Logs.limitsFor(tc.Logs)
	if err != nil {
		return nil, nil, err
	}
	collected := conf.collectsLogs(cfg)
	if collected {
		for _, name := range taskLogNames(cfg.Name) {
			if !logcollect.ValidName(name) {
				return nil, nil, fmt.Errorf("task name: its log file %q is not a file name the log collector takes (a plain name shorter than 200 bytes)", name)
			}
		}
	}

	uid, gid, err := resolveUser(cfg.User, conf)
	if err != nil {
		return nil, nil, err
	}
	// Held from here until DestroyTask; released on return (by then a
	// started task holds it through d.tasks).
	releaseUID, err := d.claimUID(uid, cfg)
	if err != nil {
		return nil, nil, err
	}
	defer releaseUID()
	pids := conf.PidsLimit
	if tc.PidsLimit > 0 {
		pids = tc.PidsLimit
	}
	// The task's cgroups are made alongside the steps below (on v1 a mkdir
	// in four hierarchies and the limits written: 0.25 ms of every start),
	// and waited for before the launch.
	cgroups := taskCgroups(cfg)
	cgroupsMade := make(chan error, 1)
	waitCgroups := sync.OnceValue(func() error { return <-cgroupsMade })
	go func() {
		var err error
		if cgroups != nil {
			if err = cgroups.Make(); err == nil {
				if err = cgroups.Apply(taskLimits(cfg, pids)); err != nil {
					err = fmt.Errorf("applying resource limits: %w", err)
				}
			}
		}
		cgroupsMade <- err
	}()
	started := false
	// Runs last on a failed start, after the cleanup below has killed the
	// sandbox.
	defer func() {
		if started {
			return
		}
		_ = waitCgroups()
		cgroups.Teardown()
	}()
	// The task's output first: its registration with the collector (a
	// round trip to another process) runs alongside the steps below and the
	// launch's preparation, and is waited for just before the launcher
	// starts, so that no command runs whose output has nowhere to go. The
	// refusals of the job's config that buildSpec finds come after it, and
	// end that registration again (below).
	stdout, stderr, registered, err := d.taskOutput(cfg, collected, logLimits)
	if err != nil {
		return nil, nil, err
	}
	defer stdout.Close()
	defer stderr.Close()
	// A start that fails leaves the collector nothing of the task's. This
	// runs after the cleanup below has killed the sandbox, the last writer
	// of the pipes, so the collector reaches their end.
	if collected {
		defer func() {
			if !started {
				stdout.Close()
				stderr.Close()
				_ = registered()
				d.collector().finish(cfg.ID, 5*time.Second)
			}
		}()
	}
	spec, rChoice, err := d.buildSpec(cfg, &tc, conf, uid, gid)
	if err != nil {
		return nil, nil, err
	}
	if err := prepareTaskDirs(cfg, uid, gid); err != nil {
		return nil, nil, err
	}
	rulesName := taskRulesName(cfg.ID)
	taskRules, err := installTaskRules(tc.EgressDeny, rulesName, uid)
	if err != nil {
		return nil, nil, err
	}
	var sb *bwrap.Sandbox
	hideAPI := conf.hidesTaskAPI()
	// Whatever fails from here on, nothing of the task is left behind.
	defer func() {
		if started {
			return
		}
		if sb != nil {
			_ = sb.Kill()
		}
		if taskRules {
			_ = egress.Remove(rulesName)
		}
		if hideAPI {
			_ = unhideTaskAPI(cfg.AllocDir, cfg.TaskDir().SecretsDir)
		}
	}()
	if err := d.guardTaskDirs(cfg); err != nil {
		return nil, nil, err
	}
	if hideAPI {
		if err := hideTaskAPI(cfg.AllocDir, cfg.TaskDir().SecretsDir); err != nil {
			return nil, nil, err
		}
	}
	if err := waitCgroups(); err != nil {
		return nil, nil, err
	}
	stage, err := stateDirs(conf.StateDir)
	if err != nil {
		return nil, nil, err
	}
	statusPath := filepath.Join(conf.StateDir, stateName(cfg.ID)+".status")
	// A leftover from an earlier start with the same ID is ours, and stale.
	_ = os.Remove(statusPath)

	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, nil, err
	}
	defer devnull.Close()

	sb, err = bwrap.Start(bwrap.Launch{
		Bwrap:      bwrapPath,
		Shim:       d.shim,
		Spec:       spec,
		Stdin:      devnull,
		Stdout:     stdout,
		Stderr:     stderr,
		StatusPath: statusPath,
		Cgroups:    cgroups.Dirs(),
		NetNS:      netNS(cfg, spec),
		Seccomp:    d.seccomp,
		StageDir:   stage,
		Ready:      registered,
	})
	if err != nil {
		return nil, nil, err
	}

	state := TaskState{
		TaskConfig: cfg,
		StartedAt:  time.Now().Round(time.Millisecond),
		Monitor:    sb.Monitor,
		Init:       sb.Init,
		StatusPath: statusPath,
		UID:        uid,
		GID:        gid,
		Cgroups:    cgroups,
		Env:        spec.Env,
		Dir:        spec.Dir,
		TaskRules:  taskRules,
		Logs:       collected,
		LogLimits:  logLimits,
	}
	if taskRules {
		state.TaskRulesName = rulesName
	}
	handle := drivers.NewTaskHandle(taskHandleVersion)
	handle.Config = cfg
	handle.State = drivers.TaskStateRunning
	if err := handle.SetDriverState(&state); err != nil {
		return nil, nil, fmt.Errorf("failed to set driver state: %v", err)
	}
	started = true
	h := d.newTaskHandle(state, sb)
	d.tasks.Set(cfg.ID, h)
	if rChoice != "" {
		d.emitEvent(cfg, rChoice, map[string]string{"r_home": spec.Env["R_HOME"]})
	}
	d.learnAllocRoot(cfg.AllocDir)
	d.logger.Info("task started", "task", cfg.Name, "alloc_id", cfg.AllocID, "pid", sb.Init.Pid, "uid", uid)
	return handle, nil, nil
}

func (d *Driver) emitEvent(cfg *drivers.TaskConfig, msg string, annotations map[string]string) {
	err := d.eventer.EmitEvent(&drivers.TaskEvent{
		TaskID:      cfg.ID,
		AllocID:     cfg.AllocID,
		TaskName:    cfg.Name,
		Timestamp:   time.Now(),
		Message:     msg,
		Annotations: annotations,
	})
	if err != nil {
		d.logger.Warn("emitting task event", "error", err)
	}
}

// stateDirs makes the state dir and its staging dir for bind sources, both
// root's and 0711 whatever the umask: task UIDs traverse them (bwrap binds
// from the staging dir) but cannot list them.
func stateDirs(stateDir string) (stage string, err error) {
	stage = filepath.Join(stateDir, "stage")
	for _, dir := range []string{stateDir, stage} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return "", fmt.Errorf("state_dir: %w", err)
		}
		if err := os.Chmod(dir, 0o711); err != nil {
			return "", fmt.Errorf("state_dir: %w", err)
		}
	}
	return stage, nil
}

// stateName is a file name for a task ID (which holds slashes).
func stateName(taskID string) string {
	sum := sha256.Sum256([]byte(taskID))
	return hex.EncodeToString(sum[:16])
}

func (d *Driver) RecoverTask(handle *drivers.TaskHandle) error {
	if handle == nil {
		return errors.New("handle cannot be nil")
	}
	if _, ok := d.tasks.Get(handle.Config.ID); ok {
		return nil
	}
	var state TaskState
	if err := handle.GetDriverState(&state); err != nil {
		return fmt.Errorf("failed to decode task state from handle: %v", err)
	}
	if state.StatusPath == "" || state.Init.Pid <= 0 {
		return fmt.Errorf("task state of %s holds no sandbox to recover", handle.Config.ID)
	}
	d.learnAllocRoot(handle.Config.AllocDir)
	if state.Logs {
		d.recoverLogs(handle.Config, state.LogLimits)
	}
	sb := bwrap.Reattach(state.Monitor, state.Init, state.StatusPath)
	d.tasks.Set(handle.Config.ID, d.newTaskHandle(state, sb))
	d.logger.Info("task recovered", "task", handle.Config.Name, "pid", state.Init.Pid)
	return nil
}

func (d *Driver) WaitTask(ctx context.Context, taskID string) (<-chan *drivers.ExitResult, error) {
	h, ok := d.tasks.Get(taskID)
	if !ok {
		return nil, drivers.ErrTaskNotFound
	}
	ch := make(chan *drivers.ExitResult)
	go func() {
		defer close(ch)
		select {
		case <-ctx.Done():
			return
		case <-d.ctx.Done():
			return
		case <-h.done:
		}
		select {
		case ch <- h.exitResult():
		case <-ctx.Done():
		case <-d.ctx.Done():
		}
	}()
	return ch, nil
}

func (d *Driver) StopTask(taskID string, timeout time.Duration, signal string) error {
	h, ok := d.tasks.Get(taskID)
	if !ok {
		return drivers.ErrTaskNotFound
	}
	// SIGINT when the job names no kill_signal, as Nomad's own drivers do.
	sig, err := parseSignal(signal, syscall.SIGINT)
	if err != nil {
		return err
	}
	return h.sandbox.Stop(sig, timeout)
}

func (d *Driver) DestroyTask(taskID string, force bool) error {
	h, ok := d.tasks.Get(taskID)
	if !ok {
		return drivers.ErrTaskNotFound
	}
	if h.running() {
		if !force {
			return errors.New("cannot destroy running task")
		}
		if err := h.sandbox.Kill(); err != nil {
			return fmt.Errorf("killing task: %w", err)
		}
		if !h.sandbox.Wait(30 * time.Second) {
			return errors.New("task did not end after SIGKILL")
		}
	}
	<-h.done
	// The sandbox's mounts gone (a volume in it free to be unmounted)
	// before the client goes on to the allocation's volumes.
	h.sandbox.Released()
	if h.state.Logs {
		// What the task wrote last reaches its files before it is gone.
		d.collector().finish(taskID, 10*time.Second)
	}
	_ = os.Remove(h.state.StatusPath)
	// Whatever the config says now: a cover from an earlier start (or an
	// earlier plugin) would keep the client from removing the alloc dir.
	if cfg := h.state.TaskConfig; cfg != nil {
		if err := unhideTaskAPI(cfg.AllocDir, cfg.TaskDir().SecretsDir); err != nil {
			d.logger.Warn("uncovering the task api socket", "error", err)
		}
	}
	// The link guards stay: the client rewrites the task's files before a
	// restart; reapGuards takes them off when the allocation goes.
	h.state.Cgroups.Teardown()
	if name := h.state.taskRulesTable(); name != "" {
		if err := egress.Remove(name); err != nil {
			d.logger.Warn("removing the task's egress rules", "table", name, "error", err)
		}
	}
	d.tasks.Delete(taskID)
	return nil
}

func (d *Driver) InspectTask(taskID string) (*drivers.TaskStatus, error) {
	h, ok := d.tasks.Get(taskID)
	if !ok {
		return nil, drivers.ErrTaskNotFound
	}
	return h.status(), nil
}

func (d *Driver) TaskStats(ctx context.Context, taskID string, interval time.Duration) (<-chan *drivers.TaskResourceUsage, error) {
	h, ok := d.tasks.Get(taskID)
	if !ok {
		return nil, drivers.ErrTaskNotFound
	}
	return h.stats(ctx, interval), nil
}

func (d *Driver) TaskEvents(ctx context.Context) (<-chan *drivers.TaskEvent, error) {
	return d.eventer.TaskEvents(ctx)
}

func (d *Driver) SignalTask(taskID string, signal string) error {
	h, ok := d.tasks.Get(taskID)
	if !ok {
		return drivers.ErrTaskNotFound
	}
	sig, err := parseSignal(signal, 0)
	if err != nil {
		return err
	}
	return h.sandbox.Signal(sig)
}

// parseSignal turns Nomad's signal names ("SIGTERM", "TERM", "") into a
// signal; "" gives def.
func parseSignal(name string, def syscall.Signal) (syscall.Signal, error) {
	if name == "" {
		if def == 0 {
			return 0, errors.New("no signal given")
		}
		return def, nil
	}
	n := strings.ToUpper(name)
	if !strings.HasPrefix(n, "SIG") {
		n = "SIG" + n
	}
	sig := unix.SignalNum(n)
	if sig == 0 {
		return 0, fmt.Errorf("unknown signal %q", name)
	}
	return sig, nil
}

// learnAllocRoot records the client's alloc dir from a task's; the first time
// it is known, the preflight runs again, now where tasks really start.
func (d *Driver) learnAllocRoot(allocDir string) {
	root := clientAllocDir(allocDir)
	if root == "" {
		return
	}
	d.mu.Lock()
	changed := d.allocRoot != root
	d.allocRoot = root
	d.mu.Unlock()
	if changed {
		d.preflight.reset()
	}
}

// clientAllocDir is the client's alloc dir, holding every allocation's, or
// "" when the task's alloc dir says nothing usable.
func clientAllocDir(allocDir string) string {
	if !filepath.IsAbs(allocDir) {
		return ""
	}
	root := filepath.Dir(filepath.Clean(allocDir))
	if root == "/" {
		return ""
	}
	return root
}
