package driver

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/nomad/plugins/drivers"

	"github.com/bwrap-r/bwrap-r/egress"
	"github.com/bwrap-r/bwrap-r/internal/testnet"
)

// A node whose tasks can reach a blocked target is unhealthy; once the plugin
// manages owner-match rules for the task UIDs it is healthy again.
func TestFingerprintPreflightEgress(t *testing.T) {
	needRoot(t)
	target := testnet.Listen(t)
	rules := "bwrap_r_test_" + strconv.Itoa(os.Getpid())

	open := newDriver(t, Config{TaskUIDRange: "89950-89959", Egress: &EgressConfig{Probe: []string{target}}})
	fp := open.buildFingerprint()
	if fp.Health != drivers.HealthStateUnhealthy || !strings.Contains(fp.HealthDescription, "egress."+target+" ("+target+" is reachable") {
		t.Fatalf("reachable target: health %s %q", fp.Health, fp.HealthDescription)
	}
	if a, _ := fp.Attributes["driver.bwrap-r.preflight.egress."+target].GetString(); !strings.HasPrefix(a, "error: ") {
		t.Fatalf("attribute %q", a)
	}
	for _, check := range []string{"bwrap", "userns", "uid_mapping", "cgroups"} {
		if a, _ := fp.Attributes["driver.bwrap-r.preflight."+check].GetString(); !strings.HasPrefix(a, "ok: ") {
			t.Errorf("preflight.%s = %q", check, a)
		}
	}

	d := New(nullLogger())
	d.rulesName = rules
	t.Cleanup(func() { egress.Remove(rules) })
	configure(t, d, Config{TaskUIDRange: "89950-89959", Egress: &EgressConfig{
		Probe: []string{target}, ManageRules: true, Deny: []string{target},
	}})
	fp = d.buildFingerprint()
	if fp.Health != drivers.HealthStateHealthy {
		t.Fatalf("with managed rules: health %s %q", fp.Health, fp.HealthDescription)
	}
	// The rule holds the task UIDs only.
	c, err := net.Dial("tcp", target)
	if err != nil {
		t.Fatalf("root was blocked too: %v", err)
	}
	c.Close()
}
