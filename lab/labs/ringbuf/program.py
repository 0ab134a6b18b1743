# The perf buffer lab again with a BPF ring buffer (Linux 5.8+): one buffer shared by all CPUs.
from bcc import BPF

program = r"""
#include <linux/sched.h>  // TASK_COMM_LEN

struct event {
    u32 pid;
    u32 uid;
    char comm[TASK_COMM_LEN];
};

// 8 pages; the size must be a power of two.
BPF_RINGBUF_OUTPUT(events, 8);

int on_exec(struct pt_regs *ctx) {
    struct event *event = events.ringbuf_reserve(sizeof(struct event));
    if (!event)
        return 0;  // the buffer is full: the event is lost
    event->pid = bpf_get_current_pid_tgid() >> 32;
    event->uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;
    bpf_get_current_comm(&event->comm, sizeof(event->comm));
    events.ringbuf_submit(event, 0);
    return 0;
}
"""

b = BPF(text=program)
b.attach_kprobe(event=b.get_syscall_fnname("execve"), fn_name="on_exec")


def print_event(ctx, data, size):
    event = b["events"].event(data)
    print(f"pid {event.pid} uid {event.uid} comm {event.comm.decode(errors='replace')}", flush=True)


b["events"].open_ring_buffer(print_event)
try:
    while True:
        b.ring_buffer_poll()
except KeyboardInterrupt:
    pass
