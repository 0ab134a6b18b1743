// SPDX-License-Identifier: GPL-2.0
// A CO-RE program as most BPF code is written today: one event per execve, sent to user
// space through a ring buffer. Built once on the host; runs unchanged on every kernel.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "hello.h"

// Only the fields read, marked for CO-RE: libbpf relocates each access with the
// running kernel's BTF. (A bigger program would include a vmlinux.h from bpftool.)
struct task_struct {
	int tgid;
	struct task_struct *real_parent;
} __attribute__((preserve_access_index));

// The execve tracepoint's record: stable across kernels (see its format file).
struct execve_args {
	unsigned long long unused;
	long syscall_nr;
	const char *filename;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_execve")
int on_execve(struct execve_args *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		return 0;
	e->pid = BPF_CORE_READ(task, tgid);
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_probe_read_user_str(e->filename, sizeof(e->filename), ctx->filename);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
