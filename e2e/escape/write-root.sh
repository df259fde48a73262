# The sandbox's root is remounted read-only.
if touch /bwrap-r-probe 2>/dev/null; then escaped "created /bwrap-r-probe"; fi
if mkdir /bwrap-r-probe 2>/dev/null; then escaped "created dir /bwrap-r-probe"; fi
if ln -s / /bwrap-r-link 2>/dev/null; then escaped "created link /bwrap-r-link"; fi
blocked "/: $(touch /bwrap-r-probe 2>&1)"
