package bwrap

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Proc names one host process by pid and start time, so that a pid the kernel
// reused for another process is never taken for it.
type Proc struct {
	Pid int
	// StartTime is field 22 of /proc/PID/stat (clock ticks since boot).
	StartTime uint64
}

// procStat holds the fields of /proc/PID/stat that bwrap-r reads.
type procStat struct {
	state     byte
	ppid      int
	startTime uint64
	utime     uint64
	stime     uint64
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// comm may hold spaces and parentheses: the fields start after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); field N is f[N-3].
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("short /proc/%d/stat", pid)
	}
	var st procStat
	st.state = f[0][0]
	st.ppid, _ = strconv.Atoi(f[1])
	st.utime, _ = strconv.ParseUint(f[11], 10, 64)
	st.stime, _ = strconv.ParseUint(f[12], 10, 64)
	st.startTime, err = strconv.ParseUint(f[19], 10, 64)
	return st, err
}

// ProcOf returns the Proc for a live pid.
func ProcOf(pid int) (Proc, error) {
	st, err := readStat(pid)
	if err != nil {
		return Proc{}, err
	}
	return Proc{Pid: pid, StartTime: st.startTime}, nil
}

// Alive reports whether the process still runs and is the same one: a
// zombie, or another process with the same pid, is not alive.
func (p Proc) Alive() bool {
	if p.Pid <= 0 {
		return false
	}
	st, err := readStat(p.Pid)
	return err == nil && st.startTime == p.StartTime && st.state != 'Z' && st.state != 'X'
}

// open returns a pidfd for p, checked against its start time after opening so
// that the descriptor cannot refer to a reused pid.
func (p Proc) open() (int, error) {
	if p.Pid <= 0 {
		return -1, os.ErrProcessDone
	}
	fd, err := unix.PidfdOpen(p.Pid, 0)
	if err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return -1, os.ErrProcessDone
		}
		return -1, err
	}
	// Checked after opening: the pidfd now pins the process it names.
	if st, err := readStat(p.Pid); err != nil || st.startTime != p.StartTime {
		unix.Close(fd)
		return -1, os.ErrProcessDone
	}
	return fd, nil
}

// Signal sends sig to p if it is still the same process.
func (p Proc) Signal(sig syscall.Signal) error {
	fd, err := p.open()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	err = unix.PidfdSendSignal(fd, sig, nil, 0)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// children returns the pids of p's children, oldest first.
func (p Proc) children() ([]int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.Pid, p.Pid))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids, nil
}

// waitExit blocks until p exits (p need not be our child).
func (p Proc) waitExit() error {
	fd, err := p.open()
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	if err != nil {
		return err
	}
	return awaitExit(fd, false)
}

// waitChild reaps this process's child pid once it has exited, as
// awaitExit does: os/exec's Wait would hold a thread blocked in waitid for
// the child's whole life, and every running sandbox has one such waiter.
// The child's own exit status is not wanted (bwrap's status file has the
// task's), so a child that exited is no error.
func waitChild(pid int) error {
	// Unreaped, the child's pid cannot name another process.
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return err
	}
	return awaitExit(fd, true)
}

// awaitExit waits for the process behind pidfd to exit (a pidfd reads as
// ready then) in Go's poller rather than in a blocked system call, so that
// a waiter holds no OS thread; reap also collects the process (it must be a
// child). It takes pidfd and closes it.
func awaitExit(pidfd int, reap bool) error {
	// Nonblocking, so that os.NewFile puts it in the poller (which takes
	// every pidfd: they are pollable since Linux 5.3, as old as pidfd_open).
	_ = unix.SetNonblock(pidfd, true)
	f := os.NewFile(uintptr(pidfd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var waitErr error
	if err := rc.Read(func(fd uintptr) bool {
		exited, err := hasExited(int(fd), reap)
		waitErr = err
		return exited || err != nil
	}); err != nil {
		return err
	}
	return waitErr
}

// hasExited says, without waiting, whether the process behind pidfd has
// exited; with reap it also reaps it. A signal for this thread (Go's
// preemption, say) can interrupt even a poll that does not wait: retried.
func hasExited(pidfd int, reap bool) (bool, error) {
	for {
		var exited bool
		var err error
		if reap {
			var info unix.Siginfo
			err = unix.Waitid(unix.P_PIDFD, pidfd, &info, unix.WEXITED|unix.WNOHANG, nil)
			// si_signo is 0 while the child runs, SIGCHLD once reaped.
			exited = info.Signo != 0
		} else {
			fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
			var n int
			n, err = unix.Poll(fds, 0)
			exited = n > 0
		}
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EAGAIN):
			return false, nil
		}
		return exited && err == nil, err
	}
}
