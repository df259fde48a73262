# bwrap-r's own binary stays out of the sandbox: exec'd commands are confined
# by the enter launcher on the host, so a task has nothing of bwrap-r's to
# change, replace or run.
if [ -e /.bwrap-r ]; then
  if (: >> /.bwrap-r) 2>/dev/null; then escaped "opened /.bwrap-r for writing"; fi
  escaped "bwrap-r's binary is in the sandbox at /.bwrap-r"
fi
blocked "no /.bwrap-r in the sandbox"
