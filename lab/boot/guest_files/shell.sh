#!/bin/sh
# The guest's console shell (virtme-ng runs it through `su -s`). It makes the console
# predictable for pexpect: no echo, no line editing, no job control, no rc files,
# unbuffered Python, and a marker that says the guest is ready.
stty -echo -onlcr 2>/dev/null
export TERM=dumb PYTHONUNBUFFERED=1 PAGER=cat SYSTEMD_PAGER=cat
# No .pyc beside the sources (the host's own directories, for a guest on the host's root),
# unless the guest's init gave Python a place of its own for them.
[ -n "${PYTHONPYCACHEPREFIX:-}" ] || export PYTHONDONTWRITEBYTECODE=1
export PS1='$ ' PS2='' PROMPT_COMMAND=''
printf '\n%s\n' EBPF-LAB-SHELL-READY
# The console functions the host calls (spawn, poll, stop, readiness) come from the rc file.
exec /bin/bash --noprofile --rcfile "$(dirname "$0")/functions.sh" --noediting +m -i
