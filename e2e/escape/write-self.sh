# bwrap-r's own binary is bound in at /.bwrap-r (it confines exec'd commands
# and probes egress): the task must not change or replace it.
[ -e /.bwrap-r ] || fail "no /.bwrap-r in the sandbox"
if (: >> /.bwrap-r) 2>/dev/null; then escaped "opened /.bwrap-r for writing"; fi
if mv /.bwrap-r /tmp/bwrap-r-moved 2>/dev/null; then escaped "moved /.bwrap-r away"; fi
if cp /bin/true /.bwrap-r 2>/dev/null; then escaped "overwrote /.bwrap-r"; fi
blocked "/.bwrap-r: $( (: >> /.bwrap-r) 2>&1)"
