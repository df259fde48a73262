package bwrap

import (
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pidfdInfo is the kernel's struct pidfd_info (Linux 6.15+, up to its
// exit_code field's version).
type pidfdInfo struct {
	Mask         uint64
	CgroupID     uint64
	Pid          uint32
	Tgid         uint32
	Ppid         uint32
	Ruid         uint32
	Rgid         uint32
	Euid         uint32
	Egid         uint32
	Suid         uint32
	Sgid         uint32
	Fsuid        uint32
	Fsgid        uint32
	ExitCode     int32
	CoredumpMask uint32
	spare1       uint32
}

const (
	pidfdInfoExit = 1 << 3
	// PIDFD_GET_INFO: _IOWR(PIDFS_IOCTL_MAGIC 0xFF, 11, struct pidfd_info).
	pidfdGetInfo = 3<<30 | uint(unsafe.Sizeof(pidfdInfo{}))<<16 | 0xFF<<8 | 11
)

// exitWaitStatus returns the wait status of the process behind a pidfd once
// it has exited and been reaped, where the kernel keeps it for pidfd holders
// (Linux 6.15+); ok is false when it does not say.
func exitWaitStatus(pidfd int) (status syscall.WaitStatus, ok bool) {
	info := pidfdInfo{Mask: pidfdInfoExit}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(pidfd), uintptr(pidfdGetInfo), uintptr(unsafe.Pointer(&info)))
	if errno != 0 || info.Mask&pidfdInfoExit == 0 {
		return 0, false
	}
	return syscall.WaitStatus(info.ExitCode), true
}

// Whether this kernel keeps a reaped process's wait status for pidfd
// holders, as sandboxes that ended have shown (exitInfoUnknown until one has).
const (
	exitInfoUnknown int32 = iota
	exitInfoKept
	exitInfoNotKept
)

var exitInfo atomic.Int32

// watchCommand opens a pidfd on the task's command as soon as bwrap's pid 1
// has forked it, so that its wait status can be read when it has exited:
// bwrap's json status says 137 both for `exit 137` and for SIGKILL. A
// command that exits before it is found keeps bwrap's code alone. It looks
// (in /proc, backing off) only on a kernel not yet seen to lack what the
// pidfd is for (before Linux 6.15); it never holds up the start.
func (s *Sandbox) watchCommand() {
	if exitInfo.Load() == exitInfoNotKept {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for delay := time.Millisecond; time.Now().Before(deadline); delay = min(2*delay, 50*time.Millisecond) {
		kids, err := s.Init.children()
		if err != nil {
			return // pid 1 is gone
		}
		for _, pid := range kids {
			st, err := readStat(pid)
			if err != nil || st.ppid != s.Init.Pid {
				continue
			}
			fd, err := Proc{Pid: pid, StartTime: st.startTime}.open()
			if errors.Is(err, os.ErrProcessDone) {
				return
			}
			if err == nil {
				s.cmdMu.Lock()
				if s.cmdFD < 0 && !s.finished {
					s.cmdFD = fd
				} else {
					unix.Close(fd)
				}
				s.cmdMu.Unlock()
			}
			return
		}
		select {
		case <-s.done:
			return
		case <-time.After(delay):
		}
	}
}

// commandExit refines st with the command's own wait status when the
// kernel kept it: an exit code of 128+N that was no signal is an exit code.
func (s *Sandbox) commandExit(st ExitStatus) ExitStatus {
	s.cmdMu.Lock()
	defer s.cmdMu.Unlock()
	s.finished = true
	if s.cmdFD < 0 {
		return st
	}
	defer func() { unix.Close(s.cmdFD); s.cmdFD = -1 }()
	if st.Err != nil {
		return st
	}
	ws, ok := exitWaitStatus(s.cmdFD)
	if ok {
		exitInfo.Store(exitInfoKept)
	} else {
		exitInfo.CompareAndSwap(exitInfoUnknown, exitInfoNotKept)
	}
	switch {
	case !ok:
	case ws.Exited() && ws.ExitStatus() == st.Code:
		st.Signal = 0
	case ws.Signaled() && 128+int(ws.Signal()) == st.Code:
		st.Signal = int(ws.Signal())
	}
	return st
}
