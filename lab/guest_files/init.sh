#!/bin/sh
# PID 1 for a prepared boot, run before virtme-ng-init (whose path the kernel hands us in
# $ebpflab_next, from the command line). It hides udevd from the guest: virtme-ng-init starts
# udev whenever the host has it installed, and its coldplug costs 10-40 s under TCG while the
# labs need no device events. An overlay with a whiteout hides it; virtme-ng-init's own /usr
# overlay then stacks on top of ours and keeps it hidden.
mount -t tmpfs -o mode=0755 ebpf-lab /run
mkdir -p /run/.ebpf-lab/upper /run/.ebpf-lab/work
if mount -t overlay -o lowerdir=/usr,upperdir=/run/.ebpf-lab/upper,workdir=/run/.ebpf-lab/work ebpf-lab /usr; then
    rm -f /usr/lib/systemd/systemd-udevd /usr/sbin/udevd
fi
exec "$ebpflab_next"
