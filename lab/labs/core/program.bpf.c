// The hello program as libbpf CO-RE C: compiled once on the host with clang -target bpf,
// loaded and attached in the guest by libbpf, on every kernel and arch, unchanged.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

// Only what the program reads, marked for CO-RE: libbpf relocates each field access to
// where *this* kernel's BTF (/sys/kernel/btf/vmlinux) says the field is.
struct task_struct {
	int tgid;
	struct task_struct *real_parent;
} __attribute__((preserve_access_index));

SEC("tracepoint/syscalls/sys_enter_execve")
int hello(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	int pid = BPF_CORE_READ(task, tgid);
	int ppid = BPF_CORE_READ(task, real_parent, tgid);

	bpf_printk("Hello World! from pid %d, parent %d", pid, ppid);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
