// One program per way a load can fail on some kernel and not another, for the classifier.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

// A field no kernel has: its CO-RE relocation cannot be resolved anywhere.
struct task_struct___future {
	int ebpf_lab_no_such_field;
} __attribute__((preserve_access_index));

SEC("tracepoint/syscalls/sys_enter_execve")
int missing_field(void *ctx)
{
	struct task_struct___future *task = (void *)bpf_get_current_task();

	bpf_printk("%d", BPF_CORE_READ(task, ebpf_lab_no_such_field));
	return 0;
}

// A kprobe on a function no kernel has: loads, cannot attach.
SEC("kprobe/ebpf_lab_no_such_function")
int missing_function(void *ctx)
{
	return 0;
}

// bpf_get_current_task_btf arrived in Linux 5.11: older kernels do not know the helper.
SEC("tracepoint/syscalls/sys_enter_execve")
int new_helper(void *ctx)
{
	bpf_printk("%p", bpf_get_current_task_btf());
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
