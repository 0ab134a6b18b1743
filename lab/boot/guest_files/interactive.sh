#!/bin/sh
# The console shell of `lab shell`: a person's, not pexpect's. The same guest the tests boot
# (the same init, mounts and overlays); only this last step differs from shell.sh.
export PAGER=less SYSTEMD_PAGER=cat PS1='\[\e[1m\]ebpf-lab \h:\w#\[\e[0m\] '
# Our init starts this shell without asking the terminal its size; a guess beats 80x24 for tracers.
stty rows "${LINES:-40}" cols "${COLUMNS:-160}" 2>/dev/null
# The labs, beside this script in the lab package (a root-disk guest sees it under /run/ebpf-lab).
cd "$(dirname "$0")/../../labs" 2>/dev/null || cd /
printf '\nebpf-lab guest: %s %s. The host'"'"'s files are read-only; writes stay in the guest.\n' "$(uname -r)" "$(uname -m)"
printf 'Leave with exit or Ctrl-D: the guest powers off.\n\n'
exec /bin/bash --noprofile --norc -i
