#!/bin/sh
# PID 1 of a prepared boot (lab/prepared.py), run before virtme-ng-init, whose path the
# kernel hands us in $ebpflab_next (unknown name=value boot parameters become init's
# environment). Two things virtme-ng cannot be told:
#
# 1. Hide udevd. virtme-ng-init starts udev whenever the host has it installed; its
#    coldplug costs 10-40 s under TCG, and the labs need no device events. An overlay on
#    /usr with a whiteout hides it; virtme-ng-init's own /usr overlay stacks on ours.
#    systemd-tmpfiles goes the same way: 1.5 s of populating /run and /var for services
#    that never start in a lab guest.
# 2. Read /usr and the kernel's headers through a second 9p share of the host root (tag
#    "ebpflab", added by lab/prepared.py) with cache=loose: virtme mounts the root
#    uncached, so every file BCC and clang open (Python, libLLVM, thousands of kernel
#    headers) costs round trips to QEMU on each access. The guest is thrown away after the
#    run, so a cache that never revalidates is safe.
#
# Each command here is an exec from the uncached root (~0.3 s under TCG): keep them few.
mount -t tmpfs -o mode=0755 ebpf-lab /run
mkdir -p /run/.ebpf-lab/upper /run/.ebpf-lab/work /run/.ebpf-lab/host
lower=/usr
if [ "${ebpflab_cache:-1}" = 1 ] && mount -t 9p -o ro,trans=virtio,version=9p2000.L,access=any,msize=524288,cache=loose ebpflab /run/.ebpf-lab/host; then
    lower=/run/.ebpf-lab/host/usr
    IFS=:
    for dir in ${ebpflab_bind:-}; do
        [ -d "/run/.ebpf-lab/host$dir" ] && mount --bind "/run/.ebpf-lab/host$dir" "$dir"
    done
    unset IFS
fi
if mount -t overlay -o "lowerdir=$lower,upperdir=/run/.ebpf-lab/upper,workdir=/run/.ebpf-lab/work" ebpf-lab /usr; then
    rm -f /usr/lib/systemd/systemd-udevd /usr/sbin/udevd /usr/bin/systemd-tmpfiles
fi
exec "$ebpflab_next"
