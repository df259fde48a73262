# What root's launcher might have left in bwrap's processes, which the task
# can reach through its pid 1 (bwrap, same UID, dumpable): a descriptor root
# opened (a mount or a namespace, a directory, the spare's socket, the
# launcher object's memory file) would be the task's through /proc/1/fd; its
# environment or command line would show the spare's. An exec'd bwrap has
# none of these, and a preloaded spare must leave none either.
[ -r /proc/1/cmdline ] || fail "no /proc/1/cmdline to read"
n=0
for fd in /proc/1/fd/*; do
  [ -e "$fd" ] || [ -L "$fd" ] || continue
  n=$((n + 1))
  t=$(readlink "$fd")
  case "$t" in
    memfd:*|socket:*|anon_inode:\[fscontext\]|mnt:*|net:*|user:*|pid:*|ipc:*|uts:*|cgroup:*|time:*)
      escaped "pid 1 holds $fd -> $t" ;;
  esac
  # A mount root cloned (open_tree, fsmount) shows as its directory.
  [ -d "$fd" ] && escaped "pid 1 holds a directory: $fd -> $t"
done
[ "$n" -gt 0 ] || fail "pid 1's descriptors not readable: the probe shows nothing"
env1=$(tr -d '\0' </proc/1/environ)
[ -z "$env1" ] || escaped "pid 1's environment: $env1"
# Its first arguments: bwrap's --args, or the spare's _shim -request.
arg1=$(tr '\0' '\n' </proc/1/cmdline | sed -n 2p)
case "$arg1" in
  --args) ;;
  _shim) escaped "pid 1's command line is the spare's: $(tr '\0' ' ' </proc/1/cmdline | cut -c1-80)" ;;
  *) fail "pid 1's command line is not bwrap's: $(tr '\0' ' ' </proc/1/cmdline | cut -c1-80)" ;;
esac
grep -q 'memfd:bwrap-r-launcher' /proc/1/maps 2>/dev/null && preloaded=" (a preloaded spare's)" || preloaded=""
blocked "pid 1$preloaded: $n descriptors, none root's; empty environment; bwrap's command line"
