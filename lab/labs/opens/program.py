# A log of opened files, from the syscalls:sys_enter_openat tracepoint.
from bcc import BPF

program = r"""
#include <linux/sched.h>  // TASK_COMM_LEN

struct event {
    u32 pid;
    char comm[TASK_COMM_LEN];
    char filename[128];
};

BPF_PERF_OUTPUT(events);

// TRACEPOINT_PROBE names the tracepoint; `args` holds its fields, as listed in
// /sys/kernel/debug/tracing/events/syscalls/sys_enter_openat/format.
TRACEPOINT_PROBE(syscalls, sys_enter_openat) {
    struct event event = {};
    event.pid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(&event.comm, sizeof(event.comm));
    // The file name is a pointer into the calling process's memory.
    bpf_probe_read_user_str(&event.filename, sizeof(event.filename), args->filename);
    events.perf_submit(args, &event, sizeof(event));
    return 0;
}
"""

# TRACEPOINT_PROBE attaches itself when the program is loaded.
b = BPF(text=program)


def print_event(cpu, data, size):
    event = b["events"].event(data)
    comm = event.comm.decode(errors="replace")
    print(f"{event.pid} {comm} opened {event.filename.decode(errors='replace')}", flush=True)


b["events"].open_perf_buffer(print_event, page_cnt=64)
try:
    while True:
        b.perf_buffer_poll()
except KeyboardInterrupt:
    pass
