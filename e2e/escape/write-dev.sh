# /dev is a read-only tmpfs with six device nodes.
if mkdir /dev/bwrap-r-probe 2>/dev/null; then escaped "created /dev/bwrap-r-probe"; fi
if touch /dev/bwrap-r-probe 2>/dev/null; then escaped "created file /dev/bwrap-r-probe"; fi
if ln -s /proc/self /dev/bwrap-r-link 2>/dev/null; then escaped "created link /dev/bwrap-r-link"; fi
blocked "/dev: $(mkdir /dev/bwrap-r-probe 2>&1)"
