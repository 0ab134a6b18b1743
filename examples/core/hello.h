/* The record the BPF program sends and user space reads. */
#ifndef HELLO_H
#define HELLO_H

struct event {
	int pid;
	int ppid;
	char comm[16];
	char filename[128];
};

#endif
