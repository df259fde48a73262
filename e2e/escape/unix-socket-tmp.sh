# A UNIX socket the test listens on in the host's /tmp (SOCK_TMP): the
# sandbox's /tmp is its own, so the path must not exist or connect must fail.
[ -n "$SOCK_TMP" ] || fail "SOCK_TMP not set"
no_connect "the host's $SOCK_TMP" unix "$SOCK_TMP"
[ -e "$SOCK_TMP" ] && blocked "$SOCK_TMP exists but connect failed: $R"
blocked "$SOCK_TMP does not exist in the sandbox ($R)"
