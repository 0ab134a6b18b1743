#!/bin/sh
# The whole init of a root-disk guest (arm64, --userland debian), run from virtme-ng's
# initramfs. lab/boot/prepared.py appends this file to the saved initramfs as /bin/switch_root;
# virtme-ng's init mounts the root disk read-only at /newroot and ends with
# `exec /bin/switch_root /newroot <init> ...`, so we get here with busybox in memory.
#
# Why not virtme-ng's own init: for a root disk it is a bash script (virtme-init) of some
# 300 forks and execs of dynamically linked tools. Under emulation of another CPU each one
# costs tens of milliseconds; measured on 6.1-arm64 it took about 6.5 s from the root mount
# to the shell. Here a static busybox does the few mounts a lab guest needs, then the
# console shell starts directly (no su, no udev, no tmpfiles).
#
# The guest sees: the root disk, read-only, with tmpfs overlays where it gets written
# (nothing is written back), /proc, /sys, /dev, debugfs and tracefs (trace_pipe), cgroup2, the kernel's modules
# from virtme-ng's "virtme.modules" share, and virtme-ng's init mounts (the lab package) at
# the paths virtme-ng would use. Parameters come from the kernel command line, as
# environment variables: virtme_console, virtme_hostname, virtme_shell, virtme_initmountN.
bb=/bin/busybox
console=/dev/${virtme_console:-console}
# /dev/console may be a virtio console whose driver is a module: our words go to the serial console.
exec >"$console" 2>&1
new=/newroot
top=$new/run/.ebpf-lab
# The disk stays the root, read-only; what the guest writes goes to tmpfs overlays on the
# few directories that get written. (One overlay over the whole root would put every
# lookup clang makes in the kernel's headers through overlayfs.)
$bb mount -t tmpfs -o mode=0755 run $new/run
for dir in etc var root home; do
    $bb mkdir -p $top/$dir/upper $top/$dir/work
    $bb mount -t overlay -o "lowerdir=$new/$dir,upperdir=$top/$dir/upper,workdir=$top/$dir/work" ebpf-lab $new/$dir
done
$bb mount -t tmpfs -o mode=0755 modules $new/lib/modules
$bb mount -t proc -o nosuid,noexec,nodev proc $new/proc
$bb mount -t sysfs -o nosuid,noexec,nodev sys $new/sys
$bb mount -t devtmpfs -o mode=0755,nosuid devtmpfs $new/dev
$bb mkdir -p $new/dev/pts $new/dev/shm
$bb mount -t devpts -o gid=5,mode=620,noexec,nosuid devpts $new/dev/pts
$bb mount -t tmpfs -o mode=1777,nosuid,nodev shm $new/dev/shm
$bb mount -t tmpfs -o mode=1777 tmp $new/tmp
$bb mount -t debugfs debugfs $new/sys/kernel/debug
$bb mount -t tracefs tracefs $new/sys/kernel/tracing
$bb mount -t cgroup2 cgroup2 $new/sys/fs/cgroup
for link in fd:/proc/self/fd stdin:/proc/self/fd/0 stdout:/proc/self/fd/1 stderr:/proc/self/fd/2; do
    $bb ln -sf "${link#*:}" "$new/dev/${link%%:*}"
done
release=$($bb uname -r)
$bb mkdir -p "$new/lib/modules/$release"
# The guest is thrown away after the run: a cache that never revalidates is safe.
$bb mount -t 9p -o ro,trans=virtio,version=9p2000.L,access=any,msize=524288,cache=loose \
    virtme.modules "$new/lib/modules/$release"
i=0
while :; do
    eval "dir=\${virtme_initmount$i:-} access=\${virtme_initmount${i}_access:-rw}"
    [ -n "$dir" ] || break
    $bb mkdir -p "$new$dir"
    options=trans=virtio,version=9p2000.L,access=any,msize=524288
    [ "$access" = ro ] && options=ro,$options
    $bb mount -t 9p -o "$options" "virtme.initmount$i" "$new$dir"
    i=$((i + 1))
done
name=${virtme_hostname:-ebpf-lab}
$bb hostname "$name"
printf '127.0.0.1 localhost %s\n::1 localhost %s\n' "$name" "$name" > $new/etc/hosts
$bb ip link set dev lo up
# Debian's riscv64 kernels leave the BPF JIT off (bpf_jit_enable 0, no BPF_JIT_DEFAULT_ON): the
# interpreter runs BCC's programs, but the verifier refuses what needs the JIT ("program requires
# BPF JIT compiler but it is not available": the core lab's CO-RE program, bpftrace's) on 7.2-riscv64.
jit=$new/proc/sys/net/core/bpf_jit_enable
[ "$($bb cat $jit 2>/dev/null)" = 0 ] && echo 1 > $jit
# Large readahead on the root disk: BCC maps LLVM and clang (some 190 MiB), and with the
# default 128 KiB window every fault of a cold page was a small emulated read. With 16 MiB
# the device fills the page cache itself (virtio DMA, no copy in the guest): 278 major
# faults in a compile became 14, and 6.12-arm64's import plus compile went from 24.3 s to
# 22.6 s (three runs each). Reading the libraries with `cat` at boot, as before, paid an
# emulated copy of every byte, on the CPU the compile needed.
for ra in $new/sys/block/vd*/queue/read_ahead_kb; do
    [ -f "$ra" ] && echo 16384 > "$ra"
done
# The rootfs build byte-compiles the guest's Python (lab/pybuilder.py). Where it could not,
# every Python process would compile every module it imports (some 3 s of `import bcc`
# under emulation): Python then keeps them in /tmp, for the later programs of the same
# guest; the read-only disk is never written.
pycache=
set -- $new/usr/lib/python3.*/__pycache__
[ -d "$1" ] || pycache=PYTHONPYCACHEPREFIX=/tmp/.ebpf-lab-pycache
shell=${virtme_shell:-/bin/bash}
# PID 1 is a shell that starts the console shell as a session leader with the console as
# its controlling terminal (so Ctrl-C reaches the foreground command), and powers off
# when it ends. The environment is a fresh one: the initramfs's holds every
# parameter of the kernel command line.
exec $bb switch_root $new /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root USER=root LOGNAME=root SHELL=/bin/bash TERM=linux $pycache \
    /bin/sh -c 'cd /root; /usr/bin/setsid -c /bin/sh "$0" <>"$1" >&0 2>&0; exec /bin/busybox poweroff -f' \
    "$shell" "$console"
