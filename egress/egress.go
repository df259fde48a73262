// Package egress installs owner-match firewall rules that stop the task UID
// range from opening connections to denied addresses: nftables in a table of
// its own, or iptables in a chain of its own where nft is missing.
package egress

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
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

// Rules deny the task UID range its destinations.
type Rules struct {
	// Name of the nft table (family inet) or iptables chain.
	Name           string
	UIDMin, UIDMax uint32
	Deny           []Deny
}

// NftScript is the nft program that replaces the table atomically: rules
// left by an earlier run are dropped in the same transaction.
func (r Rules) NftScript() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\n", r.Name, r.Name)
	fmt.Fprintf(&b, "table inet %s {\n\tchain output {\n\t\ttype filter hook output priority 0; policy accept;\n", r.Name)
	for _, d := range r.Deny {
		fam := "ip"
		if d.Prefix.Addr().Is6() {
			fam = "ip6"
		}
		// ct state new: replies of a task's listening socket (a Shiny app
		// serving on loopback) must still flow.
		match := fmt.Sprintf("meta skuid %d-%d ct state new %s daddr %s", r.UIDMin, r.UIDMax, fam, d.Prefix)
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
	if r.Name == "" || r.UIDMin == 0 || r.UIDMax < r.UIDMin {
		return "", fmt.Errorf("egress rules: bad name or uid range %d-%d", r.UIDMin, r.UIDMax)
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
		uids := strconv.FormatUint(uint64(r.UIDMin), 10) + "-" + strconv.FormatUint(uint64(r.UIDMax), 10)
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
				args := append(append(append([]string{}, base...), p...), "-j", "REJECT")
				if err := run(ipt, nil, args...); err != nil {
					return err
				}
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
