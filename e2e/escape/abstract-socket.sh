# An abstract UNIX socket the test listens on in the host's network namespace
# (ABSTRACT): a task with network = "none" has a namespace of its own.
[ -n "$ABSTRACT" ] || fail "ABSTRACT not set"
no_connect "the host's abstract socket @$ABSTRACT" abstract "$ABSTRACT"
blocked "@$ABSTRACT: $R"
