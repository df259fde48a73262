# /usr is a read-only bind. (": >>" opens for append and writes nothing, so a
# success would change no file.)
for f in /usr/bin/perl /usr/lib/R/etc/Renviron /usr/bin/sh; do
  if [ -e "$f" ] && (: >> "$f") 2>/dev/null; then escaped "opened $f for writing"; fi
done
if touch /usr/bwrap-r-probe 2>/dev/null; then rm -f /usr/bwrap-r-probe; escaped "created /usr/bwrap-r-probe"; fi
if mkdir /usr/lib/bwrap-r-probe 2>/dev/null; then rmdir /usr/lib/bwrap-r-probe; escaped "created /usr/lib/bwrap-r-probe"; fi
blocked "/usr: $(touch /usr/bwrap-r-probe 2>&1)"
