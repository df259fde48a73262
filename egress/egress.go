// Package egress installs owner-match firewall rules that stop task UIDs
// from opening connections to denied addresses: nftables in a table of its
// own, or iptables in a chain of its own where nft is missing.
package egress

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// Deny is one denied destination: a prefix, optionally one TCP/UDP port.
type Deny struct {
	Prefix netip.Prefix
	Port   uint16
}

// ParseDeny reads "10.0.0.0/8", "169.254.169.254", "127.0.0.1:4646" or
// "[::1]:4646".
func ParseDeny(s string) (Deny, error) {
	s = strings.TrimSpace(s)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return Deny{}, fmt.Errorf("deny %q: port 0", s)
		}
		return Deny{Prefix: netip.PrefixFrom(ap.Addr(), ap.Addr().BitLen()), Port: ap.Port()}, nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return Deny{Prefix: p.Masked()}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return Deny{Prefix: netip.PrefixFrom(a, a.BitLen())}, nil
	}
	return Deny{}, fmt.Errorf("deny %q: want an address, a CIDR or address:port", s)
}

func (d Deny) String() string {
	if d.Port != 0 {
		return netip.AddrPortFrom(d.Prefix.Addr(), d.Port).String()
	}
	return d.Prefix.String()
}

// UIDRange is the UIDs Min to Max, both included.
type UIDRange struct{ Min, Max uint32 }

func (r UIDRange) String() string {
	if r.Min == r.Max {
		return strconv.FormatUint(uint64(r.Min), 10)
	}
	return strconv.FormatUint(uint64(r.Min), 10) + "-" + strconv.FormatUint(uint64(r.Max), 10)
}

// MergeUIDs sorts ranges and joins those that overlap or touch: nft refuses
// overlapping elements in one set, and one range is one iptables rule.
func MergeUIDs(ranges []UIDRange) []UIDRange {
	rs := slices.Clone(ranges)
	slices.SortFunc(rs, func(a, b UIDRange) int { return cmp.Compare(a.Min, b.Min) })
	var out []UIDRange
	for _, r := range rs {
		if n := len(out); n > 0 && uint64(r.Min) <= uint64(out[n-1].Max)+1 {
			out[n-1].Max = max(out[n-1].Max, r.Max)
			continue
		}
		out = append(out, r)
	}
	return out
}

// Rules deny the UIDs their destinations.
type Rules struct {
	// Name of the nft table (family inet) or iptables chain.
	Name string
	// UIDs are the task UIDs the rules hold; none of them may be root.
	UIDs []UIDRange
	Deny []Deny
}

// nftUIDs is the skuid match: one range bare, several as an anonymous set.
func nftUIDs(uids []UIDRange) string {
	if len(uids) == 1 {
		return uids[0].String()
	}
	parts := make([]string, len(uids))
	for i, r := range uids {
		parts[i] = r.String()
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

// NftScript is the nft program that replaces the table atomically: rules
// left by an earlier run are dropped in the same transaction.
func (r Rules) NftScript() string {
	var b strings.Builder
	uids := nftUIDs(MergeUIDs(r.UIDs))
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\n", r.Name, r.Name)
	fmt.Fprintf(&b, "table inet %s {\n\tchain output {\n\t\ttype filter hook output priority 0; policy accept;\n", r.Name)
	for _, d := range r.Deny {
		fam := "ip"
		if d.Prefix.Addr().Is6() {
			fam = "ip6"
		}
		// ct state new: replies of a task's listening socket (a Shiny app
		// serving on loopback) must still flow.
		match := fmt.Sprintf("meta skuid %s ct state new %s daddr %s", uids, fam, d.Prefix)
		if d.Port != 0 {
			fmt.Fprintf(&b, "\t\t%s tcp dport %d reject with tcp reset\n", match, d.Port)
			fmt.Fprintf(&b, "\t\t%s udp dport %d reject\n", match, d.Port)
		} else {
			fmt.Fprintf(&b, "\t\t%s meta l4proto tcp reject with tcp reset\n", match)
			fmt.Fprintf(&b, "\t\t%s reject\n", match)
		}
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// Install puts the rules in place, replacing any earlier version. It uses
// nft when present, else iptables/ip6tables.
func Install(r Rules) (backend string, err error) {
	if r.Name == "" || len(r.UIDs) == 0 {
		return "", fmt.Errorf("egress rules: no name or no uids (%q, %v)", r.Name, r.UIDs)
	}
	for _, u := range r.UIDs {
		if u.Min == 0 || u.Max < u.Min {
			return "", fmt.Errorf("egress rules: bad uid range %d-%d", u.Min, u.Max)
		}
	}
	if nft, err := exec.LookPath("nft"); err == nil {
		return "nftables", run(nft, []byte(r.NftScript()), "-f", "-")
	}
	return "iptables", installIPTables(r)
}

// Remove deletes the rules (no error when there are none).
func Remove(name string) error {
	if nft, err := exec.LookPath("nft"); err == nil {
		if err := run(nft, nil, "list", "table", "inet", name); err != nil {
			return nil
		}
		return run(nft, nil, "delete", "table", "inet", name)
	}
	return removeIPTables(name)
}

func removeIPTables(name string) error {
	var errs []error
	for _, ipt := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(ipt); err != nil {
			continue
		}
		_ = run(ipt, nil, "-D", "OUTPUT", "-j", name)
		_ = run(ipt, nil, "-F", name)
		if err := run(ipt, nil, "-X", name); err != nil && !strings.Contains(err.Error(), "No chain") {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func installIPTables(r Rules) error {
	for _, v6 := range []bool{false, true} {
		ipt := "iptables"
		if v6 {
			ipt = "ip6tables"
		}
		if _, err := exec.LookPath(ipt); err != nil {
			if v6 {
				continue
			}
			return errors.New("egress rules need nft or iptables on the node")
		}
		// Our own chain, flushed and refilled: idempotent across restarts.
		_ = run(ipt, nil, "-N", r.Name)
		if err := run(ipt, nil, "-F", r.Name); err != nil {
			return err
		}
		for _, args := range iptablesRules(r, v6) {
			if err := run(ipt, nil, args...); err != nil {
				return err
			}
		}
		if run(ipt, nil, "-C", "OUTPUT", "-j", r.Name) != nil {
			if err := run(ipt, nil, "-I", "OUTPUT", "-j", r.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// iptablesRules are the -A commands of the chain for one family: --uid-owner
// takes one range, so each range gets its own rules.
func iptablesRules(r Rules, v6 bool) [][]string {
	var cmds [][]string
	for _, u := range MergeUIDs(r.UIDs) {
		uids := strconv.FormatUint(uint64(u.Min), 10) + "-" + strconv.FormatUint(uint64(u.Max), 10)
		for _, d := range r.Deny {
			if d.Prefix.Addr().Is6() != v6 {
				continue
			}
			base := []string{"-A", r.Name, "-m", "owner", "--uid-owner", uids, "-m", "conntrack", "--ctstate", "NEW", "-d", d.Prefix.String()}
			protos := [][]string{{}}
			if d.Port != 0 {
				protos = [][]string{{"-p", "tcp", "--dport", strconv.Itoa(int(d.Port))}, {"-p", "udp", "--dport", strconv.Itoa(int(d.Port))}}
			}
			for _, p := range protos {
				cmds = append(cmds, append(append(append([]string{}, base...), p...), "-j", "REJECT"))
			}
		}
	}
	return cmds
}

func run(bin string, stdin []byte, args ...string) error {
	cmd := exec.Command(bin, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
