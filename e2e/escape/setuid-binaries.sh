# Setuid-root programs of /usr (su, passwd, mount, ...) cannot make the task
# root: root is not mapped in its user namespace, and no_new_privs is set.
me=$(id -u)
if out=$(su root -c 'id -u' </dev/null 2>/dev/null) && [ -n "$out" ]; then escaped "su root ran a command as uid $out"; fi
for b in /usr/bin/su /usr/bin/passwd /usr/bin/mount /usr/bin/newgrp /usr/bin/chsh /usr/bin/gpasswd /usr/bin/sudo /usr/lib/dbus-1.0/dbus-daemon-launch-helper; do
  [ -u "$b" ] || continue
  owner=$(stat -c %u "$b")
  [ "$owner" = 0 ] && escaped "$b is owned by uid 0 inside the sandbox: root is mapped"
done
[ "$(id -u)" = "$me" ] || escaped "uid changed"
[ "$(grep '^NoNewPrivs:' /proc/self/status | tr -d '[:space:]')" = NoNewPrivs:1 ] || escaped "no_new_privs is not set"
blocked "su fails, setuid files are owned by an unmapped uid ($(stat -c %u /usr/bin/su 2>&1)), no_new_privs"
