# The host's network configuration and firewall: no CAP_NET_ADMIN over the
# host's network namespace. A successful "nft delete table inet bwrap_r"
# would remove the egress rules (the test checks the table afterwards).
if ip link set dev lo up 2>/dev/null; then escaped "ip link set dev lo up succeeded (CAP_NET_ADMIN)"; fi
if nft delete table inet bwrap_r 2>/dev/null; then escaped "deleted the egress table inet bwrap_r"; fi
if nft list ruleset >/dev/null 2>&1; then escaped "nft list ruleset succeeded"; fi
if iptables -w -S >/dev/null 2>&1; then escaped "iptables -S succeeded"; fi
blocked "ip link: $(ip link set dev lo up 2>&1 | head -1); nft: $(nft delete table inet bwrap_r 2>&1 | head -1)"
