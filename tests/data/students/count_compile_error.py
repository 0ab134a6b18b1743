# A student's count attempt: the map is declared as `execs` but incremented as `exec`.
import time

from bcc import BPF

program = r"""
BPF_HASH(execs, u32, u64);

int count_exec(void *ctx) {
    u32 uid = bpf_get_current_uid_gid();
    exec.increment(uid);
    return 0;
}
"""

b = BPF(text=program)
b.attach_kprobe(event=b.get_syscall_fnname("execve"), fn_name="count_exec")
while True:
    time.sleep(2)
    for uid, count in b["execs"].items():
        print(f"uid {uid.value}: {count.value} execs", flush=True)
