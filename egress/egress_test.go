package egress

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bwrap-r/bwrap-r/internal/testnet"
)

func TestParseDeny(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.0/8":      "10.0.0.0/8",
		"10.1.2.3/8":      "10.0.0.0/8",
		"169.254.169.254": "169.254.169.254/32",
		"127.0.0.1:4646":  "127.0.0.1:4646",
		"[::1]:8200":      "[::1]:8200",
		"fd00::/8":        "fd00::/8",
	} {
		d, err := ParseDeny(in)
		if err != nil || d.String() != want {
			t.Errorf("%q: got %v %v, want %s", in, d, err, want)
		}
	}
	for _, bad := range []string{"", "example.com", "10.0.0.0/33", "127.0.0.1:0", "1.2.3.4:x"} {
		if _, err := ParseDeny(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestNftScriptReplacesAtomically(t *testing.T) {
	d1, _ := ParseDeny("169.254.169.254")
	d2, _ := ParseDeny("127.0.0.1:4646")
	s := Rules{Name: "t", UIDs: []UIDRange{{80000, 89999}}, Deny: []Deny{d1, d2}}.NftScript()
	for _, want := range []string{
		"table inet t\ndelete table inet t\n",
		"meta skuid 80000-89999 ct state new ip daddr 169.254.169.254/32 meta l4proto tcp reject with tcp reset",
		"meta skuid 80000-89999 ct state new ip daddr 127.0.0.1/32 tcp dport 4646 reject with tcp reset",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
}

// Several ranges (task_uid_range, allowed_uids, allowed users' UIDs) are
// one set in every rule, merged where they overlap or touch.
func TestNftScriptHoldsEveryRange(t *testing.T) {
	d, _ := ParseDeny("127.0.0.1:4646")
	s := Rules{Name: "t", UIDs: []UIDRange{{90100, 90199}, {80000, 89999}, {65534, 65534}, {90150, 90300}, {90301, 90301}}, Deny: []Deny{d}}.NftScript()
	want := "meta skuid { 65534, 80000-89999, 90100-90301 } ct state new ip daddr 127.0.0.1/32 tcp dport 4646 reject with tcp reset"
	if !strings.Contains(s, want) {
		t.Errorf("script lacks %q:\n%s", want, s)
	}
}

func TestMergeUIDs(t *testing.T) {
	got := MergeUIDs([]UIDRange{{5, 5}, {1, 3}, {4, 4}, {10, 20}, {12, 15}, {22, 22}})
	want := []UIDRange{{1, 5}, {10, 20}, {22, 22}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

// Both backends block every range they are given, and nothing between.
func TestInstallSeveralRangesReal(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	addr := testnet.Listen(t)
	blocked, _ := ParseDeny(addr)
	rules := Rules{UIDs: []UIDRange{{89900, 89904}, {89920, 89920}}, Deny: []Deny{blocked}}
	backends := map[string]func(Rules) error{}
	if nft, err := exec.LookPath("nft"); err == nil {
		backends["nftables"] = func(r Rules) error { return run(nft, []byte(r.NftScript()), "-f", "-") }
	}
	if _, err := exec.LookPath("iptables"); err == nil {
		backends["iptables"] = installIPTables
	}
	if len(backends) == 0 {
		t.Skip("neither nft nor iptables")
	}
	for backend, install := range backends {
		t.Run(backend, func(t *testing.T) {
			rules.Name = "bwrap_r_t" + strconv.Itoa(os.Getpid())
			remove := func() {
				if backend == "iptables" {
					_ = removeIPTables(rules.Name)
				} else {
					_ = Remove(rules.Name)
				}
			}
			defer remove()
			if err := install(rules); err != nil {
				t.Fatal(err)
			}
			for uid, want := range map[int]bool{89900: false, 89904: false, 89920: false, 89905: true, 89919: true, 89921: true} {
				if connectAs(t, uid, addr) != want {
					t.Errorf("uid %d: connected = %v, want %v", uid, !want, want)
				}
			}
			remove()
			if !connectAs(t, 89920, addr) {
				t.Error("the rule survived its removal")
			}
		})
	}
}

// connectAs tries a TCP connect to addr as uid (through setpriv).
func connectAs(t *testing.T, uid int, addr string) bool {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("setpriv", "--reuid="+strconv.Itoa(uid), "--regid="+strconv.Itoa(uid), "--clear-groups",
		"bash", "-c", "exec 3<>/dev/tcp/"+host+"/"+port)
	return cmd.Run() == nil
}

func TestInstallReplaceRemoveReal(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		if _, err := exec.LookPath("iptables"); err != nil {
			t.Skip("neither nft nor iptables")
		}
	}
	addr := testnet.Listen(t)
	name := "bwrap_r_test_" + strconv.Itoa(os.Getpid())
	defer Remove(name)

	blocked, _ := ParseDeny(addr)
	rules := Rules{Name: name, UIDs: []UIDRange{{89900, 89909}}, Deny: []Deny{blocked}}
	if !connectAs(t, 89905, addr) {
		t.Fatal("control: no connection before any rule")
	}
	backend, err := Install(rules)
	if err != nil {
		t.Fatal(err)
	}
	if connectAs(t, 89905, addr) {
		t.Fatalf("%s rule did not block a uid in the range", backend)
	}
	if !connectAs(t, 89910, addr) {
		t.Fatal("a uid outside the range was blocked")
	}
	// A restart with other rules replaces the stale ones.
	other, _ := ParseDeny("127.0.0.2:9")
	rules.Deny = []Deny{other}
	if _, err := Install(rules); err != nil {
		t.Fatal(err)
	}
	if !connectAs(t, 89905, addr) {
		t.Fatal("the stale rule survived a reinstall")
	}
	rules.Deny = []Deny{blocked}
	if _, err := Install(rules); err != nil {
		t.Fatal(err)
	}
	if err := Remove(name); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if !connectAs(t, 89905, addr) {
		t.Fatal("the rule survived Remove")
	}
}
