# A BCC program the verifier refuses (a map value used without its NULL check), for recording
# what BCC prints when a load fails: tests/data/loads/*-verifier.out.
from bcc import BPF

PROGRAM = r"""
BPF_HASH(counts, u32, u64);

int probe(void *ctx)
{
    u32 key = 0;
    u64 *value = counts.lookup(&key);

    *value += 1;
    return 0;
}
"""

b = BPF(text=PROGRAM)
b.attach_kprobe(event=b.get_syscall_fnname("execve"), fn_name="probe")
