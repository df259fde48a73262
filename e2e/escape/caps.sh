# Capabilities: none in any set, no_new_privs set, the seccomp filter loaded.
st=/proc/self/status
for c in CapInh CapPrm CapEff CapBnd CapAmb; do
  v=$(grep "^$c:" $st | tr -d '[:space:]' | cut -d: -f2)
  [ "$v" = 0000000000000000 ] || escaped "$c is $v"
done
[ "$(grep '^NoNewPrivs:' $st | tr -d '[:space:]')" = NoNewPrivs:1 ] || escaped "no_new_privs is not set: $(grep NoNewPrivs $st)"
[ "$(grep '^Seccomp:' $st | tr -d '[:space:]')" = Seccomp:2 ] || escaped "no seccomp filter: $(grep Seccomp: $st)"
blocked "all capability sets empty, NoNewPrivs 1, Seccomp 2 ($(id -u):$(id -g))"
