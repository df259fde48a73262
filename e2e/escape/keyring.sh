# The kernel keyring is not namespaced: the test added a key (KEY_SERIAL,
# KEY_DESC) that any host UID could read (permissions 0x3f3f3f3f; the test
# shows that with an unsandboxed process). keyctl is refused, and /proc/keys
# does not list it.
[ -n "$KEY_SERIAL" ] || fail "KEY_SERIAL not set"
r=$(perl -e '
  my $buf = "\0" x 256;
  my $r = syscall(250, 11, $ARGV[0] + 0, $buf, 256);      # KEYCTL_READ
  if ($r >= 0) { print "ok read ", substr($buf, 0, $r), "\n"; exit 0 }
  my ($e) = grep { $!{$_} } keys %!; print "err $e\n";
' "$KEY_SERIAL")
refused "KEYCTL_READ of the host's key $KEY_SERIAL" "$r" EPERM
for call in "250 6 $KEY_SERIAL 0 0" "250 0 -4 0" "248 user probe 0 0 -4" "249 user $KEY_DESC 0 0"; do
  refused "syscall $call" "$(sys $call)" EPERM
done
if grep -q "$KEY_DESC" /proc/keys 2>/dev/null; then escaped "/proc/keys lists the host's key $KEY_DESC"; fi
blocked "keyctl, add_key, request_key refused (EPERM); /proc/keys: $(wc -l < /proc/keys 2>&1) lines, not the host's key"
