package driver

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/plugins/drivers"
	"golang.org/x/sys/unix"

	"github.com/bwrap-r/bwrap-r/logcollect"
)

// The collectors a plugin config may name.
const (
	collectorBwrapR = "bwrap-r"
	collectorLogmon = "logmon"
)

// LogsConfig is the plugin's logs block.
type LogsConfig struct {
	// Collector is "bwrap-r" (one collector process for the node) or
	// "logmon" (Nomad's, one per task).
	Collector string `codec:"collector"`
	// MaxFiles and MaxFileSizeMB are a task's defaults and ceilings, as
	// Nomad's job logs block has them (10 files of 10 MB).
	MaxFiles      int64 `codec:"max_files"`
	MaxFileSizeMB int64 `codec:"max_file_size"`
}

// TaskLogs is a task config's logs block.
type TaskLogs struct {
	MaxFiles      int64 `codec:"max_files"`
	MaxFileSizeMB int64 `codec:"max_file_size"`
}

func (l *LogsConfig) normalize() error {
	if l.Collector == "" {
		l.Collector = collectorBwrapR
	}
	if l.Collector != collectorBwrapR && l.Collector != collectorLogmon {
		return fmt.Errorf("logs.collector must be %q or %q, got %q", collectorBwrapR, collectorLogmon, l.Collector)
	}
	if l.MaxFiles == 0 {
		l.MaxFiles = 10
	}
	if l.MaxFileSizeMB == 0 {
		l.MaxFileSizeMB = 10
	}
	if l.MaxFiles < 1 || l.MaxFileSizeMB < 1 {
		return fmt.Errorf("logs.max_files and logs.max_file_size must be positive, got %d and %d", l.MaxFiles, l.MaxFileSizeMB)
	}
	return nil
}

// limitsFor is a task's rotation limits: its own logs block, which may
// lower the plugin's, never raise them.
func (l *LogsConfig) limitsFor(tl *TaskLogs) (logcollect.Limits, error) {
	files, size := l.MaxFiles, l.MaxFileSizeMB
	if tl != nil {
		if tl.MaxFiles < 0 || tl.MaxFileSizeMB < 0 {
			return logcollect.Limits{}, errors.New("config: logs.max_files and logs.max_file_size must not be negative")
		}
		if tl.MaxFiles > l.MaxFiles || tl.MaxFileSizeMB > l.MaxFileSizeMB {
			return logcollect.Limits{}, fmt.Errorf("config: logs asks for %d files of %d MB; the plugin allows at most %d of %d MB",
				tl.MaxFiles, tl.MaxFileSizeMB, l.MaxFiles, l.MaxFileSizeMB)
		}
		if tl.MaxFiles > 0 {
			files = tl.MaxFiles
		}
		if tl.MaxFileSizeMB > 0 {
			size = tl.MaxFileSizeMB
		}
	}
	return logcollect.Limits{MaxFiles: int(files), FileSize: size << 20}, nil
}

// collectsLogs says whether bwrap-r collects the task's output itself: when
// the plugin says so and the job has not turned its logs off (Nomad then
// hands /dev/null as the task's stdout).
func (c *Config) collectsLogs(cfg *drivers.TaskConfig) bool {
	return c.Logs.Collector == collectorBwrapR && cfg.StdoutPath != os.DevNull
}

// taskLogs is what the plugin keeps of a task's output: its own read ends of
// the task's pipes, so that the collector can die and start again without
// the task's writes failing, and the logs dir, to register them again.
type taskLogs struct {
	dir   *os.File
	names []string
	pipes []*os.File
	lim   logcollect.Limits
	// ended is closed when the collector says the task's streams have all
	// ended (its output is in its files).
	ended chan struct{}
}

func newTaskLogs(dir *os.File, lim logcollect.Limits) *taskLogs {
	return &taskLogs{dir: dir, lim: lim, ended: make(chan struct{})}
}

// markEnded records the collector's word that the task's streams ended.
// collector.mu is held.
func (t *taskLogs) markEnded() {
	if !t.heard() {
		close(t.ended)
	}
}

// heard reports whether the collector's word came.
func (t *taskLogs) heard() bool {
	select {
	case <-t.ended:
		return true
	default:
		return false
	}
}

// taskLogNames are the base names of a task's log files.
func taskLogNames(task string) []string {
	return []string{task + ".stdout", task + ".stderr"}
}

func (t *taskLogs) close() {
	if t.dir != nil {
		t.dir.Close()
	}
	for _, p := range t.pipes {
		p.Close()
	}
}

// collector is the plugin's side of the node's log collector: it starts the
// collector when there is none, watches it, and when it goes, starts another
// and hands it every task's pipes again.
type collector struct {
	socket, lock, logPath string
	exe                   string
	logger                hclog.Logger

	mu     sync.Mutex
	client *logcollect.Client
	// watching is the connection whose end says the collector is gone; it
	// also brings word of each task whose streams have ended, when
	// subscribed (a collector from before subscriptions is not).
	watching   *logcollect.Client
	subscribed bool
	tasks      map[string]*taskLogs
	closed     bool
}

func newCollector(stateDir, exe string, logger hclog.Logger) *collector {
	return &collector{
		socket:  filepath.Join(stateDir, "logd.sock"),
		lock:    filepath.Join(stateDir, "logd.lock"),
		logPath: filepath.Join(stateDir, "logd.log"),
		exe:     exe,
		logger:  logger.Named("logs"),
		tasks:   map[string]*taskLogs{},
	}
}

// connected returns a client, starting the collector if none answers.
// c.mu is held.
func (c *collector) connected() (*logcollect.Client, error) {
	if c.client != nil {
		return c.client, nil
	}
	cl, err := logcollect.Spawn(c.exe, c.socket, c.lock, c.logPath)
	if err != nil {
		return nil, err
	}
	watch, err := logcollect.Dial(c.socket)
	if err != nil {
		cl.Close()
		return nil, err
	}
	// Subscribed before any task is registered with this collector, so that
	// no word of one is missed.
	ended, err := watch.Subscribe()
	c.subscribed = err == nil
	c.client, c.watching = cl, watch
	go c.watch(cl, watch, ended)
	return cl, nil
}

// watch takes the collector's word of ended tasks until it goes, then
// starts another and registers every task again; what the tasks wrote
// meanwhile waits in their pipes. ended is nil when not subscribed.
func (c *collector) watch(cl, watch *logcollect.Client, ended <-chan string) {
	if ended != nil {
		for id := range ended {
			c.mu.Lock()
			if t, ok := c.tasks[id]; ok {
				t.markEnded()
			}
			c.mu.Unlock()
		}
	} else {
		<-watch.Closed()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != cl || c.closed {
		return
	}
	c.dropClient()
	c.logger.Warn("the log collector went away; starting another")
	for delay := 100 * time.Millisecond; !c.closed; delay = min(2*delay, 5*time.Second) {
		err := c.readdAll()
		if err == nil {
			return
		}
		c.logger.Error("starting the log collector again", "error", err)
		c.mu.Unlock()
		time.Sleep(delay)
		c.mu.Lock()
	}
}

// readdAll registers every task with a collector. c.mu is held.
func (c *collector) readdAll() error {
	cl, err := c.connected()
	if err != nil {
		return err
	}
	for id, t := range c.tasks {
		if err := cl.Add(id, t.dir, t.names, t.pipes, t.lim); err != nil {
			c.dropClient()
			return fmt.Errorf("registering %s: %w", id, err)
		}
	}
	return nil
}

// collectorRefused says the collector turned a request down (the connection is fine).
func collectorRefused(err error) bool {
	var r *logcollect.RefusedError
	return errors.As(err, &r)
}

func (c *collector) dropClient() {
	if c.client != nil {
		c.client.Close()
		c.watching.Close()
		c.client, c.watching = nil, nil
	}
	// No word comes until the next connection subscribes: drained asks.
	c.subscribed = false
}

// add registers a task's pipes; on a connection error it tries once more
// with a collector started afresh.
func (c *collector) add(id string, t *taskLogs) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var cl *logcollect.Client
		if cl, err = c.connected(); err != nil {
			continue
		}
		if err = cl.Add(id, t.dir, t.names, t.pipes, t.lim); err == nil {
			c.tasks[id] = t
			return nil
		}
		// A refusal says nothing against the connection: keep it (and the
		// subscription that tells every other task's end).
		if collectorRefused(err) {
			break
		}
		c.dropClient()
	}
	return fmt.Errorf("log collector: %w", err)
}

// recover takes back the pipes of a task the collector holds, after the
// plugin restarted. It reports false when the collector does not know the
// task: the task has ended, or the collector died while no plugin ran, and
// its output since then had no reader.
func (c *collector) recover(id string, logsDir *os.File, lim logcollect.Limits) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.tasks[id]; ok {
		logsDir.Close()
		return true, nil
	}
	cl, err := c.connected()
	if err != nil {
		logsDir.Close()
		return false, err
	}
	files, err := cl.Files(id)
	if err != nil {
		if !collectorRefused(err) {
			c.dropClient()
		}
		logsDir.Close()
		return false, err
	}
	if files == nil {
		logsDir.Close()
		return false, nil
	}
	t := newTaskLogs(logsDir, lim)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		t.names = append(t.names, name)
		t.pipes = append(t.pipes, files[name])
	}
	c.tasks[id] = t
	return true, nil
}

// drained waits, at most within, until the collector has moved all of an
// ended task's output into its files (it then lets the task go); false when
// it has not by then. The collector's word on the watch connection usually
// settles it; failing that (a collector from before subscriptions, or no
// word within a second) it asks, on a connection of this wait's own (the
// shared one stays free for starts), and the collector answers when the
// task's streams end.
func (c *collector) drained(id string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	c.mu.Lock()
	t, ours := c.tasks[id]
	subscribed := c.subscribed
	c.mu.Unlock()
	if !ours {
		return true
	}
	if subscribed {
		// A collector that goes and comes back meanwhile is handed the
		// task again and gives its word then.
		wait := time.NewTimer(min(within, time.Second))
		select {
		case <-t.ended:
			wait.Stop()
			return true
		case <-wait.C:
		}
	}
	for {
		c.mu.Lock()
		_, ours := c.tasks[id]
		_, err := c.connected()
		c.mu.Unlock()
		if !ours {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		if err == nil {
			var cl *logcollect.Client
			if cl, err = logcollect.Dial(c.socket); err == nil {
				var done bool
				done, err = cl.Wait(id, left)
				cl.Close()
				if err == nil {
					return done
				}
			}
		}
		// The collector went away meanwhile: the plugin starts another and
		// hands it the task's pipes again.
		time.Sleep(min(10*time.Millisecond, left))
	}
}

// finish lets the collector drain a task that has ended (every writer of its
// pipes is gone, so the collector reaches their end), then forgets it. The
// plugin keeps its read ends until then: a collector that dies meanwhile is
// handed them again.
func (c *collector) finish(id string, within time.Duration) {
	undrained := !c.drained(id, within)
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.tasks[id]
	if !ok {
		return
	}
	if undrained {
		c.logger.Warn("the task's output did not end in time; forgetting it", "task_id", id)
		if cl, err := c.connected(); err == nil {
			_ = cl.Forget(id)
		}
	}
	delete(c.tasks, id)
	t.close()
}

// shutdown closes the plugin's connections; the collector runs on for the
// tasks, and exits once it has none and no plugin.
func (c *collector) shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.dropClient()
	for _, t := range c.tasks {
		t.close()
	}
	c.tasks = map[string]*taskLogs{}
}

// openLogsDir opens the allocation's logs dir (alloc/logs) for the
// collector, without following a link on the way.
func openLogsDir(cfg *drivers.TaskConfig) (*os.File, error) {
	logDir := cfg.TaskDir().LogDir
	fd, err := openDirBeneath(cfg.AllocDir, logDir)
	if err != nil {
		return nil, fmt.Errorf("logs dir %s: %w", logDir, err)
	}
	defer unix.Close(fd)
	// From the O_PATH descriptor, a real one the collector can list.
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("logs dir %s: %w", logDir, err)
	}
	return os.NewFile(uintptr(dfd), logDir), nil
}

// taskLogPipes makes the task's stdout and stderr pipes and starts
// registering their read ends with the collector; the caller hands the write
// ends to the task and closes them, and calls registered (which waits for the
// collector's answer) before it reports the start. The round trip to the
// collector, a quarter of a millisecond, thus runs alongside the launch
// instead of before it.
func (d *Driver) taskLogPipes(cfg *drivers.TaskConfig, lim logcollect.Limits) (stdout, stderr *os.File, registered func() error, err error) {
	dir, err := openLogsDir(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	t := newTaskLogs(dir, lim)
	t.names = taskLogNames(cfg.Name)
	var writers []*os.File
	for range t.names {
		r, w, err := os.Pipe()
		if err != nil {
			t.close()
			closeFiles(writers)
			return nil, nil, nil, err
		}
		// Room for a fast writer: fewer wake-ups of the collector per MB, and
		// a task that outruns it (or a collector starting again) waits less.
		// Pages are taken only as data waits in the pipe.
		_, _ = unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, logPipeSize)
		t.pipes = append(t.pipes, r)
		writers = append(writers, w)
	}
	added := make(chan error, 1)
	go func() {
		err := d.collector().add(cfg.ID, t)
		if err != nil {
			t.close()
		}
		added <- err
	}()
	return writers[0], writers[1], sync.OnceValue(func() error { return <-added }), nil
}

// logPipeSize is the capacity of a task's stdout and stderr pipes.
const logPipeSize = 1 << 20

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// taskOutput is the task's stdout and stderr: pipes to the node's collector,
// or Nomad's FIFOs for its logmon. registered reports whether the collector
// took the pipes (see taskLogPipes); it may be called more than once.
func (d *Driver) taskOutput(cfg *drivers.TaskConfig, collected bool, lim logcollect.Limits) (stdout, stderr *os.File, registered func() error, err error) {
	if collected {
		return d.taskLogPipes(cfg, lim)
	}
	if stdout, err = openLogFIFO(cfg.AllocDir, cfg.StdoutPath); err != nil {
		return nil, nil, nil, fmt.Errorf("stdout: %w", err)
	}
	if stderr, err = openLogFIFO(cfg.AllocDir, cfg.StderrPath); err != nil {
		stdout.Close()
		return nil, nil, nil, fmt.Errorf("stderr: %w", err)
	}
	return stdout, stderr, func() error { return nil }, nil
}

// recoverLogs takes back a recovered task's pipes from the collector.
func (d *Driver) recoverLogs(cfg *drivers.TaskConfig, lim logcollect.Limits) {
	dir, err := openLogsDir(cfg)
	if err == nil {
		var known bool
		known, err = d.collector().recover(cfg.ID, dir, lim)
		if err == nil && !known {
			d.logger.Warn("the log collector holds no pipes of the task: it has ended, or its output since the collector last ran had no reader", "task", cfg.Name, "alloc_id", cfg.AllocID)
		}
	}
	if err != nil {
		d.logger.Error("recovering the task's logs", "task", cfg.Name, "alloc_id", cfg.AllocID, "error", err)
	}
}
