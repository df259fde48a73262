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
	s := Rules{Name: "t", UIDMin: 80000, UIDMax: 89999, Deny: []Deny{d1, d2}}.NftScript()
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
	rules := Rules{Name: name, UIDMin: 89900, UIDMax: 89909, Deny: []Deny{blocked}}
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
