// Package preflight checks that a node can run bwrap-r's tasks safely: that
// bubblewrap works, that task UIDs are host-effective, and that a sandboxed
// task cannot reach the addresses it must not (cloud metadata, the cluster's
// control plane, databases). Every check runs, even after one fails.
package preflight

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Result is a check's outcome.
type Result string

const (
	OK      Result = "ok"
	Info    Result = "info"
	Warning Result = "warning"
	Error   Result = "error"
)

// Check is one line of the report.
type Check struct {
	Name   string `json:"check"`
	Result Result `json:"result"`
	Detail string `json:"detail"`
	// Fix says what to do when the result is not ok.
	Fix string `json:"fix,omitempty"`
}

// Report is every check, in the order run.
type Report struct {
	Checks []Check `json:"checks"`
}

func (r *Report) add(name string, res Result, detail, fix string) {
	r.Checks = append(r.Checks, Check{Name: name, Result: res, Detail: detail, Fix: fix})
}

// Failed lists the checks whose result is an error.
func (r *Report) Failed() []Check {
	var out []Check
	for _, c := range r.Checks {
		if c.Result == Error {
			out = append(out, c)
		}
	}
	return out
}

// Get returns the named check.
func (r *Report) Get(name string) (Check, bool) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return Check{}, false
}

// Table renders the report for a terminal.
func (r *Report) Table() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CHECK\tRESULT\tDETAIL\tWHAT TO DO")
	for _, c := range r.Checks {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", c.Name, c.Result, c.Detail, c.Fix)
	}
	w.Flush()
	return b.String()
}

// JSON renders the report as JSON.
func (r *Report) JSON() string {
	b, _ := json.MarshalIndent(r, "", "  ")
	return string(b)
}

// checkUserNamespaces reads the sysctls that allow or forbid unprivileged
// user namespaces, which bwrap needs when started as a task's UID.
func checkUserNamespaces(r *Report, procSys string) {
	read := func(name string) (int, bool) {
		b, err := os.ReadFile(filepath.Join(procSys, filepath.FromSlash(strings.ReplaceAll(name, ".", "/"))))
		if err != nil {
			return 0, false
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		return n, err == nil
	}
	var problems, notes []string
	res := OK
	if v, ok := read("kernel.unprivileged_userns_clone"); ok {
		if v == 0 {
			res = Error
			problems = append(problems, "kernel.unprivileged_userns_clone = 0")
		} else {
			notes = append(notes, "kernel.unprivileged_userns_clone = 1")
		}
	}
	if v, ok := read("user.max_user_namespaces"); ok {
		switch {
		case v == 0:
			res = Error
			problems = append(problems, "user.max_user_namespaces = 0")
		case v < 1000:
			if res == OK {
				res = Warning
			}
			problems = append(problems, fmt.Sprintf("user.max_user_namespaces = %d (one per task)", v))
		default:
			notes = append(notes, fmt.Sprintf("user.max_user_namespaces = %d", v))
		}
	} else {
		res = Error
		problems = append(problems, "user.max_user_namespaces not readable: no user namespaces in this kernel?")
	}
	if v, ok := read("kernel.apparmor_restrict_unprivileged_userns"); ok && v != 0 {
		res = Error
		problems = append(problems, "kernel.apparmor_restrict_unprivileged_userns = 1 (Ubuntu 23.10+)")
	}
	if res == OK {
		r.add("userns", OK, "unprivileged user namespaces allowed: "+strings.Join(notes, ", "), "")
		return
	}
	r.add("userns", res, strings.Join(problems, "; "),
		"allow unprivileged user namespaces: sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces=15000; on Ubuntu 23.10+ give bwrap an AppArmor profile with 'userns,' or set kernel.apparmor_restrict_unprivileged_userns=0")
}

// checkCgroups reports the cgroup version and whether the controllers the
// limits need are there. On v2 a controller must be available at the root
// (cgroup.controllers: one missing there is disabled on the kernel command
// line or not delegated to this cgroup namespace) and, once the client has
// made its cgroups, enabled for the tasks' scopes: in the cgroup.subtree_control
// of each partition below parent (the client's cgroup parent, default
// <root>/nomad.slice), or else in parent's cgroup.controllers.
func checkCgroups(r *Report, root, parent string) {
	need := []string{"memory", "cpu", "pids", "cpuset"}
	missingFrom := func(file string) ([]string, string, bool) {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, "", false
		}
		have := strings.Fields(string(b))
		var missing []string
		for _, c := range need {
			if !slices.Contains(have, c) {
				missing = append(missing, c)
			}
		}
		return missing, strings.Join(have, " "), true
	}
	if missing, have, ok := missingFrom(filepath.Join(root, "cgroup.controllers")); ok {
		if len(missing) > 0 {
			r.add("cgroups", Error, fmt.Sprintf("v2; controllers not available at %s: %s (cgroup.controllers: %s)", root, strings.Join(missing, ", "), have),
				"a controller missing at the root is disabled on the kernel command line (cgroup_disable=) or not delegated to this cgroup namespace: delegate "+strings.Join(missing, ", ")+" to it (systemd: Delegate=yes for the Nomad unit)")
			return
		}
		if parent == "" {
			parent = filepath.Join(root, "nomad.slice")
		}
		var partitions []string
		for _, p := range []string{"share.slice", "reserve.slice"} {
			dir := filepath.Join(parent, p)
			missing, have, ok := missingFrom(filepath.Join(dir, "cgroup.subtree_control"))
			if !ok {
				continue
			}
			partitions = append(partitions, p)
			if len(missing) > 0 {
				r.add("cgroups", Error, fmt.Sprintf("v2; %s not delegated to the tasks in %s (its cgroup.subtree_control: %q)", strings.Join(missing, ", "), dir, have),
					"enable them from the root down: echo '+"+strings.Join(missing, " +")+"' into the cgroup.subtree_control of "+root+" and of each cgroup down to "+dir+" (the Nomad client does so at start where it may write them; systemd: Delegate=yes for the Nomad unit)")
				return
			}
		}
		detail := "v2: " + have
		switch {
		case len(partitions) > 0:
			detail += "; enabled for tasks in " + parent + "/{" + strings.Join(partitions, ",") + "}"
		default:
			if missing, have, ok := missingFrom(filepath.Join(parent, "cgroup.controllers")); ok && len(missing) > 0 {
				r.add("cgroups", Error, fmt.Sprintf("v2; %s not delegated to %s (its cgroup.controllers: %q)", strings.Join(missing, ", "), parent, have),
					"enable them in the cgroup.subtree_control of "+filepath.Dir(parent)+" and of each cgroup above it (systemd: Delegate=yes for the Nomad unit)")
				return
			} else if !ok {
				detail += "; " + parent + " not made yet (the Nomad client makes it at start)"
			}
		}
		r.add("cgroups", OK, detail, "")
		return
	}
	var missing []string
	for _, c := range append(need, "freezer") {
		if _, err := os.Stat(filepath.Join(root, c)); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		r.add("cgroups", Error, "v1; missing controllers: "+strings.Join(missing, ", "), "mount the missing cgroup v1 controllers, or boot with the unified hierarchy")
		return
	}
	r.add("cgroups", OK, "v1 (hybrid or legacy): memory, cpu, cpuset, freezer, pids", "")
}

// Attributes turns the report into fingerprint attributes and, when a check
// is an error, the health description naming the failures.
func (r *Report) Attributes() (map[string]string, string) {
	attrs := map[string]string{}
	for _, c := range r.Checks {
		attrs["preflight."+c.Name] = string(c.Result) + ": " + c.Detail
	}
	var failed []string
	for _, c := range r.Failed() {
		failed = append(failed, c.Name+" ("+c.Detail+")")
	}
	sort.Strings(failed)
	if len(failed) == 0 {
		return attrs, ""
	}
	return attrs, "preflight failed: " + strings.Join(failed, "; ")
}
