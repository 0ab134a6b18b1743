# A student's perfbuf attempt: compiles and runs, but the kprobe is on clone, not execve.
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
b.attach_kprobe(event=b.get_syscall_fnname("clone"), fn_name="on_exec")


def show(cpu, data, size):
    event = b["events"].event(data)
    print(f"pid {event.pid} uid {event.uid} comm {event.comm.decode()}", flush=True)


b["events"].open_perf_buffer(show)
while True:
    b.perf_buffer_poll()
