package driver

import (
	"fmt"

	"github.com/bwrap-r/bwrap-r/egress"
)

// taskRulesName is the nft table (or iptables chain) of one task's own
// egress_deny rules: named by the task, so that removing it never removes
// another task's, whatever UIDs they ran as. 25 characters: iptables takes
// chain names of up to 28.
func taskRulesName(taskID string) string {
	return "bwrap_r_t" + stateName(taskID)[:16]
}

// legacyTaskRulesName is the per-UID name handles of earlier versions used.
func legacyTaskRulesName(uid uint32) string {
	return fmt.Sprintf("bwrap_r_uid%d", uid)
}

// taskRulesTable is the table of the task's own rules, "" when it has none.
func (s *TaskState) taskRulesTable() string {
	switch {
	case s.TaskRulesName != "":
		return s.TaskRulesName
	case s.TaskRules:
		return legacyTaskRulesName(s.UID)
	}
	return ""
}

// installTaskRules installs a task's egress_deny rules, for its UID alone, as
// the table name.
func installTaskRules(denyList []string, name string, uid uint32) (bool, error) {
	if len(denyList) == 0 {
		return false, nil
	}
	var deny []egress.Deny
	for _, s := range denyList {
		d, err := egress.ParseDeny(s)
		if err != nil {
			return false, fmt.Errorf("config: egress_deny: %w", err)
		}
		deny = append(deny, d)
	}
	_, err := egress.Install(egress.Rules{Name: name, UIDs: []egress.UIDRange{{Min: uid, Max: uid}}, Deny: deny})
	return err == nil, err
}
