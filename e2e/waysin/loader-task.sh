# A tenant's task whose env points LD_PRELOAD or LD_AUDIT at its own
# library: it writes the library into /local (the bytes come from its job),
# runs a child that loads it (the control: the library runs in the task's own
# processes, as its UID, under its filter) and, with WAYSIN_TRIGGER set,
# rewrites the file its template reads, so that the client re-renders and
# runs the template's change script. The record file is the task's, open to
# all: a root process on the host may be the first to append to it.
: > /local/waysin.rec && chmod 0666 /local/waysin.rec || fail "cannot make /local/waysin.rec"
printf '%s' "$WAYSIN_SO_B64" | base64 -d > /local/x.so.new && mv -f /local/x.so.new /local/x.so || fail "cannot write /local/x.so"
/bin/true
echo "library written"
if [ -n "$WAYSIN_TRIGGER" ]; then
  sleep 2
  echo "rewritten by the task" > /local/trigger.new && mv -f /local/trigger.new /local/trigger && echo "trigger rewritten"
fi
exec sleep 3600
