# A student's opens attempt: the tracepoint is attached, but nothing ever reads the events.
import time

from bcc import BPF

program = r"""
BPF_PERF_OUTPUT(events);

TRACEPOINT_PROBE(syscalls, sys_enter_openat) {
    char filename[128];
    bpf_probe_read_user_str(&filename, sizeof(filename), args->filename);
    events.perf_submit(args, &filename, sizeof(filename));
    return 0;
}
"""

b = BPF(text=program)
while True:
    time.sleep(1)
