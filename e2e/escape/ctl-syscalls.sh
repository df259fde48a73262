# Control: the sys helper and perl's sockets work for allowed calls, so the
# refusals of the syscall probes are the filter's.
r=$(sys 39) || fail "getpid: $r"
r=$(sys 135 0xffffffff) || fail "personality(query): $r"
r=$(sys 2 /nonexistent 0); [ "$r" = "err ENOENT" ] || fail "open(/nonexistent): $r"
r=$(perl -MSocket -e 'socket(my $s, AF_INET, SOCK_STREAM, 0) && socket(my $u, AF_INET, SOCK_DGRAM, 0) && socket(my $x, AF_UNIX, SOCK_STREAM, 0) or die "$!"; print "sockets ok\n"') || fail "$r"
sleep 1 & p=$!
r=$(sys 62 "$p" 0) || fail "kill($p, 0) of its own child: $r"
ok "getpid, personality(query), open, stream/dgram/unix sockets, kill -0 of its own child work"
