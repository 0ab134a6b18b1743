# The tutorial's hello program with timestamps, so the benchmark can split BCC's time into
# import, compile (BPF(text=...)) and attach. Same program in substance as lab/labs/hello.
import time

t0 = time.monotonic()
from bcc import BPF  # noqa: E402

t1 = time.monotonic()
program = r"""
int hello(void *ctx) {
    bpf_trace_printk("Hello World!");
    return 0;
}
"""
b = BPF(text=program)
t2 = time.monotonic()
syscall = b.get_syscall_fnname("execve")
b.attach_kprobe(event=syscall, fn_name="hello")
t3 = time.monotonic()
print(f"TIMING import={t1 - t0:.2f} compile={t2 - t1:.2f} attach={t3 - t2:.2f}", flush=True)
b.trace_print()
