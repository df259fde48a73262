package driver

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/nomad/plugins/drivers"

	"github.com/bwrap-r/bwrap-r/bwrap"
	"github.com/bwrap-r/bwrap-r/cgroup"
	"github.com/bwrap-r/bwrap-r/logcollect"
)

// TaskState is what Nomad keeps in the task handle for recovery.
type TaskState struct {
	TaskConfig *drivers.TaskConfig
	StartedAt  time.Time
	// Monitor is bwrap's own process; Init is the sandbox's pid 1. Both carry
	// their start time, so a reused pid is never taken for them.
	Monitor bwrap.Proc
	Init    bwrap.Proc
	// StatusPath is bwrap's JSON status file, in the root-only state_dir.
	StatusPath string
	UID, GID   uint32
	// Cgroups are the task's cgroup dirs (nil when Nomad made none).
	Cgroups *cgroup.Set
	// Env is the task's environment, for commands exec'd into it.
	Env map[string]string
	// Dir is the task's working directory inside the sandbox, where exec'd
	// commands start.
	Dir string
	// TaskRules says the task's egress_deny rules are installed.
	TaskRules bool
	// TaskRulesName is their nft table / iptables chain, named by the task
	// ID; "" in handles from before, whose table was named by UID.
	TaskRulesName string
	// Logs says the node's collector writes the task's output, with these
	// limits.
	Logs      bool
	LogLimits logcollect.Limits
}

type taskHandle struct {
	state   TaskState
	sandbox *bwrap.Sandbox
	// done is closed once the exit result is known.
	done       chan struct{}
	mhzPerCore float64

	mu          sync.RWMutex
	completedAt time.Time
	result      *drivers.ExitResult
}

func (d *Driver) newTaskHandle(state TaskState, sb *bwrap.Sandbox) *taskHandle {
	d.mu.RLock()
	mhz := d.mhzPerCore
	d.mu.RUnlock()
	h := &taskHandle{state: state, sandbox: sb, done: make(chan struct{}), mhzPerCore: mhz}
	go h.run(d)
	return h
}

func (h *taskHandle) run(d *Driver) {
	st := h.sandbox.Status()
	res := &drivers.ExitResult{ExitCode: st.Code, Signal: st.Signal, Err: st.Err}
	if n := h.state.Cgroups.OOMKills(); n > 0 {
		res.OOMKilled = true
		d.emitEvent(h.state.TaskConfig, fmt.Sprintf("OOM killed: the task exceeded its memory limit (%d process(es) killed)", n), nil)
	}
	if h.state.Logs {
		// When Nomad hears of the exit, `alloc logs` shows the last line.
		d.collector().drained(h.state.TaskConfig.ID, 5*time.Second)
	}
	h.mu.Lock()
	h.result, h.completedAt = res, time.Now()
	h.mu.Unlock()
	close(h.done)
}

func (h *taskHandle) running() bool {
	select {
	case <-h.done:
		return false
	default:
		return true
	}
}

func (h *taskHandle) exitResult() *drivers.ExitResult {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.result.Copy()
}

func (h *taskHandle) status() *drivers.TaskStatus {
	h.mu.RLock()
	defer h.mu.RUnlock()
	s := &drivers.TaskStatus{
		ID:          h.state.TaskConfig.ID,
		Name:        h.state.TaskConfig.Name,
		State:       drivers.TaskStateRunning,
		StartedAt:   h.state.StartedAt,
		CompletedAt: h.completedAt,
		DriverAttributes: map[string]string{
			"pid": itoa(h.state.Init.Pid),
			"uid": itoa(int(h.state.UID)),
		},
	}
	if h.result != nil {
		s.State = drivers.TaskStateExited
		s.ExitResult = h.result.Copy()
	}
	return s
}

type taskStore struct {
	mu    sync.RWMutex
	tasks map[string]*taskHandle
}

func newTaskStore() *taskStore { return &taskStore{tasks: map[string]*taskHandle{}} }

func (s *taskStore) Set(id string, h *taskHandle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tasks[id] = h
}

func (s *taskStore) Get(id string) (*taskHandle, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	h, ok := s.tasks[id]
	return h, ok
}

// inAlloc reports whether a task of the allocation other than id ("" for
// none) is held.
func (s *taskStore) inAlloc(allocID, id string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for tid, h := range s.tasks {
		if tid != id && h.state.TaskConfig != nil && h.state.TaskConfig.AllocID == allocID {
			return true
		}
	}
	return false
}

func (s *taskStore) Delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tasks, id)
}

// sample is the task's usage now. CPU time comes from the task's cgroup
// where it accounts it (then procfs is not walked: memory comes from the
// cgroup too) and never goes down: a procfs sum forgets a process when it
// exits, and Nomad's client panics on a falling counter.
func (h *taskHandle) sample(prev *bwrap.Usage) (bwrap.Usage, cgroup.CPUStats, error) {
	cpu := h.state.Cgroups.CPU()
	var u bwrap.Usage
	if cpu.Accounted {
		if !h.sandbox.Init.Alive() {
			return u, cpu, os.ErrProcessDone
		}
		u = bwrap.Usage{At: time.Now(), UserTime: cpu.User, SystemTime: cpu.System}
	} else {
		var err error
		if u, err = h.sandbox.Usage(); err != nil {
			return u, cpu, err
		}
	}
	if prev != nil {
		u.UserTime = max(u.UserTime, prev.UserTime)
		u.SystemTime = max(u.SystemTime, prev.SystemTime)
	}
	return u, cpu, nil
}

// stats reports the task's usage at each interval until the task ends or
// ctx is done.
func (h *taskHandle) stats(ctx context.Context, interval time.Duration) <-chan *drivers.TaskResourceUsage {
	ch := make(chan *drivers.TaskResourceUsage)
	go func() {
		defer close(ch)
		t := time.NewTimer(0)
		defer t.Stop()
		var prev *bwrap.Usage
		for {
			select {
			case <-ctx.Done():
				return
			case <-h.done:
				return
			case <-t.C:
				t.Reset(interval)
			}
			u, cpu, err := h.sample(prev)
			if err != nil {
				continue
			}
			select {
			case ch <- usageToNomad(u, prev, h.state.Cgroups, cpu, h.mhzPerCore):
				prev = &u
			case <-ctx.Done():
				return
			case <-h.done:
				return
			}
		}
	}()
	return ch
}
