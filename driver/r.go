package driver

import (
	"fmt"
	"path/filepath"
	"strings"

	pstructs "github.com/hashicorp/nomad/plugins/shared/structs"

	"github.com/bwrap-r/bwrap-r/bwrap"
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
func (d *Driver) applyR(spec *bwrap.Spec, tc *TaskConfig, conf Config) (string, error) {
	if tc.RVersion == "" && !rCommands[tc.Command] {
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
		spec.Mounts = append(spec.Mounts, bwrap.Mount{Kind: bwrap.ROBind, Source: in.Root, Dest: in.Root})
	}
	spec.Env["PATH"] = in.Bin + ":" + spec.Env["PATH"]
	spec.Env["R_HOME"] = in.Home
	if rCommands[tc.Command] {
		spec.Command = filepath.Join(in.Bin, tc.Command)
	}
	return why, nil
}

// rAttributes are the fingerprint's R attributes: every version, the highest
// of each major.minor, the default, and the channels.
func rAttributes(cat *rversion.Catalog) (map[string]*pstructs.Attribute, string) {
	attrs := map[string]*pstructs.Attribute{}
	var versions []string
	for _, in := range cat.Versions {
		versions = append(versions, in.Version)
		attrs["driver.bwrap-r.r.version."+in.Version] = pstructs.NewStringAttribute(in.Root)
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
