// A CO-RE program built once on the host: it says hello on every execve, from a
// tracepoint and from the execve syscall's kprobe, and reads the caller's tgid from
// task_struct through a CO-RE relocation (no vmlinux.h: the one field is declared here).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

struct task_struct {
	int tgid;
} __attribute__((preserve_access_index));

SEC("tracepoint/syscalls/sys_enter_execve")
int hello_tp(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	int tgid = BPF_CORE_READ(task, tgid);

	bpf_printk("Hello World! tgid %d", tgid);
	return 0;
}

// libbpf finds the execve syscall's kprobe name on this kernel and arch (__x64_sys_execve, ...).
SEC("ksyscall/execve")
int hello_kprobe(void *ctx)
{
	bpf_printk("Hello World! (kprobe)");
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
