# Changing IDs: setuid(0), setresuid(0,0,0), setgroups, setuid to another
# task's UID, chown to root or another UID.
[ -n "$VICTIM_UID" ] || fail "VICTIM_UID not set"
me=$(id -u)
for call in "105 0" "117 0 0 0" "106 0" "119 0 0 0" "116 0 0" "105 $VICTIM_UID" "113 $VICTIM_UID $VICTIM_UID"; do
  refused "syscall $call" "$(sys $call)"
done
r=$(perl -e '$> = 0; $< = 0; print "$< $>\n"')
[ "$r" = "$me $me" ] || escaped "perl set its uids to $r"
touch /tmp/owned
if chown 0:0 /tmp/owned 2>/dev/null; then escaped "chown to root succeeded"; fi
if chown "$VICTIM_UID" /tmp/owned 2>/dev/null; then escaped "chown to the victim's uid $VICTIM_UID succeeded"; fi
blocked "setuid/setresuid/setgid/setresgid/setreuid/chown to 0 and to uid $VICTIM_UID all fail: $(sys 105 0)"
