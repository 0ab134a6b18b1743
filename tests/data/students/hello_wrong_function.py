# A student's hello attempt: the kprobe names a function that does not exist on x86_64 kernels.
from bcc import BPF

program = r"""
int hello(void *ctx) {
    bpf_trace_printk("Hello World!");
    return 0;
}
"""

b = BPF(text=program)
b.attach_kprobe(event="sys_execve_hello", fn_name="hello")
b.trace_print()
