# Run through `nomad alloc exec`: the exec'd command runs as the task's UID
# (EXPECT_UID) in its namespaces, under its filter, with no capabilities.
# SECURITY.md: every capability set is empty, the bounding set included (the
# enter launcher drops it before it becomes the task's UID).
st=/proc/self/status
[ "$(id -u)" = "$EXPECT_UID" ] || escaped "exec runs as uid $(id -u), want $EXPECT_UID"
for c in CapInh CapPrm CapEff CapAmb CapBnd; do
  v=$(grep "^$c:" $st | tr -d '[:space:]' | cut -d: -f2)
  [ "$v" = 0000000000000000 ] || escaped "exec: $c is $v"
done
[ "$(grep '^NoNewPrivs:' $st | tr -d '[:space:]')" = NoNewPrivs:1 ] || escaped "exec: no_new_privs not set"
[ "$(grep '^Seccomp:' $st | tr -d '[:space:]')" = Seccomp:2 ] || escaped "exec: no seccomp filter"
if unshare -U true 2>/dev/null; then escaped "exec: unshare -U succeeded"; fi
[ -e /etc/shadow ] && escaped "exec: /etc/shadow visible"
[ -e "/proc/$AGENT_PID" ] && escaped "exec: the agent's pid $AGENT_PID is visible"
blocked "exec'd command: uid $(id -u), no capabilities in any set (bounding included), NoNewPrivs 1, Seccomp 2, unshare refused, task's own view"
