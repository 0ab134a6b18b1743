# The tutorial's program, but its C includes <linux/fs.h> (as execsnoop-bpfcc does): the header an
# older BCC's clang fails on when the kernel is newer than the BCC release. Prints one line per
# execve; used by bench/bcc_kernels.py and tests/data/loads/*-bcc-header.log.
from bcc import BPF

PROGRAM = r"""
#include <linux/fs.h>

int hello(void *ctx)
{
    bpf_trace_printk("Hello World! (fs.h)\n");
    return 0;
}
"""

b = BPF(text=PROGRAM)
b.attach_kprobe(event=b.get_syscall_fnname("execve"), fn_name="hello")
b.trace_print()
