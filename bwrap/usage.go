package bwrap

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports here.
const clockTicks = 100

// Usage is the summed usage of every process in the sandbox.
type Usage struct {
	At time.Time
	// UserTime and SystemTime are CPU time used so far.
	UserTime, SystemTime time.Duration
	// RSS is the resident memory of the sandbox's processes, in bytes.
	RSS uint64
}

// Usage walks the sandbox's process tree from its pid 1.
func (s *Sandbox) Usage() (Usage, error) {
	u := Usage{At: time.Now()}
	if !s.Init.Alive() {
		return u, os.ErrProcessDone
	}
	page := uint64(os.Getpagesize())
	queue := []int{s.Init.Pid}
	seen := map[int]bool{}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		st, err := readStat(pid)
		if err != nil {
			continue
		}
		u.UserTime += time.Duration(st.utime) * time.Second / clockTicks
		u.SystemTime += time.Duration(st.stime) * time.Second / clockTicks
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid)); err == nil {
			if f := strings.Fields(string(b)); len(f) > 1 {
				if n, err := strconv.ParseUint(f[1], 10, 64); err == nil {
					u.RSS += n * page
				}
			}
		}
		kids, _ := Proc{Pid: pid}.children()
		queue = append(queue, kids...)
	}
	return u, nil
}
