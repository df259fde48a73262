# Allocate 1 GiB with memory = 64: the kernel OOM-kills the task in its
# cgroup (the test checks the task's OOM event and exit 137).
echo "allocating 1 GiB in 16 MiB pieces"
exec perl -e '
  my @a;
  for my $i (1 .. 64) { push @a, "x" x (16 << 20); }
  print "ESCAPED: allocated 1 GiB with memory = 64\n";
  exit 1;
'
