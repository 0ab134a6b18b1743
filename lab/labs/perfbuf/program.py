# Send one event per execve (pid, uid, command name) to user space through a perf buffer.
from bcc import BPF

program = r"""
#include <linux/sched.h>  // TASK_COMM_LEN

struct event {
    u32 pid;
    u32 uid;
    char comm[TASK_COMM_LEN];
};

BPF_PERF_OUTPUT(events);

int on_exec(struct pt_regs *ctx) {
    struct event event = {};
    event.pid = bpf_get_current_pid_tgid() >> 32;
    event.uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;
    bpf_get_current_comm(&event.comm, sizeof(event.comm));
    events.perf_submit(ctx, &event, sizeof(event));
    return 0;
}
"""

b = BPF(text=program)
b.attach_kprobe(event=b.get_syscall_fnname("execve"), fn_name="on_exec")


def print_event(cpu, data, size):
    event = b["events"].event(data)
    print(f"pid {event.pid} uid {event.uid} comm {event.comm.decode(errors='replace')}", flush=True)


b["events"].open_perf_buffer(print_event)
try:
    while True:
        b.perf_buffer_poll()
except KeyboardInterrupt:
    pass
