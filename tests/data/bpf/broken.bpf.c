// Two programs: one fine, one the verifier must reject (a map value used without the
// NULL check bpf_map_lookup_elem's result needs).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_execve")
int fine(void *ctx)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&counts, &key);

	if (value)
		__sync_fetch_and_add(value, 1);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int null_deref(void *ctx)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&counts, &key);

	*value += 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
