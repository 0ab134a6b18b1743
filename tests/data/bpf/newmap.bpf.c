// A user ring buffer (BPF_MAP_TYPE_USER_RINGBUF) arrived in Linux 6.1: older kernels cannot create the map.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, 4096);
} requests SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_execve")
int drain(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
