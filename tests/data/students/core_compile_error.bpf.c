// A student's CO-RE program with a typo: 'tgdi' is no variable.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct {
	int tgid;
	struct task_struct *real_parent;
} __attribute__((preserve_access_index));

SEC("tracepoint/syscalls/sys_enter_execve")
int hello(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	int pid = BPF_CORE_READ(task, tgid);

	bpf_printk("Hello World! from pid %d, parent %d", tgdi, pid);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
