// Package driver is the Nomad glue of bwrap-r: config schemas, capabilities,
// fingerprint, task handles and recovery. The sandbox itself is package bwrap.
package driver

import (
	"time"

	"github.com/hashicorp/nomad/plugins/base"
	"github.com/hashicorp/nomad/plugins/drivers"
	"github.com/hashicorp/nomad/plugins/drivers/fsisolation"
	"github.com/hashicorp/nomad/plugins/shared/hclspec"
)

const (
	// PluginName is the name jobs use in `driver = "bwrap-r"`.
	PluginName = "bwrap-r"
	// PluginVersion is bwrap-r's version.
	PluginVersion = "0.1.0"

	fingerprintPeriod = 30 * time.Second
	// taskHandleVersion is the version of TaskState kept in Nomad's handles.
	taskHandleVersion = 1
)

var pluginInfo = &base.PluginInfoResponse{
	Type:              base.PluginTypeDriver,
	PluginApiVersions: []string{drivers.ApiVersion010},
	PluginVersion:     PluginVersion,
	Name:              PluginName,
}

// configSpec is the plugin's `plugin "bwrap-r" { config { ... } }` block.
var configSpec = hclspec.NewObject(map[string]*hclspec.Spec{
	// bwrap_path: the bubblewrap binary; default: bwrap on PATH.
	"bwrap_path": hclspec.NewAttr("bwrap_path", "string", false),
	// state_dir: root-only directory for what recovery needs (exit statuses).
	"state_dir": hclspec.NewDefault(
		hclspec.NewAttr("state_dir", "string", false),
		hclspec.NewLiteral(`"/run/bwrap-r"`),
	),
	// r_root: rig's layout, <r_root>/<x.y.z>/bin/R.
	"r_root": hclspec.NewDefault(
		hclspec.NewAttr("r_root", "string", false),
		hclspec.NewLiteral(`"/opt/R"`),
	),
	// default_r: the R binary for tasks naming no version; default: R on PATH.
	"default_r": hclspec.NewAttr("default_r", "string", false),
	// r_library_roots: host dirs jobs may use as package libraries (r_libs).
	"r_library_roots": hclspec.NewAttr("r_library_roots", "list(string)", false),
	// mount_roots: host dirs whose paths a task config's mounts may bind
	// read-only; mount_roots_writable: those it may bind read-write.
	"mount_roots":          hclspec.NewAttr("mount_roots", "list(string)", false),
	"mount_roots_writable": hclspec.NewAttr("mount_roots_writable", "list(string)", false),
	// r_cache_dir: a node-wide package cache, one directory per R x.y and
	// platform, read-only in R tasks, writable in those that ask.
	"r_cache_dir": hclspec.NewAttr("r_cache_dir", "string", false),
	// r_version_match: exact, minor or nearest, for tasks that do not say.
	"r_version_match": hclspec.NewDefault(
		hclspec.NewAttr("r_version_match", "string", false),
		hclspec.NewLiteral(`"minor"`),
	),
	// denied_host_uids / _gids: IDs no task may run as, e.g. "0-999". Root
	// and the agent's own UID are always refused.
	"denied_host_uids": hclspec.NewAttr("denied_host_uids", "string", false),
	"denied_host_gids": hclspec.NewAttr("denied_host_gids", "string", false),
	// allowed_users / allowed_uids: identities tasks may run as besides
	// task_uid_range: host user names, and UIDs like "90000-90099,91000".
	// A job's user outside all three is refused; managed egress rules hold
	// every one of them.
	"allowed_users": hclspec.NewAttr("allowed_users", "list(string)", false),
	"allowed_uids":  hclspec.NewAttr("allowed_uids", "string", false),
	// pids_limit: the cap on a task's processes and threads; a job may
	// lower it, not raise it. 0: no cap.
	"pids_limit": hclspec.NewDefault(
		hclspec.NewAttr("pids_limit", "number", false),
		hclspec.NewLiteral("2048"),
	),
	// task_uid_range: the UIDs tasks run as (Nomad's dynamic_user_min/max);
	// the preflight probes as its highest UID and egress rules match it
	// (with allowed_uids and allowed_users).
	"task_uid_range": hclspec.NewDefault(
		hclspec.NewAttr("task_uid_range", "string", false),
		hclspec.NewLiteral(`"80000-89999"`),
	),
	// Spares that run bwrap with the launcher preloaded (README: How it
	// works), in a build that has it.
	"preload_launcher": hclspec.NewDefault(
		hclspec.NewAttr("preload_launcher", "bool", false),
		hclspec.NewLiteral("true"),
	),
	"preflight_interval": hclspec.NewDefault(
		hclspec.NewAttr("preflight_interval", "string", false),
		hclspec.NewLiteral(`"5m"`),
	),
	"egress": hclspec.NewBlock("egress", false, hclspec.NewObject(map[string]*hclspec.Spec{
		"metadata": hclspec.NewDefault(
			hclspec.NewAttr("metadata", "string", false),
			hclspec.NewLiteral(`"169.254.169.254:80"`),
		),
		"probe":                    hclspec.NewAttr("probe", "list(string)", false),
		"probe_warn":               hclspec.NewAttr("probe_warn", "list(string)", false),
		"manage_rules":             hclspec.NewAttr("manage_rules", "bool", false),
		"deny":                     hclspec.NewAttr("deny", "list(string)", false),
		"remove_rules_on_shutdown": hclspec.NewAttr("remove_rules_on_shutdown", "bool", false),
	})),
	// task_api: whether tasks reach the Task API (secrets/api.sock): "auto"
	// hides it when egress.manage_rules is on, "allow" and "deny" force it.
	"task_api": hclspec.NewDefault(
		hclspec.NewAttr("task_api", "string", false),
		hclspec.NewLiteral(`"auto"`),
	),
	// logs: who collects tasks' stdout and stderr ("bwrap-r": one collector
	// for the node; "logmon": Nomad's logmon per task), and the rotation
	// limits, the defaults and ceilings of a task's own logs block.
	"logs": hclspec.NewBlock("logs", false, hclspec.NewObject(map[string]*hclspec.Spec{
		"collector":     hclspec.NewAttr("collector", "string", false),
		"max_files":     hclspec.NewAttr("max_files", "number", false),
		"max_file_size": hclspec.NewAttr("max_file_size", "number", false),
	})),
	// tmp_size: size limit of each task's private /tmp, in MiB.
	"tmp_size_mb": hclspec.NewDefault(
		hclspec.NewAttr("tmp_size_mb", "number", false),
		hclspec.NewLiteral("256"),
	),
})

// taskConfigSpec is the task's `config { ... }` block.
var taskConfigSpec = hclspec.NewObject(map[string]*hclspec.Spec{
	"command": hclspec.NewAttr("command", "string", true),
	"args":    hclspec.NewAttr("args", "list(string)", false),
	// r_version: "4.4", "4.4.1", "release", "oldrel", "devel" or "next".
	"r_version":       hclspec.NewAttr("r_version", "string", false),
	"r_version_match": hclspec.NewAttr("r_version_match", "string", false),
	// pids_limit: at most the plugin's (a job may lower it, not raise it).
	"pids_limit": hclspec.NewAttr("pids_limit", "number", false),
	// r_libs: host libraries under r_library_roots ("{minor}" is the R's x.y).
	"r_libs": hclspec.NewAttr("r_libs", "list(string)", false),
	// r_lib_writable: a library the task may install into (/alloc/... or /local/...).
	"r_lib_writable": hclspec.NewAttr("r_lib_writable", "string", false),
	// r_cache_writable: the package cache is bound read-write (restore tasks).
	"r_cache_writable": hclspec.NewAttr("r_cache_writable", "bool", false),
	// egress_deny: more destinations this task may not reach (it can only
	// tighten the plugin's rules).
	"egress_deny": hclspec.NewAttr("egress_deny", "list(string)", false),
	// network = "none": loopback only, whatever the group's network mode.
	"network": hclspec.NewAttr("network", "string", false),
	// work_dir: the command's working directory in the sandbox (default
	// /local); a relative one is relative to the task dir, as the command.
	"work_dir": hclspec.NewAttr("work_dir", "string", false),
	// logs: the task's rotation limits (Nomad hands drivers no job logs
	// block), at most the plugin's.
	"logs": hclspec.NewBlock("logs", false, hclspec.NewObject(map[string]*hclspec.Spec{
		"max_files":     hclspec.NewAttr("max_files", "number", false),
		"max_file_size": hclspec.NewAttr("max_file_size", "number", false),
	})),
	// mounts: host paths under the plugin's mount_roots, bound at
	// destination, read-only unless readonly = false (mount_roots_writable).
	"mounts": hclspec.NewBlockList("mounts", hclspec.NewObject(map[string]*hclspec.Spec{
		"source":      hclspec.NewAttr("source", "string", true),
		"destination": hclspec.NewAttr("destination", "string", true),
		"readonly": hclspec.NewDefault(
			hclspec.NewAttr("readonly", "bool", false),
			hclspec.NewLiteral("true"),
		),
	})),
})

var capabilities = &drivers.Capabilities{
	SendSignals: true,
	Exec:        true,
	// image: Nomad builds no chroot and passes no host environment; bwrap-r
	// builds the task's root itself.
	FSIsolation: fsisolation.Image,
	// group: Nomad's bridge and none modes (the allocation's namespace).
	NetIsolationModes: []drivers.NetIsolationMode{drivers.NetIsolationModeHost, drivers.NetIsolationModeGroup},
	// all: every volume_mount (host, dynamic host and CSI volumes) is bound,
	// or the task fails to start naming it.
	MountConfigs:         drivers.MountConfigSupportAll,
	DynamicWorkloadUsers: true,
}

// Config is the decoded plugin config.
type Config struct {
	BwrapPath string `codec:"bwrap_path"`
	StateDir  string `codec:"state_dir"`
	TmpSizeMB int64  `codec:"tmp_size_mb"`
	PidsLimit int64  `codec:"pids_limit"`
	// Logs says who collects the tasks' output and its rotation limits
	// (normalize fills in the defaults).
	Logs *LogsConfig `codec:"logs"`

	DeniedHostUIDs string `codec:"denied_host_uids"`
	DeniedHostGIDs string `codec:"denied_host_gids"`
	// AllowedUsers and AllowedUIDs are the task identities the operator
	// allows besides TaskUIDRange.
	AllowedUsers []string `codec:"allowed_users"`
	AllowedUIDs  string   `codec:"allowed_uids"`

	RRoot         string   `codec:"r_root"`
	DefaultR      string   `codec:"default_r"`
	RVersionMatch string   `codec:"r_version_match"`
	RLibraryRoots []string `codec:"r_library_roots"`
	RCacheDir     string   `codec:"r_cache_dir"`

	// MountRoots and MountRootsWritable are the host dirs a task config's
	// mounts may come from, read-only and read-write.
	MountRoots         []string `codec:"mount_roots"`
	MountRootsWritable []string `codec:"mount_roots_writable"`

	TaskUIDRange string `codec:"task_uid_range"`
	// PreloadLauncher: unset (a config made in Go) is the default, true.
	PreloadLauncher   *bool         `codec:"preload_launcher"`
	PreflightInterval string        `codec:"preflight_interval"`
	Egress            *EgressConfig `codec:"egress"`
	// TaskAPI is auto, allow or deny (see hidesTaskAPI).
	TaskAPI string `codec:"task_api"`

	// allocRoot is the client's alloc dir when an agent config named it
	// (bwrap-r preflight -config).
	allocRoot string

	deniedUIDs, deniedGIDs idRanges
	taskUIDs               [2]uint64
	allowedUIDs            idRanges
	// allowedUsers are allowed_users as the config found them on the host.
	allowedUsers   map[string]hostUser
	preflightEvery time.Duration
}

// TaskConfig is the decoded task config.
type TaskConfig struct {
	Command string   `codec:"command"`
	Args    []string `codec:"args"`

	RVersion      string `codec:"r_version"`
	RVersionMatch string `codec:"r_version_match"`
	// PidsLimit lowers the plugin's pids_limit for this task.
	PidsLimit int64 `codec:"pids_limit"`
	// Network "none" gives the task a network namespace of its own.
	Network string `codec:"network"`
	// WorkDir is the command's working directory ("" is /local).
	WorkDir string `codec:"work_dir"`

	// Logs lowers the plugin's rotation limits for this task.
	Logs *TaskLogs `codec:"logs"`

	RLibs        []string `codec:"r_libs"`
	RLibWritable string   `codec:"r_lib_writable"`
	// RCacheWritable binds the plugin's package cache read-write.
	RCacheWritable bool `codec:"r_cache_writable"`
	// EgressDeny adds owner-match deny rules for this task's UID, in a
	// table of the task's own.
	EgressDeny []string `codec:"egress_deny"`
	// Mounts are host paths under the plugin's mount roots.
	Mounts []TaskMount `codec:"mounts"`
}
