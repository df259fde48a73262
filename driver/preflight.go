package driver

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/nomad/plugins/drivers"
	pstructs "github.com/hashicorp/nomad/plugins/shared/structs"

	"github.com/bwrap-r/bwrap-r/egress"
	"github.com/bwrap-r/bwrap-r/preflight"
)

// preflightConfig is what the checks need from the plugin's config; self
// is the probe binary (the driver's selfBinary, read under its lock).
func (d *Driver) preflightConfig(c Config, bwrapPath, self string) preflight.Config {
	probeUID := uint32(c.taskUIDs[1])
	stage, _ := stateDirs(c.StateDir) // an error shows in task_start
	d.mu.RLock()
	allocRoot := d.allocRoot
	d.mu.RUnlock()
	if allocRoot == "" {
		allocRoot = c.allocRoot
	}
	pc := preflight.Config{
		StageDir:    stage,
		AllocRoot:   allocRoot,
		BwrapPath:   bwrapPath,
		Shim:        d.shim,
		ProbeBinary: self,
		UID:         probeUID,
		GID:         probeUID,
		StateDir:    c.StateDir,
		RRoot:       c.RRoot,
		RLinkDir:    d.rLinkDir,
		DefaultR:    c.DefaultR,
	}
	if c.Egress.Metadata != "" {
		pc.Targets = append(pc.Targets, preflight.Target{Name: "metadata", Address: c.Egress.Metadata})
	}
	warn := map[string]bool{}
	for _, a := range c.Egress.ProbeWarn {
		warn[a] = true
	}
	seen := map[string]bool{}
	for _, a := range append(append([]string{}, c.Egress.Probe...), c.Egress.ProbeWarn...) {
		if seen[a] {
			continue
		}
		seen[a] = true
		pc.Targets = append(pc.Targets, preflight.Target{Name: a, Address: a, WarnOnly: warn[a]})
	}
	return pc
}

// validateTargets rejects probe targets that are not host:port.
func validateTargets(c Config) error {
	for _, a := range append(append([]string{c.Egress.Metadata}, c.Egress.Probe...), c.Egress.ProbeWarn...) {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return err
		}
	}
	return nil
}

// RunPreflight runs every check for a plugin config (the CLI's entry point).
func RunPreflight(ctx context.Context, c Config) *preflight.Report {
	d := New(nullLogger())
	d.installSelf(c.StateDir)
	bwrapPath, _ := findBwrap(c.BwrapPath)
	d.mu.RLock()
	self := d.selfBinary
	d.mu.RUnlock()
	return preflight.Run(ctx, d.preflightConfig(c, bwrapPath, self))
}

// installRules puts the managed egress rules in place when configured, for
// every UID a task may run as.
func installRules(c Config, name string) (string, error) {
	if !c.Egress.ManageRules {
		return "", nil
	}
	return egress.Install(egress.Rules{
		Name: name,
		UIDs: c.identityUIDs(),
		Deny: c.Egress.deny,
	})
}

// preflightCache keeps the last report, rerun once it is older than the
// configured interval.
type preflightCache struct {
	mu     sync.Mutex
	at     time.Time
	report *preflight.Report
}

func (p *preflightCache) get(every time.Duration, run func() *preflight.Report) *preflight.Report {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.report == nil || time.Since(p.at) >= every {
		p.report, p.at = run(), time.Now()
	}
	return p.report
}

func (p *preflightCache) reset() {
	p.mu.Lock()
	p.report = nil
	p.mu.Unlock()
}

// preflightFingerprint runs (or reuses) the preflight report and folds it
// into the fingerprint: each check as driver.bwrap-r.preflight.<check>, and
// unhealthy, naming the failures, when a check is an error.
func (d *Driver) preflightFingerprint(fp *drivers.Fingerprint, c Config, bwrapPath, self string) {
	report := d.preflight.get(c.preflightEvery, func() *preflight.Report {
		return preflight.Run(d.ctx, d.preflightConfig(c, bwrapPath, self))
	})
	attrs, failed := report.Attributes()
	for k, v := range attrs {
		fp.Attributes["driver.bwrap-r."+k] = pstructs.NewStringAttribute(v)
	}
	if failed != "" {
		fp.Health = drivers.HealthStateUnhealthy
		fp.HealthDescription = failed
	}
}
