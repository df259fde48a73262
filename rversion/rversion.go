// Package rversion finds the R installations of a node in rig's layout
// (/opt/R/<x.y.z>/bin/R) and chooses one for a requested version.
package rversion

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Install is one R installation.
type Install struct {
	// Version is "4.4.2", or the channel name for rig's devel and next.
	Version string
	// Root is the installation's top directory (/opt/R/4.4.2); for an R found
	// on PATH outside rig's layout it is "" (it lies in the sandbox's /usr).
	Root string
	// Bin holds the R and Rscript of this installation.
	Bin string
	// Home is R_HOME.
	Home string
}

// Channels are rig's named, unnumbered installs.
var Channels = []string{"devel", "next"}

// Aliases are rig's names that stand for a numbered install, resolved
// through its /usr/local/bin/R-<alias> links.
var Aliases = []string{"release", "oldrel"}

var (
	installName = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)
	requestForm = regexp.MustCompile(`^[0-9]+(\.[0-9]+){0,2}$`)
)

// Catalog is what a node has.
type Catalog struct {
	// Root is the rig root it was read from.
	Root string
	// Versions are the numbered installs, oldest first (compared as numbers).
	Versions []Install
	// ChannelInstalls are devel and next, when present.
	ChannelInstalls map[string]Install
	// AliasVersions maps release/oldrel to a version in Versions.
	AliasVersions map[string]string
	// Default is the R that serves tasks naming no version (nil: none).
	Default *Install
}

// Discover reads rig's layout under root, rig's alias links in linkDir
// (/usr/local/bin), and the default R (a path to an R binary; "" looks for R
// on PATH). A missing root is not an error: the node has no rig installs.
func Discover(root, linkDir, defaultR string) (*Catalog, error) {
	c := &Catalog{Root: root, ChannelInstalls: map[string]Install{}, AliasVersions: map[string]string{}}
	entries, err := os.ReadDir(root)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading R root %s: %w", root, err)
	}
	for _, e := range entries {
		name := e.Name()
		// rig's `current` is a symlink to the default, not a version; only
		// real directories are installs.
		if !e.IsDir() || e.Type()&os.ModeSymlink != 0 {
			continue
		}
		dir := filepath.Join(root, name)
		if !isExecutable(filepath.Join(dir, "bin", "R")) {
			continue
		}
		in := Install{Version: name, Root: dir, Bin: filepath.Join(dir, "bin"), Home: filepath.Join(dir, "lib", "R")}
		switch {
		case installName.MatchString(name):
			c.Versions = append(c.Versions, in)
		case slices.Contains(Channels, name):
			c.ChannelInstalls[name] = in
		}
	}
	sort.Slice(c.Versions, func(i, j int) bool { return Compare(c.Versions[i].Version, c.Versions[j].Version) < 0 })

	if linkDir != "" {
		for _, alias := range Aliases {
			target, err := filepath.EvalSymlinks(filepath.Join(linkDir, "R-"+alias))
			if err != nil {
				continue
			}
			// target is <root>/<version>/bin/R (rig may itself link through
			// another name; EvalSymlinks resolved that).
			rel, err := filepath.Rel(mustEval(root), target)
			if err != nil {
				continue
			}
			v := strings.SplitN(rel, string(filepath.Separator), 2)[0]
			if _, ok := c.find(v); ok {
				c.AliasVersions[alias] = v
			}
		}
	}

	c.Default, err = defaultInstall(defaultR)
	if err != nil {
		return nil, err
	}
	// The distribution's R (Debian's /usr/bin/R) is a version like any other:
	// listed, and what a request for its version resolves to.
	if d := c.Default; d != nil && installName.MatchString(d.Version) {
		if _, ok := c.find(d.Version); !ok {
			c.Versions = append(c.Versions, *d)
			sort.Slice(c.Versions, func(i, j int) bool { return Compare(c.Versions[i].Version, c.Versions[j].Version) < 0 })
		}
	}
	return c, nil
}

// Where is where an install lives: its root when it is bound whole, else
// its R_HOME (an R under /usr, which every sandbox has).
func (in Install) Where() string {
	if in.Root != "" {
		return in.Root
	}
	return in.Home
}

func mustEval(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// defaultInstall describes the default R binary, or returns nil when there is
// none ("" and no R on PATH).
func defaultInstall(path string) (*Install, error) {
	configured := path != ""
	if !configured {
		p, err := exec.LookPath("R")
		if err != nil {
			return nil, nil
		}
		path = p
	}
	if !isExecutable(path) {
		if configured {
			return nil, fmt.Errorf("default_r %s is not an executable file", path)
		}
		return nil, nil
	}
	// rig links /usr/local/bin/R to /opt/R/current/bin/R: follow to the install.
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	v, home, err := probe(path)
	if err != nil {
		return nil, fmt.Errorf("default R %s: %w", path, err)
	}
	in := &Install{Version: v, Bin: filepath.Dir(path), Home: home}
	// An R outside /usr must be bound into the sandbox: its rig-style root
	// (<root>/bin/R), whole, and never a top-level directory such as / or /opt.
	if !strings.HasPrefix(path, "/usr/") {
		in.Root = filepath.Dir(in.Bin)
		if filepath.Base(in.Bin) != "bin" || strings.Count(in.Root, "/") < 2 {
			return nil, fmt.Errorf("default R %s: want an R under /usr or at <install>/bin/R", path)
		}
	}
	return in, nil
}

var versionLine = regexp.MustCompile(`R version ([0-9]+\.[0-9]+\.[0-9]+)`)

type probed struct {
	mod           time.Time
	version, home string
}

// probeCache keeps probe results per binary until it changes: the
// fingerprint rediscovers every 30 s and need not start R each time.
var probeCache sync.Map

// probe runs `R --version` and `R RHOME` (R's shell front end answers both
// without starting the interpreter's session).
func probe(r string) (version, home string, err error) {
	fi, err := os.Stat(r)
	if err != nil {
		return "", "", err
	}
	if p, ok := probeCache.Load(r); ok && p.(probed).mod.Equal(fi.ModTime()) {
		return p.(probed).version, p.(probed).home, nil
	}
	version, home, err = runProbe(r)
	if err == nil {
		probeCache.Store(r, probed{fi.ModTime(), version, home})
	}
	return version, home, err
}

func runProbe(r string) (version, home string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, r, "--version").Output()
	if err != nil {
		return "", "", fmt.Errorf("%s --version: %v", r, err)
	}
	m := versionLine.FindSubmatch(out)
	if m == nil {
		return "", "", fmt.Errorf("%s --version printed no version", r)
	}
	out, err = exec.CommandContext(ctx, r, "RHOME").Output()
	if err != nil {
		return "", "", fmt.Errorf("%s RHOME: %v", r, err)
	}
	return string(m[1]), strings.TrimSpace(string(out)), nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

func (c *Catalog) find(version string) (Install, bool) {
	for _, in := range c.Versions {
		if in.Version == version {
			return in, true
		}
	}
	return Install{}, false
}

// Installed lists what the node has, for error messages and the fingerprint:
// numbered versions in order, then channels.
func (c *Catalog) Installed() []string {
	var out []string
	for _, in := range c.Versions {
		out = append(out, in.Version)
	}
	for _, ch := range Channels {
		if _, ok := c.ChannelInstalls[ch]; ok {
			out = append(out, ch)
		}
	}
	return out
}

// Match is how closely a resolved version must fit the request.
type Match string

const (
	// Exact: only the very version asked for.
	Exact Match = "exact"
	// Minor: exact, else the highest patch of the requested major.minor.
	Minor Match = "minor"
	// Nearest: as Minor, else the closest installed version.
	Nearest Match = "nearest"
)

// ParseMatch validates a match mode ("" gives def).
func ParseMatch(s string, def Match) (Match, error) {
	switch Match(s) {
	case "":
		return def, nil
	case Exact, Minor, Nearest:
		return Match(s), nil
	}
	return "", fmt.Errorf("r_version_match %q: want exact, minor or nearest", s)
}

// ValidRequest reports whether s may be used as a requested version: digits
// and dots (up to x.y.z), or one of rig's aliases and channels. Anything else
// never reaches a path.
func ValidRequest(s string) error {
	if requestForm.MatchString(s) || slices.Contains(Aliases, s) || slices.Contains(Channels, s) {
		return nil
	}
	return fmt.Errorf("invalid r_version %q: want a version like 4.4 or 4.4.1, or one of %s",
		s, strings.Join(append(append([]string{}, Aliases...), Channels...), ", "))
}

// Resolve chooses the install for a requested version. It returns the install
// and a sentence saying why, or an error listing what is installed.
func (c *Catalog) Resolve(requested string, match Match) (Install, string, error) {
	if requested == "" {
		if c.Default == nil {
			return Install{}, "", fmt.Errorf("no R found: no default R and nothing under %s", c.Root)
		}
		return *c.Default, fmt.Sprintf("no R version requested: default R %s", c.Default.Version), nil
	}
	if err := ValidRequest(requested); err != nil {
		return Install{}, "", err
	}
	if slices.Contains(Channels, requested) {
		if in, ok := c.ChannelInstalls[requested]; ok {
			return in, fmt.Sprintf("R %s requested: %s (channel)", requested, in.Root), nil
		}
		return Install{}, "", c.missing(requested, match)
	}
	if slices.Contains(Aliases, requested) {
		if v, ok := c.AliasVersions[requested]; ok {
			in, _ := c.find(v)
			return in, fmt.Sprintf("R %s requested: %s (rig's %s)", requested, in.Root, requested), nil
		}
		return Install{}, "", c.missing(requested, match)
	}

	want := parse(requested)
	if len(want) == 3 {
		if in, ok := c.find(requested); ok {
			return in, fmt.Sprintf("R %s requested: %s (exact match)", requested, in.Where()), nil
		}
	}
	if match == Exact {
		return Install{}, "", c.missing(requested, match)
	}
	// The highest install sharing the requested components (major.minor for
	// "4.4" or "4.4.1"; major for "4").
	prefix := want
	if len(prefix) > 2 {
		prefix = prefix[:2]
	}
	for i := len(c.Versions) - 1; i >= 0; i-- {
		if hasPrefix(parse(c.Versions[i].Version), prefix) {
			in := c.Versions[i]
			return in, fmt.Sprintf("R %s requested: %s (minor match)", requested, in.Where()), nil
		}
	}
	if match == Nearest && len(c.Versions) > 0 {
		in := c.nearest(want)
		return in, fmt.Sprintf("R %s requested: %s (nearest match)", requested, in.Where()), nil
	}
	return Install{}, "", c.missing(requested, match)
}

func (c *Catalog) missing(requested string, match Match) error {
	have := c.Installed()
	list := "none"
	if len(have) > 0 {
		list = strings.Join(have, ", ")
	}
	return fmt.Errorf("R %s (%s match) is not installed on this node; installed under %s: %s",
		requested, match, c.Root, list)
}

// nearest is the closer of the installs just below and just above want in
// version order; closeness counts minor releases within a major, and a tie
// goes to the newer. A request for 4.6 on a node with 4.5.x gets the newest
// 4.5.x; a request for 3.6 gets the oldest 4.x.
func (c *Catalog) nearest(want []int) Install {
	for len(want) < 3 {
		want = append(want, 0)
	}
	w := join(want)
	below, above := -1, -1
	for i, in := range c.Versions {
		switch Compare(in.Version, w) {
		case -1:
			below = i
		case 1:
			if above < 0 {
				above = i
			}
		}
	}
	switch {
	case below < 0:
		return c.Versions[above]
	case above < 0:
		return c.Versions[below]
	}
	if distance(parse(c.Versions[below].Version), want) < distance(parse(c.Versions[above].Version), want) {
		return c.Versions[below]
	}
	return c.Versions[above]
}

func join(v []int) string {
	parts := make([]string, len(v))
	for i, n := range v {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ".")
}

// distance in minor releases; another major counts as far away.
func distance(a, b []int) int {
	if a[0] != b[0] {
		return 1000 * abs(a[0]-b[0])
	}
	return abs(a[1] - b[1])
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

func parse(v string) []int {
	var out []int
	for _, p := range strings.Split(v, ".") {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil
		}
		out = append(out, n)
	}
	return out
}

func hasPrefix(v, prefix []int) bool {
	if len(v) < len(prefix) {
		return false
	}
	for i := range prefix {
		if v[i] != prefix[i] {
			return false
		}
	}
	return true
}

// Compare compares two dotted versions as numbers: -1, 0 or 1.
func Compare(a, b string) int {
	pa, pb := parse(a), parse(b)
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y int
		if i < len(pa) {
			x = pa[i]
		}
		if i < len(pb) {
			y = pb[i]
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// MajorMinor returns "4.4" for "4.4.2".
func MajorMinor(v string) string {
	p := strings.SplitN(v, ".", 3)
	if len(p) < 2 {
		return v
	}
	return p[0] + "." + p[1]
}
