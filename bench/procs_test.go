//go:build bench

package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/nomad/client/lib/cgroupslib"
	"golang.org/x/sys/unix"

	"github.com/bwrap-r/bwrap-r/internal/nodeload"
)

// proc is a host process as /proc shows it.
type proc struct {
	pid  int
	argv []string
}

func readArgv(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

// statFields are the fields of /proc/PID/stat after the command name (the
// first is the state, field 3), or nil.
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// procs lists every process on the host.
func procs() []proc {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var ps []proc
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		argv := readArgv(pid)
		if argv == nil {
			continue
		}
		ps = append(ps, proc{pid: pid, argv: argv})
	}
	return ps
}

// isTaskSleep: the process is one of the bench's sleep tasks after its exec
// (before it, a fork of bwrap or of an executor has another argv[0]).
func isTaskSleep(argv []string, token string) bool {
	return len(argv) == 2 && filepath.Base(argv[0]) == "sleep" && argv[1] == token
}

// children lists pid's children.
func children(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// commandUp reports whether the task's sleep has been exec'd: the driver's
// pid itself (raw_exec, exec) or a descendant of it (bwrap-r's pid 1 forks
// the command).
func commandUp(root int, token string) bool {
	level := []int{root}
	for depth := 0; depth < 3 && len(level) > 0; depth++ {
		var next []int
		for _, pid := range level {
			if isTaskSleep(readArgv(pid), token) {
				return true
			}
			next = append(next, children(pid)...)
		}
		level = next
	}
	return false
}

// countSleeps counts the bench's sleep tasks that are running.
func countSleeps(token string) int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if isTaskSleep(readArgv(pid), token) {
			n++
		}
	}
	return n
}

// mem is a process's (or a sum of processes') memory, in bytes.
type mem struct {
	rss, pss, uss uint64
	// cpu is the CPU time the process has used (user + system).
	cpu time.Duration
}

func (m *mem) add(o mem) { m.rss += o.rss; m.pss += o.pss; m.uss += o.uss; m.cpu += o.cpu }

// cpuTime reads a process's user + system time from /proc/PID/stat.
func cpuTime(pid int) time.Duration {
	f := statFields(pid)
	if len(f) < 13 {
		return 0
	}
	// Fields 14 and 15 (utime, stime) in clock ticks (USER_HZ, 100).
	u, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond
}

// readMem reads /proc/PID/smaps_rollup: RSS, PSS, and USS (private pages).
func readMem(pid int) (mem, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return mem{}, err
	}
	defer f.Close()
	var m mem
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		kb, err := strconv.ParseUint(fs[1], 10, 64)
		if err != nil {
			continue
		}
		switch fs[0] {
		case "Rss:":
			m.rss = kb << 10
		case "Pss:":
			m.pss = kb << 10
		case "Private_Clean:", "Private_Dirty:":
			m.uss += kb << 10
		}
	}
	if m.rss == 0 {
		return m, fmt.Errorf("no Rss in /proc/%d/smaps_rollup", pid)
	}
	m.cpu = cpuTime(pid)
	return m, sc.Err()
}

// meminfo reads a /proc/meminfo field in bytes.
func meminfo(field string) uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field+":") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				n, _ := strconv.ParseUint(f[1], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// machine describes the node the bench ran on.
type machine struct {
	kernel, cpu, bwrap, r, goVersion, nomad, cgroups string
	cores                                            int
	memTotal                                         uint64
	loadStart                                        string
	// mounts is the size of the host's mount table at the start, where the
	// leftovers of killed test runs would show; leftMounts are those of
	// them in the dirs of earlier bench runs.
	mounts, leftMounts int
}

func readMachine() machine {
	points := mountsUnder("/")
	m := machine{cores: runtime.NumCPU(), memTotal: meminfo("MemTotal"), goVersion: runtime.Version(), loadStart: loadavg(), mounts: len(points), leftMounts: len(benchMounts(points))}
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		m.kernel = unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Machine[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	m.bwrap = firstLine("bwrap", "--version")
	m.r = firstLine("R", "--version")
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/hashicorp/nomad" {
				m.nomad = d.Version
			}
		}
	}
	if m.nomad == "" {
		// Test binaries carry no module list: read the module's go.mod.
		if b, err := os.ReadFile("../go.mod"); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) >= 2 && f[0] == "github.com/hashicorp/nomad" {
					m.nomad = f[1]
				}
			}
		}
	}
	switch cgroupslib.GetMode() {
	case cgroupslib.CG1:
		m.cgroups = "v1"
	case cgroupslib.CG2:
		m.cgroups = "v2"
	default:
		m.cgroups = "off"
	}
	if _, err := os.Stat("/sys/fs/cgroup/unified/cgroup.controllers"); err == nil && m.cgroups == "v1" {
		m.cgroups = "v1 (hybrid: v2 mounted at /sys/fs/cgroup/unified)"
	}
	return m
}

func firstLine(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "not found"
	}
	line, _, _ := strings.Cut(string(bytes.TrimSpace(out)), "\n")
	return line
}

// leftovers waits for the bench's processes to be gone and lists any that
// are not: sleep and true tasks (and their bwrap processes, whose argv ends
// with the same token), and Nomad executors this binary started.
func (e *env) leftovers(timeout time.Duration) []string {
	self, _ := os.Executable()
	deadline := time.Now().Add(timeout)
	for {
		var left []string
		for _, p := range procs() {
			if p.pid == os.Getpid() {
				continue
			}
			mine := false
			for _, a := range p.argv {
				if a == e.token {
					mine = true
				}
			}
			if len(p.argv) > 1 && p.argv[0] == self && p.argv[1] == "executor" {
				mine = true
			}
			if mine {
				left = append(left, fmt.Sprintf("%d %s", p.pid, strings.Join(p.argv, " ")))
			}
		}
		// The same check as an operator would make.
		pg, _ := exec.Command("pgrep", "-af", e.token).Output()
		pgx, _ := exec.Command("pgrep", "-af", self+" executor").Output()
		if len(left) == 0 && len(bytes.TrimSpace(pg)) == 0 && len(bytes.TrimSpace(pgx)) == 0 {
			e.rep.leftoverCheck = fmt.Sprintf("after the run no process matched `pgrep -f %s` (the tasks' argument) or `pgrep -f '<bench binary> executor'`", e.token)
			return nil
		}
		if time.Now().After(deadline) {
			if len(left) == 0 {
				left = append(left, "pgrep: "+string(pg)+string(pgx))
			}
			return left
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// mountsLeft lists mount points under dir (alloc dirs' secrets tmpfs, exec's
// bind mounts) still in the host's mount table.
// bwrap-r's link guards (nosymfollow binds of local/ and alloc/) stay until
// the client removes the allocation, which the harness never does: they are
// detached here, like the client's GC, and not counted.
func mountsLeft(dir string) []string {
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		var guards []string
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) > 5 && strings.HasPrefix(f[4], dir+"/") && strings.Contains(f[5], "nosymfollow") {
				guards = append(guards, f[4])
			}
		}
		for i := len(guards) - 1; i >= 0; i-- {
			_ = unix.Unmount(guards[i], unix.MNT_DETACH)
		}
	}
	return mountsUnder(dir + "/")
}

// mountsUnder lists the host's mount points that start with prefix.
func mountsUnder(prefix string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], prefix) {
			out = append(out, f[4])
		}
	}
	return out
}

// benchDirPrefix starts the name of every bench run's own dir (newEnv).
const benchDirPrefix = "bwrap-r-bench-"

// benchMounts are the mount points among points that lie in a bench run's
// own dir: the link guards bwrap-r mounts on a task's dirs stay there when
// a run ends before the driver's reap (every 30 s) takes them off. Every
// host path a launch clones makes the kernel walk the mounts below its own
// mount, so a table swollen with them slows every start.
func benchMounts(points []string) []string {
	var out []string
	for _, p := range points {
		for _, part := range strings.Split(p, "/") {
			if strings.HasPrefix(part, benchDirPrefix) {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// unmountBelow takes off every mount in dir (deepest first), so that a run
// leaves the host's mount table as it found it.
func unmountBelow(dir string) {
	points := mountsUnder(dir + "/")
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	for _, p := range points {
		_ = unix.Unmount(p, unix.MNT_DETACH)
	}
}

// quiesce waits (at most max) until the node is calm: for a second, no more
// runnable processes than cores and none blocked on I/O or locks. It
// reports whether the node calmed down (true when it does not wait).
func quiesce(max time.Duration) bool {
	if nodeload.Calm(max) {
		return true
	}
	running, blocked := nodeload.Procs()
	fmt.Printf("bench: the node did not calm down within %v (%d runnable, %d blocked); going on\n", max, running, blocked)
	return false
}

// load1 is the 1-minute load average.
func load1() float64 {
	f := strings.Fields(loadavg())
	if len(f) == 0 {
		return math.NaN()
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return math.NaN()
	}
	return v
}
