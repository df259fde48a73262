package driver

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/nomad/helper/users/dynamic"
	"github.com/hashicorp/nomad/plugins/drivers"

	"github.com/bwrap-r/bwrap-r/egress"
)

// idRanges is a set of IDs written as "0-999,65534" (Nomad's raw_exec and exec
// use the same form for denied_host_uids).
type idRanges [][2]uint64

func parseIDRanges(s string) (idRanges, error) {
	var r idRanges
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(strings.TrimSpace(lo), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("invalid id %q in %q", part, s)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(strings.TrimSpace(hi), 10, 32); err != nil || b < a {
				return nil, fmt.Errorf("invalid id range %q in %q", part, s)
			}
		}
		r = append(r, [2]uint64{a, b})
	}
	return r, nil
}

func (r idRanges) contains(id uint32) bool {
	for _, x := range r {
		if uint64(id) >= x[0] && uint64(id) <= x[1] {
			return true
		}
	}
	return false
}

// overlaps says whether any ID of x is in r.
func (r idRanges) overlaps(x [2]uint64) bool {
	for _, y := range r {
		if x[0] <= y[1] && y[0] <= x[1] {
			return true
		}
	}
	return false
}

func formatIDRange(x [2]uint64) string {
	if x[0] == x[1] {
		return strconv.FormatUint(x[0], 10)
	}
	return strconv.FormatUint(x[0], 10) + "-" + strconv.FormatUint(x[1], 10)
}

// hostUser is a user's IDs as the host's user database gave them.
type hostUser struct{ uid, gid uint32 }

// lookupUser resolves a task's user as Nomad does: "nomad-<N>" (a dynamic
// workload user) is N:N, any other name comes from the host's user database.
func lookupUser(name string) (u hostUser, dynamicUser bool, err error) {
	uid, gid, _, err := dynamic.LookupUser(name)
	if err != nil {
		return hostUser{}, false, err
	}
	if uid < 0 || gid < 0 || uid > 1<<31-1 || gid > 1<<31-1 {
		return hostUser{}, false, fmt.Errorf("uid %d / gid %d out of range", uid, gid)
	}
	return hostUser{uint32(uid), uint32(gid)}, isDynamicUser(name), nil
}

// isDynamicUser reports whether name is a Nomad dynamic workload user
// ("nomad-<N>"): one that exists only as its IDs, in no user database.
func isDynamicUser(name string) bool {
	_, err := dynamic.Parse(name)
	return err == nil
}

// normalizeIdentities checks allowed_uids and allowed_users and resolves the
// users: none may be root, the agent's own UID, or denied by
// denied_host_uids/gids, since no job field may get a task those identities.
func (c *Config) normalizeIdentities() error {
	var err error
	if c.allowedUIDs, err = parseIDRanges(c.AllowedUIDs); err != nil {
		return fmt.Errorf("allowed_uids: %w", err)
	}
	agent := uint64(os.Getuid())
	for _, r := range c.allowedUIDs {
		switch {
		case r[0] == 0:
			return fmt.Errorf("allowed_uids %q: %s holds root (uid 0), which never runs a task", c.AllowedUIDs, formatIDRange(r))
		case agent >= r[0] && agent <= r[1]:
			return fmt.Errorf("allowed_uids %q: %s holds the agent's own uid %d", c.AllowedUIDs, formatIDRange(r), agent)
		case c.deniedUIDs.overlaps(r):
			return fmt.Errorf("allowed_uids %q: %s overlaps denied_host_uids %q", c.AllowedUIDs, formatIDRange(r), c.DeniedHostUIDs)
		}
	}
	c.allowedUsers = map[string]hostUser{}
	for _, name := range c.AllowedUsers {
		u, _, err := lookupUser(name)
		switch {
		case err != nil:
			return fmt.Errorf("allowed_users: %q is not a user on this node (%v)", name, err)
		case u.uid == 0 || u.gid == 0:
			return fmt.Errorf("allowed_users: %q is root or in root's group (uid %d, gid %d), which never runs a task", name, u.uid, u.gid)
		case uint64(u.uid) == agent:
			return fmt.Errorf("allowed_users: %q is the agent's own uid %d", name, u.uid)
		case c.deniedUIDs.contains(u.uid):
			return fmt.Errorf("allowed_users: %q (uid %d) is in denied_host_uids %q", name, u.uid, c.DeniedHostUIDs)
		case c.deniedGIDs.contains(u.gid):
			return fmt.Errorf("allowed_users: %q (gid %d) is in denied_host_gids %q", name, u.gid, c.DeniedHostGIDs)
		}
		c.allowedUsers[name] = u
	}
	return nil
}

// identityUIDs are all UIDs a task may run as: task_uid_range, allowed_uids
// and the allowed users' UIDs (what the managed egress rules must hold).
func (c *Config) identityUIDs() []egress.UIDRange {
	rs := []egress.UIDRange{{Min: uint32(c.taskUIDs[0]), Max: uint32(c.taskUIDs[1])}}
	for _, r := range c.allowedUIDs {
		rs = append(rs, egress.UIDRange{Min: uint32(r[0]), Max: uint32(r[1])})
	}
	for _, u := range c.allowedUsers {
		rs = append(rs, egress.UIDRange{Min: u.uid, Max: u.uid})
	}
	return egress.MergeUIDs(rs)
}

// taskIdentity is the policy on a task's user: Nomad's dynamic workload user
// nomad-<N> with N in task_uid_range or allowed_uids, a host user listed in
// allowed_users, or a host user whose UID is in task_uid_range or
// allowed_uids. Never root, root's group, the agent's UID or a denied ID.
// Nomad always gives a bwrap-r task a user (the job's, or a dynamic one:
// the driver declares DynamicWorkloadUsers), so no user is an error, not a
// default.
func (c *Config) taskIdentity(name string) (uid, gid uint32, err error) {
	if name == "" {
		return 0, 0, fmt.Errorf("the task has no user: Nomad gives every bwrap-r task one (the job's user, or a dynamic workload user nomad-<N> from the client's users { dynamic_user_min/max })")
	}
	u, dynamicUser, err := lookupUser(name)
	if err != nil {
		return 0, 0, fmt.Errorf("user %q: not a user on this node (%v)", name, err)
	}
	if u.uid == 0 || u.gid == 0 {
		return 0, 0, fmt.Errorf("user %q: bwrap-r never runs a task as root (uid %d, gid %d)", name, u.uid, u.gid)
	}
	if int(u.uid) == os.Getuid() {
		return 0, 0, fmt.Errorf("user %q: uid %d is the Nomad agent's own", name, u.uid)
	}
	if c.deniedUIDs.contains(u.uid) || c.deniedGIDs.contains(u.gid) {
		return 0, 0, fmt.Errorf("user %q: uid %d / gid %d is denied by the plugin's denied_host_uids/gids", name, u.uid, u.gid)
	}
	inRange := uint64(u.uid) >= c.taskUIDs[0] && uint64(u.uid) <= c.taskUIDs[1]
	if inRange || c.allowedUIDs.contains(u.uid) {
		return u.uid, u.gid, nil
	}
	if listed, ok := c.allowedUsers[name]; ok {
		if listed == u {
			return u.uid, u.gid, nil
		}
		return 0, 0, fmt.Errorf("user %q is uid %d / gid %d now, not the uid %d / gid %d the plugin's config found for allowed_users (and its egress rules hold): reload the plugin config", name, u.uid, u.gid, listed.uid, listed.gid)
	}
	allow := fmt.Sprintf("allowed_uids = %q", strconv.FormatUint(uint64(u.uid), 10))
	if !dynamicUser {
		allow = fmt.Sprintf("allowed_users = [%q] or %s", name, allow)
	}
	return 0, 0, fmt.Errorf("user %q (uid %d) is not a task identity on this node: tasks run as %s; the operator can allow it with %s in the plugin config", name, u.uid, c.describeIdentities(), allow)
}

// describeIdentities says in words what taskIdentity accepts.
func (c *Config) describeIdentities() string {
	s := "UIDs in task_uid_range " + formatIDRange(c.taskUIDs)
	if len(c.allowedUIDs) > 0 {
		s += fmt.Sprintf(" or allowed_uids %q", c.AllowedUIDs)
	}
	if len(c.allowedUsers) > 0 {
		names := make([]string, 0, len(c.allowedUsers))
		for n := range c.allowedUsers {
			names = append(names, strconv.Quote(n))
		}
		slices.Sort(names)
		s += " and as allowed_users [" + strings.Join(names, ", ") + "]"
	}
	return s
}

// uidHolders refuses a UID to a task while another task holds it: from the
// start that claims it until DestroyTask. One UID is one task on the node,
// so no task replaces another's entries in the package cache, reads what it
// left in a shared directory, or gets the other's egress exceptions.
type uidHolders struct {
	mu sync.Mutex
	// claims are starts under way, keyed by UID.
	claims map[uint32]*drivers.TaskConfig
}

// claimUID reserves uid for cfg, or says which task holds it. Every task the
// driver knows (started or recovered, running or exited, until destroyed)
// holds its UID; release undoes the claim and must be called once the start
// has failed or the task is in d.tasks.
func (d *Driver) claimUID(uid uint32, cfg *drivers.TaskConfig) (release func(), err error) {
	d.uids.mu.Lock()
	defer d.uids.mu.Unlock()
	holder := d.uids.claims[uid]
	if holder == nil {
		if h := d.tasks.holderOf(uid); h != nil {
			holder = h.state.TaskConfig
		}
	}
	if holder != nil {
		return nil, fmt.Errorf("user %q: uid %d is held by task %q of job %q (allocation %s) on this node: one uid runs one task at a time", cfg.User, uid, holder.Name, holder.JobName, shortID(holder.AllocID))
	}
	if d.uids.claims == nil {
		d.uids.claims = map[uint32]*drivers.TaskConfig{}
	}
	d.uids.claims[uid] = cfg
	return func() {
		d.uids.mu.Lock()
		defer d.uids.mu.Unlock()
		if d.uids.claims[uid] == cfg {
			delete(d.uids.claims, uid)
		}
	}, nil
}

// holderOf is the task that holds uid, or nil.
func (s *taskStore) holderOf(uid uint32) *taskHandle {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, h := range s.tasks {
		if h.state.UID == uid {
			return h
		}
	}
	return nil
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
