# Count execve calls per user in a BPF hash map; user space reads the map every two seconds.
import time

from bcc import BPF

program = r"""
BPF_HASH(execs, u32, u64);

int count_exec(void *ctx) {
    // The low 32 bits of bpf_get_current_uid_gid() are the uid, the high ones the gid.
    u32 uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;
    execs.increment(uid);
    return 0;
}
"""

b = BPF(text=program)
b.attach_kprobe(event=b.get_syscall_fnname("execve"), fn_name="count_exec")

try:
    while True:
        time.sleep(2)
        for uid, count in sorted(b["execs"].items(), key=lambda item: item[0].value):
            print(f"uid {uid.value}: {count.value} execs", flush=True)
        print("--", flush=True)
except KeyboardInterrupt:
    pass
