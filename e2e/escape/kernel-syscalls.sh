# The kernel's sharp edges the filter refuses (harmless arguments: each would
# fail with another errno, or do nothing, if it got through).
for call in "321 0 0 0" "298 0 0 -1 -1 0" "246 0 0 0 0" "320 -1 -1 0 0 0" "175 0 0 0" "313 -1 0 0" "176 probe 0" \
    "323 0" "103 10 0 0" "169 0 0 0 0" "167 /tmp/none 0" "168 /tmp/none" "163 0" "172 3" "173 0 1 1" \
    "164 0 0" "227 0 0" "305 0 0" "159 0" "304 -1 0 0" "303 -100 / 0 0 0" "135 0x0040000" "179 0 0 0 0"; do
  refused "syscall $call" "$(sys $call)" EPERM
done
# io_uring_setup, io_uring_enter, io_uring_register.
for call in "425 1 0" "426 0 0 0 0 0 0" "427 0 0 0 0"; do
  refused "syscall $call" "$(sys $call)" EPERM
done
blocked "bpf, perf_event_open, kexec, modules, userfaultfd, syslog, reboot, swap, acct, iopl/ioperm, clocks, handles, personality, quotactl, io_uring refused (EPERM)"
