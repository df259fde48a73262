package driver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/nomad/drivers/shared/hostnames"
	"github.com/hashicorp/nomad/plugins/drivers"
	"golang.org/x/sys/unix"

	"github.com/bwrap-r/bwrap-r/bwrap"
)

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Where the task's directories appear inside the sandbox (Nomad's image
// isolation sets NOMAD_TASK_DIR and friends to these).
const (
	insideLocal   = "/local"
	insideSecrets = "/secrets"
	insideAlloc   = "/alloc"
	allocLogsDir  = "logs"
)

// resolveUser turns the task's user into host IDs, as the plugin's identity
// policy allows (Config.taskIdentity).
func resolveUser(name string, conf Config) (uid, gid uint32, err error) {
	return conf.taskIdentity(name)
}

// buildSpec turns a task into a sandbox spec. rChoice says which R the task
// got and why ("" when it uses none).
func (d *Driver) buildSpec(cfg *drivers.TaskConfig, tc *TaskConfig, conf Config, uid, gid uint32) (spec *bwrap.Spec, rChoice string, err error) {
	if strings.TrimSpace(tc.Command) == "" {
		return nil, "", errors.New("config: command must not be empty")
	}
	td := cfg.TaskDir()
	mounts := bwrap.SystemMounts(conf.TmpSizeMB << 20)
	if isDynamicUser(cfg.User) {
		// Its name, in the sandbox's /etc/passwd and /etc/group.
		if mounts, err = bwrap.NameUser(mounts, cfg.User, uid, gid, insideLocal); err != nil {
			return nil, "", err
		}
	}
	// The task's dirs are opened beneath the allocation's dir without
	// following links and bound by descriptor: the client's data_dir may be
	// closed to task UIDs (Nomad makes it 0700), and a link swapped in after
	// the checks must not redirect a bind.
	alloc := cfg.AllocDir
	mounts = append(mounts,
		bwrap.Mount{Kind: bwrap.Bind, Source: td.LocalDir, Dest: insideLocal, Beneath: alloc, Owner: &uid, MustBeDir: true, FollowLinks: true},
		// Read-only: the client writes tokens there as root (identity,
		// Vault, Consul) with writes that follow links, so the task must
		// not be able to create, replace or link any name in it.
		bwrap.Mount{Kind: bwrap.ROBind, Source: td.SecretsDir, Dest: insideSecrets, Beneath: alloc, Owner: &uid, MustBeDir: true},
		bwrap.Mount{Kind: bwrap.Bind, Source: td.SharedAllocDir, Dest: insideAlloc, Beneath: alloc, MustBeDir: true, FollowLinks: true},
	)
	// The allocation's logs/ is read-only: logmon and the plugin, as root,
	// open and write paths there (the FIFOs, the rotated files), so a link a
	// task planted there would make them open a host file of its choosing.
	if logs := filepath.Join(td.SharedAllocDir, allocLogsDir); isDir(logs) {
		mounts = append(mounts, bwrap.Mount{Kind: bwrap.ROBind, Source: logs, Dest: insideAlloc + "/" + allocLogsDir, Beneath: alloc, MustBeDir: true, FollowLinks: true})
	}

	env := make(map[string]string, len(cfg.Env)+4)
	for k, v := range cfg.Env {
		env[k] = v
	}
	for k, v := range map[string]string{
		"PATH":   defaultPath,
		"HOME":   insideLocal,
		"TMPDIR": "/tmp",
		"LANG":   "C.UTF-8",
		// A dynamic workload user has no home: R's user library goes here.
		"R_LIBS_USER": insideLocal + "/R/library",
	} {
		if _, ok := env[k]; !ok {
			env[k] = v
		}
	}

	dir, err := workDir(tc.WorkDir)
	if err != nil {
		return nil, "", err
	}
	spec = &bwrap.Spec{
		Command:  inTaskDir(tc.Command),
		Args:     tc.Args,
		Env:      env,
		Mounts:   mounts,
		UID:      uid,
		GID:      gid,
		Hostname: hostname(cfg.Name),
		Dir:      dir,
	}
	if err := applyNetwork(spec, cfg, tc); err != nil {
		return nil, "", err
	}
	if rChoice, err = d.applyR(spec, cfg, tc, conf, uid, gid); err != nil {
		return nil, "", err
	}
	// Last: a volume at /alloc/data/x must be bound over /alloc's bind.
	if err := applyMounts(spec, cfg, tc, conf); err != nil {
		return nil, "", err
	}
	if err := lookCommand(spec, env["PATH"], cfg.AllocDir); err != nil {
		return nil, "", err
	}
	return spec, rChoice, nil
}

// inTaskDir resolves a relative command path as Nomad's drivers do, against
// the task dir: the sandbox shows local/, alloc/ and secrets/ at /local,
// /alloc and /secrets, so "local/run.sh" is /local/run.sh. A bare name is
// looked up on PATH.
func inTaskDir(command string) string {
	if !strings.Contains(command, "/") || filepath.IsAbs(command) {
		return command
	}
	return filepath.Join("/", command)
}

// workDir checks the task config's work_dir: absolute in the sandbox, or
// relative to the task dir; /local when unset.
func workDir(dir string) (string, error) {
	if dir == "" {
		return insideLocal, nil
	}
	for _, part := range strings.Split(dir, "/") {
		if part == ".." {
			return "", fmt.Errorf("config: work_dir %q: no \"..\" please", dir)
		}
	}
	return filepath.Join("/", dir), nil
}

// applyNetwork sets the sandbox's network: its own empty namespace for
// network = "none", else whatever the launcher joins (the host's, or the
// allocation's for Nomad's bridge and none modes), with the resolv.conf and
// hosts Nomad prepared for the group's network.
func applyNetwork(spec *bwrap.Spec, cfg *drivers.TaskConfig, tc *TaskConfig) error {
	switch tc.Network {
	case "":
	case "none":
		spec.Network = bwrap.NetworkNone
	default:
		return fmt.Errorf("config: network %q: the only value is \"none\"", tc.Network)
	}
	if dns := cfg.DNS; dns != nil && len(dns.Servers)+len(dns.Searches)+len(dns.Options) > 0 {
		path, err := writeResolvConf(cfg.TaskDir().Dir, dns)
		if err != nil {
			return fmt.Errorf("network.dns: %w", err)
		}
		spec.Mounts = append(spec.Mounts, bwrap.Mount{Kind: bwrap.ROBind, Source: path, Dest: "/etc/resolv.conf", Beneath: cfg.AllocDir})
	}
	m, err := hostnames.GenerateEtcHostsMount(cfg.AllocDir, cfg.NetworkIsolation, nil)
	if err != nil {
		return fmt.Errorf("/etc/hosts: %w", err)
	}
	if m != nil {
		spec.Mounts = append(spec.Mounts, bwrap.Mount{Kind: bwrap.ROBind, Source: m.HostPath, Dest: "/etc/hosts", Beneath: cfg.AllocDir})
	}
	return nil
}

// writeResolvConf writes the job's network.dns as resolv.conf in the task's
// dir (which the sandbox does not see, so the task cannot plant a link there).
func writeResolvConf(taskDir string, dns *drivers.DNSConfig) (string, error) {
	var b strings.Builder
	b.WriteString("# written by bwrap-r from the job's network.dns\n")
	for _, s := range dns.Servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(dns.Searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(dns.Searches, " "))
	}
	if len(dns.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(dns.Options, " "))
	}
	path := filepath.Join(taskDir, "resolv.conf")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return "", err
	}
	defer f.Close()
	_, err = f.WriteString(b.String())
	return path, err
}

// netNS is the namespace the launcher joins ("" for the host's).
func netNS(cfg *drivers.TaskConfig, spec *bwrap.Spec) string {
	if spec.Network == bwrap.NetworkNone || cfg.NetworkIsolation == nil {
		return ""
	}
	return cfg.NetworkIsolation.Path
}

// hostname makes a valid UTS hostname from a task name.
func hostname(name string) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
		if b.Len() == 63 {
			return b.String()
		}
	}
	if b.Len() == 0 {
		return "task"
	}
	return b.String()
}

// lookCommand finds the command as the sandbox will, through the spec's binds,
// so that a missing command fails the start with its name instead of a bare
// bwrap error in the task's log.
//
// Below the allocation dir (the task's own files) nothing is followed: a
// link there is the task's, and root must not resolve it on the host; such a
// command is left to the sandbox to find.
func lookCommand(spec *bwrap.Spec, path, allocDir string) error {
	cmd := spec.Command
	var candidates []string
	if strings.Contains(cmd, "/") {
		candidates = []string{inTaskDir(cmd)}
	} else {
		for _, dir := range filepath.SplitList(path) {
			if filepath.IsAbs(dir) {
				candidates = append(candidates, filepath.Join(dir, cmd))
			}
		}
	}
	for _, c := range candidates {
		host, ok := bwrap.HostPath(spec.Mounts, c)
		if !ok {
			continue
		}
		if allocDir != "" && bwrap.Within(host, allocDir) {
			if taskCommandThere(allocDir, host) {
				return nil
			}
			continue
		}
		if fi, err := os.Stat(host); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return nil
		}
	}
	if strings.Contains(spec.Command, "/") {
		return fmt.Errorf("command %q not found in the sandbox (or not executable)", spec.Command)
	}
	return fmt.Errorf("command %q not found in the sandbox's PATH (%s)", spec.Command, path)
}

// taskCommandThere reports whether host, below the allocation dir, is an
// executable file or a link (the task's: the sandbox resolves it), looking
// without following any link.
func taskCommandThere(allocDir, host string) bool {
	fd, err := bwrap.OpenBeneath(allocDir, host, unix.O_NOFOLLOW)
	if errors.Is(err, unix.ELOOP) {
		return true
	}
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return false
	}
	mode := st.Mode & unix.S_IFMT
	return mode == unix.S_IFLNK || mode == unix.S_IFREG && st.Mode&0o111 != 0
}

// prepareTaskDirs gives the task its own local/ and secrets/: owned by its
// UID, closed to every other UID. As root, by descriptor: a link in their
// place is refused, never followed.
func prepareTaskDirs(cfg *drivers.TaskConfig, uid, gid uint32) error {
	td := cfg.TaskDir()
	for _, dir := range []string{td.LocalDir, td.SecretsDir} {
		if err := ownDirBeneath(cfg.AllocDir, dir, uid, gid, 0o700); err != nil {
			return fmt.Errorf("task dir %s: %w", dir, err)
		}
	}
	return nil
}

// openLogFIFO opens one of Nomad's log FIFOs for writing. The FIFOs lie in the
// allocation's logs/ dir, which tasks can write: a symlink planted there must
// not redirect the plugin's (root's) open to a host file, so no symlink is
// followed below the allocation dir, and only a FIFO is accepted.
func openLogFIFO(allocDir, path string) (*os.File, error) {
	// "": no log FIFOs (Nomad's tests); /dev/null: the job's logs are
	// disabled, which is how Nomad's client says so.
	if path == "" || path == os.DevNull {
		return os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	}
	dirfd := unix.AT_FDCWD
	rel := path
	resolve := uint64(unix.RESOLVE_NO_SYMLINKS)
	if allocDir != "" {
		if r, err := filepath.Rel(allocDir, path); err == nil && !strings.HasPrefix(r, "..") {
			fd, err := unix.Open(allocDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return nil, fmt.Errorf("alloc dir: %w", err)
			}
			defer unix.Close(fd)
			dirfd, rel = fd, r
			resolve |= unix.RESOLVE_BENEATH
		}
	}
	fd, err := unix.Openat2(dirfd, rel, &unix.OpenHow{
		Flags:   unix.O_WRONLY | unix.O_CLOEXEC | unix.O_NOCTTY,
		Resolve: resolve,
	})
	if err != nil {
		return nil, fmt.Errorf("opening log fifo %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		unix.Close(fd)
		return nil, fmt.Errorf("log path %s is not a FIFO", path)
	}
	return os.NewFile(uintptr(fd), path), nil
}
