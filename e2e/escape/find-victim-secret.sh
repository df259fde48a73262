# Search everything the sandbox can see (but /proc, /sys, /dev and the
# read-only /usr) for the secret another running task wrote to its /local,
# /secrets, alloc/data and log.
[ -n "$VICTIM_SECRET" ] || fail "VICTIM_SECRET not set"
for d in /* /dev/shm; do
  case "$d" in /proc|/sys|/dev|/usr) continue ;; esac
  [ -L "$d" ] && continue
  hit=$(grep -rlsF -e "$VICTIM_SECRET" "$d" 2>/dev/null | head -3)
  [ -n "$hit" ] && escaped "found the victim's secret in $hit"
done
blocked "the victim's secret is nowhere in the sandbox's view (searched $(echo /* | tr ' ' ','))"
