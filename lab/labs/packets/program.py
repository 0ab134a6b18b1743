# Count UDP packets per destination port with XDP on the loopback interface.
import sys
import time

from bcc import BPF

DEVICE = sys.argv[1] if len(sys.argv) > 1 else "lo"

# The uapi headers only: the kernel-internal linux/ip.h and linux/udp.h pull in much of the
# kernel (linux/bpf.h, linux/fs.h), which BCC releases older than the kernel fail to parse
# (bookworm's BCC 0.26 on 6.12 and 7.x headers).
program = r"""
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/udp.h>
#include <uapi/linux/in.h>

BPF_HASH(udp_ports, u16, u64);

int count_udp(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;

    // Every access must be proven inside the packet, or the verifier rejects the program.
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return XDP_PASS;
    if (eth->h_proto != htons(ETH_P_IP))
        return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP)
        return XDP_PASS;
    struct udphdr *udp = (void *)ip + ip->ihl * 4;
    if ((void *)(udp + 1) > data_end)
        return XDP_PASS;

    u16 port = ntohs(udp->dest);
    udp_ports.increment(port);
    return XDP_PASS;
}
"""

b = BPF(text=program)
fn = b.load_func("count_udp", BPF.XDP)
# Generic ("SKB") mode works on every device, loopback included; native mode needs driver support.
b.attach_xdp(DEVICE, fn, BPF.XDP_FLAGS_SKB_MODE)
try:
    while True:
        time.sleep(2)
        for port, count in sorted(b["udp_ports"].items(), key=lambda item: item[0].value):
            print(f"udp port {port.value}: {count.value} packets", flush=True)
except KeyboardInterrupt:
    pass
finally:
    # An XDP program stays attached after its loader exits: detach it explicitly.
    b.remove_xdp(DEVICE, BPF.XDP_FLAGS_SKB_MODE)
