package driver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/nomad/helper/pluginutils/hclspecutils"
	"github.com/hashicorp/nomad/plugins/base"
	"github.com/zclconf/go-cty/cty"
	ctymsgpack "github.com/zclconf/go-cty/cty/msgpack"

	"github.com/bwrap-r/bwrap-r/egress"
	"github.com/bwrap-r/bwrap-r/rversion"
)

// DefaultMetadata is the cloud metadata address the preflight proves
// unreachable unless the operator says otherwise.
const DefaultMetadata = "169.254.169.254:80"

// EgressConfig is the plugin's egress block.
type EgressConfig struct {
	// Metadata is probed as "egress.metadata"; "" turns it off.
	Metadata string `codec:"metadata"`
	// Probe are further addresses (host:port) a task must not reach.
	Probe []string `codec:"probe"`
	// ProbeWarn are probe targets whose reachability is only a warning.
	ProbeWarn []string `codec:"probe_warn"`
	// ManageRules installs owner-match deny rules for every UID a task may
	// run as (task_uid_range, allowed_uids, allowed_users).
	ManageRules bool     `codec:"manage_rules"`
	Deny        []string `codec:"deny"`
	// RemoveRulesOnShutdown removes them when the plugin shuts down.
	RemoveRulesOnShutdown bool `codec:"remove_rules_on_shutdown"`

	deny []egress.Deny
}

// egressRulesName is the nft table / iptables chain bwrap-r owns.
const egressRulesName = "bwrap_r"

// normalize checks the decoded config and fills in what has a default.
func (c *Config) normalize() error {
	if c.StateDir == "" {
		c.StateDir = "/run/bwrap-r"
	}
	if !filepath.IsAbs(c.StateDir) {
		return fmt.Errorf("state_dir %q must be an absolute path", c.StateDir)
	}
	if c.TmpSizeMB <= 0 {
		return fmt.Errorf("tmp_size_mb must be positive, got %d", c.TmpSizeMB)
	}
	if c.PidsLimit < 0 {
		return fmt.Errorf("pids_limit must not be negative, got %d", c.PidsLimit)
	}
	if c.Logs == nil {
		c.Logs = &LogsConfig{}
	}
	if err := c.Logs.normalize(); err != nil {
		return err
	}
	var err error
	if c.deniedUIDs, err = parseIDRanges(c.DeniedHostUIDs); err != nil {
		return fmt.Errorf("denied_host_uids: %w", err)
	}
	if c.deniedGIDs, err = parseIDRanges(c.DeniedHostGIDs); err != nil {
		return fmt.Errorf("denied_host_gids: %w", err)
	}
	if c.RRoot == "" {
		c.RRoot = "/opt/R"
	}
	if !filepath.IsAbs(c.RRoot) {
		return fmt.Errorf("r_root %q must be an absolute path", c.RRoot)
	}
	if c.RCacheDir != "" && (!filepath.IsAbs(c.RCacheDir) || filepath.Clean(c.RCacheDir) == "/") {
		return fmt.Errorf("r_cache_dir %q must be an absolute path below /", c.RCacheDir)
	}
	if err := c.normalizeMountRoots(); err != nil {
		return err
	}
	if c.DefaultR != "" && !filepath.IsAbs(c.DefaultR) {
		return fmt.Errorf("default_r %q must be an absolute path", c.DefaultR)
	}
	if _, err := rversion.ParseMatch(c.RVersionMatch, rversion.Minor); err != nil {
		return err
	}
	if c.RVersionMatch == "" {
		c.RVersionMatch = string(rversion.Minor)
	}
	if c.TaskUIDRange == "" {
		c.TaskUIDRange = "80000-89999"
	}
	r, err := parseIDRanges(c.TaskUIDRange)
	if err != nil || len(r) != 1 || r[0][0] == 0 {
		return fmt.Errorf("task_uid_range %q: want one range of non-root UIDs, like 80000-89999", c.TaskUIDRange)
	}
	c.taskUIDs = r[0]
	if err := c.normalizeIdentities(); err != nil {
		return err
	}
	if c.PreflightInterval == "" {
		c.PreflightInterval = "5m"
	}
	if c.preflightEvery, err = time.ParseDuration(c.PreflightInterval); err != nil || c.preflightEvery < time.Second {
		return fmt.Errorf("preflight_interval %q: want a duration of at least 1s", c.PreflightInterval)
	}
	switch c.TaskAPI {
	case "":
		c.TaskAPI = taskAPIAuto
	case taskAPIAuto, taskAPIAllow, taskAPIDeny:
	default:
		return fmt.Errorf("task_api %q: want %q, %q or %q", c.TaskAPI, taskAPIAuto, taskAPIAllow, taskAPIDeny)
	}
	if c.Egress == nil {
		c.Egress = &EgressConfig{Metadata: DefaultMetadata}
	}
	for _, s := range c.Egress.Deny {
		d, err := egress.ParseDeny(s)
		if err != nil {
			return fmt.Errorf("egress: %w", err)
		}
		c.Egress.deny = append(c.Egress.deny, d)
	}
	if c.Egress.ManageRules && len(c.Egress.deny) == 0 {
		return errors.New("egress: manage_rules = true needs a deny list")
	}
	return nil
}

// ParseConfigFile reads the plugin's config from an agent config (its
// plugin "bwrap-r" { config { ... } } block) or from a file holding just a
// config { ... } block or its attributes.
func ParseConfigFile(path string) (Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	file, diags := hclparse.NewParser().ParseHCL(src, path)
	if diags.HasErrors() {
		return Config{}, diags
	}
	body := file.Body
	top, _, diags := body.PartialContent(&hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "data_dir"}},
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "plugin", LabelNames: []string{"name"}}, {Type: "config"}, {Type: "client"},
		}})
	if diags.HasErrors() {
		return Config{}, diags
	}
	allocRoot := agentAllocDir(top)
	found := false
	for _, b := range top.Blocks {
		switch {
		case b.Type == "plugin" && b.Labels[0] == PluginName:
			inner, _, diags := b.Body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "config"}}})
			if diags.HasErrors() {
				return Config{}, diags
			}
			if len(inner.Blocks) == 0 {
				return decodeConfigBody(hcl.EmptyBody())
			}
			body, found = inner.Blocks[0].Body, true
		case b.Type == "config" && !found:
			body, found = b.Body, true
		}
	}
	if !found && strings.Contains(string(src), "plugin") {
		return Config{}, fmt.Errorf("%s: no plugin %q block", path, PluginName)
	}
	c, err := decodeConfigBody(body)
	c.allocRoot = allocRoot
	return c, err
}

// agentAllocDir is the client's alloc dir an agent config names: client {
// alloc_dir }, else data_dir/alloc; "" when it names neither.
func agentAllocDir(top *hcl.BodyContent) string {
	str := func(a *hcl.Attribute) string {
		if a == nil {
			return ""
		}
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() || !v.Type().Equals(cty.String) || v.IsNull() {
			return ""
		}
		return v.AsString()
	}
	for _, b := range top.Blocks {
		if b.Type != "client" {
			continue
		}
		attrs, _, _ := b.Body.PartialContent(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "alloc_dir"}}})
		if attrs != nil {
			if d := str(attrs.Attributes["alloc_dir"]); d != "" {
				return d
			}
		}
	}
	if d := str(top.Attributes["data_dir"]); d != "" {
		return filepath.Join(d, "alloc")
	}
	return ""
}

func decodeConfigBody(body hcl.Body) (Config, error) {
	spec, diags := hclspecutils.Convert(configSpec)
	if diags.HasErrors() {
		return Config{}, diags
	}
	val, diags := hcldec.Decode(body, spec, nil)
	if diags.HasErrors() {
		return Config{}, diags
	}
	data, err := ctymsgpack.Marshal(val, val.Type())
	if err != nil {
		return Config{}, err
	}
	var c Config
	if err := base.MsgPackDecode(data, &c); err != nil {
		return Config{}, err
	}
	return c, c.normalize()
}

// DefaultConfig is the config of a plugin block without settings.
func DefaultConfig() (Config, error) {
	return decodeConfigBody(hcl.EmptyBody())
}
