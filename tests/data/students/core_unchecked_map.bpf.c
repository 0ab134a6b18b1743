// A student's CO-RE program the verifier refuses: the map value may be NULL.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} execs SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_execve")
int hello(void *ctx)
{
	__u32 key = 0;
	__u64 *count = bpf_map_lookup_elem(&execs, &key);

	*count += 1;
	bpf_printk("Hello World! from pid %d, parent %d", 0, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
