# Prepended to every probe of e2e/escape_test.go. A probe tries one thing a
# task must not be able to do and prints one verdict line:
#   BLOCKED: <why>  and exits 0 when every attempt failed,
#   ESCAPED: <what> and exits 1 as soon as one succeeded.
# A control (ctl-*.sh) shows that a probe's method works where it should:
#   OK: <what> (exit 0) or FAIL: <what> (exit 1).
# Scripts never use dollar-brace or percent-brace: Nomad's job parser and its
# runtime interpolation would rewrite them.

blocked() { echo "BLOCKED: $*"; exit 0; }
escaped() { echo "ESCAPED: $*"; exit 1; }
ok() { echo "OK: $*"; exit 0; }
fail() { echo "FAIL: $*"; exit 1; }

# sys NR ARG...: the raw system call through perl (x86_64 numbers). Numbers
# (decimal or 0x...) are passed as integers, anything else as a pointer to
# the string. Prints "ok RET" (status 0) or "err ENAME" (status 1).
sys() {
  perl -e '
    my @a = map { /^0x[0-9a-f]+$/i ? hex($_) : /^-?[0-9]+$/ ? $_ + 0 : $_ } @ARGV;
    my $nr = shift @a;
    my $r = syscall($nr, @a);
    if ($r == -1) { my ($e) = grep { $!{$_} } keys %!; print "err ", ($e // "errno" . ($! + 0)), "\n"; exit 1 }
    print "ok $r\n";
  ' "$@"
}

# try_connect tcp ADDR PORT | tcp6 ADDR PORT | unix PATH | abstract NAME:
# a stream connect; prints "connected" (status 0) or the error (status 1).
try_connect() {
  perl -MSocket=:all -e '
    my ($kind, $a, $p) = @ARGV;
    my ($fam, $addr);
    if ($kind eq "tcp") { $fam = AF_INET; $addr = pack_sockaddr_in($p, inet_aton($a)) }
    elsif ($kind eq "tcp6") { $fam = AF_INET6; $addr = pack_sockaddr_in6($p, inet_pton(AF_INET6, $a)) }
    elsif ($kind eq "unix") { $fam = AF_UNIX; $addr = pack_sockaddr_un($a) }
    elsif ($kind eq "abstract") { $fam = AF_UNIX; $addr = pack_sockaddr_un("\0" . $a) }
    else { print "bad kind $kind\n"; exit 2 }
    socket(my $s, $fam, SOCK_STREAM, 0) or do { print "socket: $!\n"; exit 1 };
    $SIG{ALRM} = sub { print "timed out\n"; exit 1 };
    alarm 5;
    if (connect($s, $addr)) { print "connected\n"; exit 0 }
    print "$!\n";
    exit 1;
  ' "$@"
}

# refused WHAT RESULT [ERRNO]: RESULT (of sys) must be an error, ERRNO when
# given; a success is the escape, no result at all a broken probe.
refused() {
  case "$2" in
    ok*) escaped "$1 succeeded ($2)" ;;
    "err $3") ;;
    err*) [ -z "$3" ] || escaped "$1: $2, want $3" ;;
    *) fail "$1: no result from perl: '$2'" ;;
  esac
}

# no_connect WHAT KIND ADDR [PORT]: the connect must fail; R holds its error.
no_connect() {
  what=$1
  shift
  R=$(try_connect "$@") && escaped "connected to $what"
  [ -n "$R" ] || fail "try_connect $* printed nothing"
}
