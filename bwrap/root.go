package bwrap

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
)

// launchRoot prepares the root the launcher moves bwrap into (shim_root in
// shim.c): bwrap then sees a mount table of a few entries, not the host's.
// It returns the launcher's flags for it, mounts with each bind by path
// given its source with links resolved (in that root only the resolved path
// exists: the launcher places each mount by its name), and bwrap's own
// path, resolved too. What bwrap itself needs of the host is added: its
// binary, the loader's links (/lib64 and the rest of merged /usr) and the
// loader's cache.
func launchRoot(mounts []Mount, bwrap string) (_ []Mount, args []string, bwrapPath string) {
	mounts = slices.Clone(mounts)
	var binds []string
	add := func(p string) string {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		binds = append(binds, p)
		return p
	}
	for i, m := range mounts {
		if (m.Kind == Bind || m.Kind == ROBind || m.Kind == DevBind) && !m.byDescriptor() && filepath.IsAbs(m.Source) {
			mounts[i].Source = add(m.Source)
		}
	}
	bwrapPath = add(bwrap)
	// The loader and bwrap's libraries (the sandbox's own /usr is in the
	// assembled root, not here).
	add("/usr")
	add("/etc/ld.so.cache")
	var links []string
	for _, l := range hostUsrLinks() {
		if l.target != "" {
			links = append(links, "-root-link", l.target, l.path)
		} else {
			add(l.path)
		}
	}
	// By name, so that a path comes after any it lies below: the launcher
	// skips those, bound already with the one above.
	slices.Sort(binds)
	for _, p := range slices.Compact(binds) {
		args = append(args, "-root-bind", p)
	}
	return mounts, append(args, links...), bwrapPath
}

// The launchers' template mount namespace (shim_template in shim.c): one
// per process, made at the first launch and kept open for the others.
var template struct {
	sync.Mutex
	ns *os.File
}

// templateNS returns the template mount namespace, making it with the shim
// (shim is Launch.Shim) the first time; dir is any directory.
func templateNS(shim []string, dir string) (*os.File, error) {
	template.Lock()
	defer template.Unlock()
	if template.ns != nil {
		return template.ns, nil
	}
	cmd := exec.Command(shim[0], append(slices.Clone(shim[1:]), "-template", dir)...)
	cmd.Env = []string{}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bwrap: the launchers' template mount namespace: %w", err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	var ns *os.File
	if line == "ready\n" {
		ns, err = os.Open(fmt.Sprintf("/proc/%d/ns/mnt", cmd.Process.Pid))
	}
	stdin.Close()
	werr := cmd.Wait()
	switch {
	case line != "ready\n":
		return nil, fmt.Errorf("bwrap: the launchers' template mount namespace: %v: %s", werr, bytes.TrimSpace(stderr.Bytes()))
	case err != nil:
		return nil, fmt.Errorf("bwrap: the launchers' template mount namespace: %w", err)
	}
	template.ns = ns
	return ns, nil
}
