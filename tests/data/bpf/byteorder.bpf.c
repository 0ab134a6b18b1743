// A record whose layout is byte-order sensitive: on every execve the program stores a 32-bit
// magic and a 16-bit port in an array map, in the byte order of the CPU it runs on. User space
// reading the raw bytes must decode them in that order too (tests/data/bpf/byteorder_read.py):
// a reader that hard-codes little-endian ('<IH') works on x86_64, arm64, riscv64 and ppc64el
// and reads garbage on s390x, the one big-endian guest.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct record {
	__u32 magic;
	__u16 port;
	__u16 execs;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct record);
} records SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_execve")
int record_execve(void *ctx)
{
	__u32 key = 0;
	struct record *r = bpf_map_lookup_elem(&records, &key);

	if (!r)
		return 0;
	r->magic = 0x0A0B0C0D;
	r->port = 4242;
	r->execs += 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
