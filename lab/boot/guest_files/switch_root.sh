#!/bin/sh
# Our last step in virtme-ng's initramfs. lab/boot/prepared.py appends this file to the saved
# initramfs as /bin/switch_root, and virtme-ng's init ends with
# `exec /bin/switch_root /newroot <init>`: so it runs with the host's root mounted at
# /newroot, from memory, with busybox. (As a separate init= script on the 9p root, each
# command was an exec from an uncached share: 0.3-1 s apiece under TCG.) Two things
# virtme-ng cannot be told:
#
# 1. Hide udevd. virtme-ng-init starts udev whenever the host has it installed; its
#    coldplug costs 10-40 s under TCG, and the labs need no device events. An overlay on
#    /usr with a whiteout hides it; virtme-ng-init's own /usr overlay stacks on ours.
#    systemd-tmpfiles goes the same way: 1.5 s of populating /run and /var for services
#    that never start in a lab guest.
# 2. Read /usr and the kernel's headers through a second 9p share of the host root (tag
#    "ebpflab", added by lab/boot/prepared.py) with cache=loose: virtme mounts the root
#    uncached, so every file BCC and clang open (Python, libLLVM, thousands of kernel
#    headers) costs round trips to QEMU on each access. The guest is thrown away after the
#    run, so a cache that never revalidates is safe.
#
# ebpflab_cached_dirs and ebpflab_cache come from the kernel command line: unknown name=value
# parameters become the environment of the initramfs's init, which execs us.
new=/newroot
bb=/bin/busybox
state=$new/run/.ebpf-lab
$bb mount -t tmpfs -o mode=0755 ebpf-lab $new/run
$bb mkdir -p $state/upper $state/work $state/host
lower=$new/usr
if [ "${ebpflab_cache:-1}" = 1 ] && $bb mount -t 9p -o ro,trans=virtio,version=9p2000.L,access=any,msize=524288,cache=loose ebpflab $state/host; then
    lower=$state/host/usr
    IFS=:
    for dir in ${ebpflab_cached_dirs:-}; do
        [ -d "$state/host$dir" ] && $bb mount -o bind "$state/host$dir" "$new$dir"
    done
    unset IFS
fi
if $bb mount -t overlay -o "lowerdir=$lower,upperdir=$state/upper,workdir=$state/work" ebpf-lab $new/usr; then
    $bb rm -f $new/usr/lib/systemd/systemd-udevd $new/usr/sbin/udevd $new/usr/bin/systemd-tmpfiles
fi
# The mounts above are under /newroot, and move with it.
exec $bb switch_root "$@"
