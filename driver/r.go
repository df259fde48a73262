package driver

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/hashicorp/nomad/plugins/drivers"
	pstructs "github.com/hashicorp/nomad/plugins/shared/structs"
	"golang.org/x/sys/unix"

	"github.com/bwrap-r/bwrap-r/bwrap"
	"github.com/bwrap-r/bwrap-r/rlib"
	"github.com/bwrap-r/bwrap-r/rversion"
)

// rCommands are the commands that run the task's chosen R.
var rCommands = map[string]bool{"R": true, "Rscript": true}

// catalog reads the node's R installs as configured.
func (d *Driver) catalog(conf Config) (*rversion.Catalog, error) {
	return rversion.Discover(conf.RRoot, d.rLinkDir, conf.DefaultR)
}

// applyR chooses the task's R and puts it into the spec: its tree bound
// read-only at its own path, its bin/ first on PATH (so system("Rscript")
// inside an app runs the same R), R_HOME, and R/Rscript resolved to it. It
// returns the sentence for the task event, or "" when the task uses no R.
func (d *Driver) applyR(spec *bwrap.Spec, cfg *drivers.TaskConfig, tc *TaskConfig, conf Config, uid, gid uint32) (string, error) {
	if tc.RVersion == "" && !rCommands[tc.Command] && len(tc.RLibs) == 0 && tc.RLibWritable == "" && !tc.RCacheWritable {
		return "", nil
	}
	match, err := rversion.ParseMatch(tc.RVersionMatch, rversion.Match(conf.RVersionMatch))
	if err != nil {
		return "", err
	}
	cat, err := d.catalog(conf)
	if err != nil {
		return "", err
	}
	in, why, err := cat.Resolve(tc.RVersion, match)
	if err != nil {
		return "", err
	}
	if in.Root != "" {
		// An install under r_root is bound by descriptor, opened beneath it.
		m := bwrap.Mount{Kind: bwrap.ROBind, Source: in.Root, Dest: in.Root, MustBeDir: true}
		if bwrap.Within(in.Root, conf.RRoot) {
			m.Beneath = conf.RRoot
		}
		spec.Mounts = append(spec.Mounts, m)
	}
	spec.Env["PATH"] = in.Bin + ":" + spec.Env["PATH"]
	spec.Env["R_HOME"] = in.Home
	if rCommands[tc.Command] {
		spec.Command = filepath.Join(in.Bin, tc.Command)
	}
	libs, err := applyRLibs(spec, cfg, tc, conf, rversion.MajorMinor(in.Version), uid, gid)
	if err != nil {
		return "", err
	}
	if libs != "" {
		why += "; R libraries: " + libs
	}
	cache, err := applyRCache(spec, tc, conf, rversion.MajorMinor(in.Version))
	if err != nil {
		return "", err
	}
	if cache != "" {
		why += "; R package cache: " + cache
	}
	return why, nil
}

// rCacheInside is where the package cache appears in a sandbox.
const rCacheInside = "/r-cache"

// rPlatform is R's name for this node's platform: packages built for one do
// not load on another, so the cache keeps them apart.
func rPlatform() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64-pc-linux-gnu"
	case "arm64":
		return "aarch64-unknown-linux-gnu"
	default:
		return runtime.GOARCH + "-linux-gnu"
	}
}

// applyRCache binds the node's package cache for the task's R x.y and
// platform at /r-cache (RENV_PATHS_CACHE and BWRAP_R_CACHE point there):
// read-only unless the task asked to write it. The directory is sticky and
// open to all task UIDs, so a restore adds entries but cannot replace or
// remove another's.
func applyRCache(spec *bwrap.Spec, tc *TaskConfig, conf Config, minor string) (string, error) {
	if conf.RCacheDir == "" {
		if tc.RCacheWritable {
			return "", errors.New("r_cache_writable: the plugin has no r_cache_dir")
		}
		return "", nil
	}
	if minor == "" {
		return "", nil
	}
	dir, err := rlib.MakeCacheDir(conf.RCacheDir, "R-"+minor, rPlatform())
	if err != nil {
		return "", fmt.Errorf("r_cache_dir: %w", err)
	}
	kind, shown := bwrap.ROBind, rCacheInside+" (read-only)"
	if tc.RCacheWritable {
		kind, shown = bwrap.Bind, rCacheInside+" (writable)"
	}
	spec.Mounts = append(spec.Mounts, bwrap.Mount{Kind: kind, Source: dir, Dest: rCacheInside, Beneath: conf.RCacheDir, MustBeDir: true})
	for _, k := range []string{"BWRAP_R_CACHE", "RENV_PATHS_CACHE"} {
		if _, ok := spec.Env[k]; !ok {
			spec.Env[k] = rCacheInside
		}
	}
	return shown, nil
}

// applyRLibs binds the task's libraries and puts them on R_LIBS in order,
// the writable one first, all ahead of the R install's own library.
func applyRLibs(spec *bwrap.Spec, cfg *drivers.TaskConfig, tc *TaskConfig, conf Config, minor string, uid, gid uint32) (string, error) {
	var paths, shown []string
	if w := tc.RLibWritable; w != "" {
		w = rlib.Expand(w, minor)
		if err := rlib.CheckWritable(w); err != nil {
			return "", err
		}
		base, rel := cfg.TaskDir().SharedAllocDir, strings.TrimPrefix(w, insideAlloc+"/")
		if strings.HasPrefix(w, insideLocal+"/") {
			base, rel = cfg.TaskDir().LocalDir, strings.TrimPrefix(w, insideLocal+"/")
		}
		if err := rlib.MakeDir(base, rel, int(uid), int(gid)); err != nil {
			return "", fmt.Errorf("r_lib_writable %s: %w", w, err)
		}
		paths = append(paths, w)
		shown = append(shown, w+" (writable)")
	}
	for _, l := range tc.RLibs {
		m, err := rLibBind(rlib.Expand(l, minor), conf, uid, gid)
		if err != nil {
			return "", err
		}
		spec.Mounts = append(spec.Mounts, m)
		paths = append(paths, m.Dest)
		shown = append(shown, m.Dest)
	}
	if len(paths) == 0 {
		return "", nil
	}
	spec.Env["R_LIBS"] = strings.Join(paths, ":")
	return strings.Join(shown, ", "), nil
}

// rLibBind checks an r_libs entry ({minor} filled in) as a task config
// mount is checked: below r_library_roots once links are resolved, ".."
// refused, reachable by the task's UID from its root, bound by descriptor
// beneath that root at its own path, which must not lie in /proc or /dev.
// And since its packages are code that every task using it runs, no task
// UID may be able to change it (tasksCannotChange).
func rLibBind(inside string, conf Config, uid, gid uint32) (bwrap.Mount, error) {
	what := fmt.Sprintf("r_libs %s", inside)
	real, root, err := underRoot(inside, conf.RLibraryRoots, "r_library_roots")
	if err != nil {
		return bwrap.Mount{}, fmt.Errorf("%s: %w", what, err)
	}
	dest, err := mountDest(inside)
	if err != nil {
		return bwrap.Mount{}, fmt.Errorf("%s: %w", what, err)
	}
	if err := reachable(root, real, uid, gid); err != nil {
		return bwrap.Mount{}, fmt.Errorf("%s: %w", what, err)
	}
	if err := conf.tasksCannotChange(root, real, gid); err != nil {
		return bwrap.Mount{}, fmt.Errorf("%s: %w", what, err)
	}
	m := bwrap.Mount{Kind: bwrap.ROBind, Source: real, Dest: dest, Beneath: root, MustBeDir: true}
	return m, checkSource(namedBind{m, what})
}

// tasksCannotChange checks each directory from root down to dir (which lies
// in it) for a way a task could change what is there: owned by a UID a task
// may run as (an owner can chmod it, whatever its mode); writable by a group
// a task may have, or by every UID; an ACL that may grant writes. A sticky
// parent is safe from group and other writes (they can add names to it, not
// rename or remove the root's directory on the path); dir itself is not,
// since an added name is an added package. Every task UID counts, the task's
// own included: dynamic UIDs pass from job to job, and any job may ask for
// an allowed user.
func (c Config) tasksCannotChange(root, dir string, gid uint32) error {
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		return err
	}
	path := root
	parts := []string{}
	if rel != "." {
		parts = strings.Split(rel, "/")
	}
	for i := 0; i <= len(parts); i++ {
		if i > 0 {
			path = filepath.Join(path, parts[i-1])
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return fmt.Errorf("%s is %s, not a directory", path, fileKind(st.Mode))
		}
		// Group and other writes to a sticky parent add names to it; they
		// cannot rename or remove the directory on the path.
		shielded := st.Mode&unix.S_ISVTX != 0 && i < len(parts)
		groupWrite := st.Mode&0o020 != 0 && !shielded
		var why string
		switch {
		case c.mayBeTaskUID(st.Uid):
			why = fmt.Sprintf("owned by uid %d, which tasks may run as", st.Uid)
		case st.Mode&0o002 != 0 && !shielded:
			why = "writable by every uid"
		case groupWrite && hasACL(path):
			why = "writable through its ACL (its group bits are the ACL's mask)"
		case groupWrite && (st.Gid == gid || c.mayBeTaskGID(st.Gid)):
			why = fmt.Sprintf("writable by gid %d, which tasks may have", st.Gid)
		default:
			continue
		}
		return fmt.Errorf("%s is %s (mode %04o, owner %d:%d): a task could change the packages that every task using the library runs; make it the operator's, writable by no task", path, why, st.Mode&0o7777, st.Uid, st.Gid)
	}
	return nil
}

// mayBeTaskUID reports whether uid is one a task may run as
// (task_uid_range, allowed_uids, allowed_users).
func (c Config) mayBeTaskUID(uid uint32) bool {
	for _, r := range c.identityUIDs() {
		if uid >= r.Min && uid <= r.Max {
			return true
		}
	}
	return false
}

// mayBeTaskGID reports whether gid may be a task's group, as far as the
// plugin's config tells: an allowed user's, or a number a task UID may have
// (a dynamic workload user's GID is its UID, and host users mostly have a
// group of their own number).
func (c Config) mayBeTaskGID(gid uint32) bool {
	for _, u := range c.allowedUsers {
		if u.gid == gid {
			return true
		}
	}
	return c.mayBeTaskUID(gid)
}

// hasACL reports whether path has an access ACL beyond its mode bits.
func hasACL(path string) bool {
	n, err := unix.Lgetxattr(path, "system.posix_acl_access", nil)
	return err == nil && n > 0
}

// rAttributes are the fingerprint's R attributes: every version, the highest
// of each major.minor, the default, and the channels.
func rAttributes(cat *rversion.Catalog) (map[string]*pstructs.Attribute, string) {
	attrs := map[string]*pstructs.Attribute{}
	var versions []string
	for _, in := range cat.Versions {
		versions = append(versions, in.Version)
		attrs["driver.bwrap-r.r.version."+in.Version] = pstructs.NewStringAttribute(in.Where())
		// Versions are in order, so the last of a minor wins.
		attrs["driver.bwrap-r.r.minor."+rversion.MajorMinor(in.Version)] = pstructs.NewStringAttribute(in.Version)
	}
	attrs["driver.bwrap-r.r.versions"] = pstructs.NewStringAttribute(strings.Join(versions, ","))
	for ch, in := range cat.ChannelInstalls {
		attrs["driver.bwrap-r.r.channel."+ch] = pstructs.NewStringAttribute(in.Root)
	}
	for alias, v := range cat.AliasVersions {
		attrs["driver.bwrap-r.r.alias."+alias] = pstructs.NewStringAttribute(v)
	}
	if cat.Default != nil {
		attrs["driver.bwrap-r.r.default"] = pstructs.NewStringAttribute(cat.Default.Version)
	}
	if len(versions) == 0 && len(cat.ChannelInstalls) == 0 && cat.Default == nil {
		return attrs, fmt.Sprintf("no R found (nothing under %s, no R on PATH)", cat.Root)
	}
	return attrs, ""
}
