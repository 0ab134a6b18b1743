// SPDX-License-Identifier: GPL-2.0
// User space for hello.bpf.c: open, load and attach it through its bpftool skeleton, then
// print one line per execve from the ring buffer. Stops after N events (argv[1]; default and 0:
// no limit) or 600 s.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <bpf/libbpf.h>
#include "hello.h"
#include "hello.skel.h"

static int limit, seen;

static int on_event(void *ctx, void *data, size_t size)
{
	const struct event *e = data;

	printf("exec pid %d ppid %d comm %s file %s\n", e->pid, e->ppid, e->comm, e->filename);
	fflush(stdout);
	seen++;
	return 0;
}

int main(int argc, char **argv)
{
	struct hello_bpf *skel;
	struct ring_buffer *rb;
	time_t end = time(NULL) + 600;
	int err;

	limit = argc > 1 ? atoi(argv[1]) : 0;
	skel = hello_bpf__open_and_load();
	if (!skel) {
		fprintf(stderr, "hello: failed to load the BPF object\n");
		return 1;
	}
	err = hello_bpf__attach(skel);
	if (err) {
		fprintf(stderr, "hello: failed to attach: %d\n", err);
		goto out;
	}
	rb = ring_buffer__new(bpf_map__fd(skel->maps.events), on_event, NULL, NULL);
	if (!rb) {
		err = 1;
		goto out;
	}
	printf("hello: attached\n");
	fflush(stdout);
	while (time(NULL) < end) {
		err = ring_buffer__poll(rb, 200);
		if (err < 0 || (limit && seen >= limit))
			break;
	}
	err = err < 0 ? err : 0;
	ring_buffer__free(rb);
out:
	hello_bpf__destroy(skel);
	return err < 0 ? -err : err;
}
