// The tc/BPF datapath prototype of issue 14 (docs/benchmarks.md, "udp64 with a tc/BPF
// datapath"): a measurement aid, not matd's code. Built and loaded by
// Tools/lab/bench-udp64-bpf (clang -target bpf; loader tc-datapath-load.c), IPv4 only.
//
// mat_out (tc egress on the TUN device, where the HoA route sends the application's
// packet): a plain TCP/UDP/ICMP-echo packet from the own HoA to a peer HoA in map out4 gets
// source own MoA, destination the peer's MoA (checksums fixed incrementally) and is sent
// straight out of the uplink; everything else goes on into the TUN device (the engine).
// mat_in (tc ingress on the uplink): a plain TCP/UDP (not to matd's ports)/ICMP-echo packet
// to the own MoA from a MoA in map in4 gets source the peer's HoA, destination the own
// HoA, and the fast path's mark bit; everything else passes untouched.
// With config guard set, MoA-to-MoA traffic is left alone as PeerMoATraffic's nftables
// sets do it (a flow this host sent from its MoA to a peer's MoA, a service bound to the
// MoA): mat_up (tc egress on the uplink) notes such flows in map moaflows, skipping the
// packets mat_out redirected (they carry the mark bit), and mat_in passes packets of a
// noted flow or to a port in map listen4 untouched. Echo replies and ICMP errors of such
// flows are not guarded: a prototype to price the lookups, not the whole rule.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// How mat_out sends the rewritten packet out of the uplink (struct config's mode).
enum {
    // bpf_redirect_neigh without a next hop: the kernel looks the route up (a full
    // ip_route_output_flow through the policy rules) and then the neighbour.
    MODE_ROUTE = 0,
    // bpf_redirect_neigh with the peer's next hop from the map: no route lookup, the
    // neighbour is looked up (and resolved if needed) by the kernel.
    MODE_NEXTHOP = 1,
    // An Ethernet header from the map pushed in front (bpf_skb_change_head) and
    // bpf_redirect: no lookup at all (a bound: the MACs would have to be kept current).
    MODE_MAC = 2,
};

struct config {
    __u32 home;      // own HoA (network order)
    __u32 mobile;    // own MoA
    __u32 mode;
    __u16 ports[2];  // matd's own UDP ports (network order), never rewritten inbound
    __u32 guard;     // non-zero: mat_in consults moaflows and listen4
};

// A flow between the own MoA and a peer's MoA, keyed as mat_in sees it.
struct flow {
    __u32 peer;      // the peer's MoA
    __u32 protocol;
    __u16 peerPort;
    __u16 localPort;
};

#define HOA_TRAFFIC 0x10000000  // FastPathRuleset.translatedMark

struct out_value {
    __u32 moa;       // the peer's MoA
    __u32 nexthop;   // its next hop out of the uplink (MODE_NEXTHOP)
    __u32 ifindex;   // the uplink
    __u8 dmac[6];    // MODE_MAC: the next hop's MAC
    __u8 smac[6];    //           the uplink's MAC
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct config);
} cfg SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, __u32);              // peer HoA
    __type(value, struct out_value);
} out4 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, __u32);              // peer MoA
    __type(value, __u32);            // peer HoA
} in4 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct flow);
    __type(value, __u32);
} moaflows SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, __u32);              // protocol << 16 | port (host order)
    __type(value, __u32);
} listen4 SEC(".maps");

// Counters (packets) per direction, read by the bench to check the program carried the flood.
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 2);
    __type(key, __u32);
    __type(value, __u64);
} counts SEC(".maps");

#define TCP_CSUM 16
#define UDP_CSUM 6
#define IP_CSUM 10
#define IP_SRC 12
#define IP_DST 16
#define FRAG_MASK 0x3fff

static __always_inline void count(__u32 index) {
    __u64 *c = bpf_map_lookup_elem(&counts, &index);
    if (c) *c += 1;
}

// Rewrites the addresses of the IPv4 packet at offset `ip` with checksum fixes; the
// transport checksum (if any) is at `l4csum` (0: none, ICMP).
static __always_inline int rewrite(struct __sk_buff *skb, __u32 ip, __u32 l4csum, __u32 l4flags,
                                   __u32 oldSrc, __u32 newSrc, __u32 oldDst, __u32 newDst) {
    if (l4csum) {
        if (bpf_l4_csum_replace(skb, l4csum, oldSrc, newSrc, l4flags | BPF_F_PSEUDO_HDR | 4)) return -1;
        if (bpf_l4_csum_replace(skb, l4csum, oldDst, newDst, l4flags | BPF_F_PSEUDO_HDR | 4)) return -1;
    }
    if (bpf_l3_csum_replace(skb, ip + IP_CSUM, oldSrc, newSrc, 4)) return -1;
    if (bpf_l3_csum_replace(skb, ip + IP_CSUM, oldDst, newDst, 4)) return -1;
    __u32 addresses[2] = { newSrc, newDst };
    return bpf_skb_store_bytes(skb, ip + IP_SRC, addresses, 8, 0);
}

// The offset of the transport checksum for `protocol` (0 for ICMP echo), the flags its
// fix needs, or -1 for a packet the program leaves alone. `ip` is the IP header's offset.
static __always_inline int transport(struct __sk_buff *skb, __u32 ip, __u8 protocol, __u32 *flags,
                                     const struct config *c, int inbound) {
    void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
    __u8 *l4 = (__u8 *)data + ip + sizeof(struct iphdr);
    *flags = 0;
    switch (protocol) {
    case IPPROTO_TCP:
        return ip + sizeof(struct iphdr) + TCP_CSUM;
    case IPPROTO_UDP:
        if (inbound) {
            if ((void *)(l4 + 4) > end) return -1;
            __u16 port = *(__u16 *)(l4 + 2);
            if (port == c->ports[0] || port == c->ports[1]) return -1;
        }
        *flags = BPF_F_MARK_MANGLED_0;  // a zero UDP checksum means none: stays zero
        return ip + sizeof(struct iphdr) + UDP_CSUM;
    case IPPROTO_ICMP:
        if ((void *)(l4 + 1) > end) return -1;
        return (*l4 == 8 || *l4 == 0) ? 0 : -1;  // echo request, echo reply
    default:
        return -1;
    }
}

SEC("tc")
int mat_out(struct __sk_buff *skb) {
    __u32 zero = 0;
    if (skb->protocol != bpf_htons(ETH_P_IP)) return TC_ACT_OK;
    void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
    struct iphdr *iph = data;  // a TUN device: no link header
    if ((void *)(iph + 1) > end) return TC_ACT_OK;
    if (iph->ihl != 5 || (iph->frag_off & bpf_htons(FRAG_MASK))) return TC_ACT_OK;
    const struct config *c = bpf_map_lookup_elem(&cfg, &zero);
    if (!c || iph->saddr != c->home) return TC_ACT_OK;
    __u32 peerHoA = iph->daddr;
    const struct out_value *v = bpf_map_lookup_elem(&out4, &peerHoA);
    if (!v) return TC_ACT_OK;
    __u32 flags;
    int l4 = transport(skb, 0, iph->protocol, &flags, c, 0);
    if (l4 < 0) return TC_ACT_OK;
    if (rewrite(skb, 0, l4, flags, c->home, c->mobile, peerHoA, v->moa)) return TC_ACT_SHOT;
    count(0);
    skb->mark |= HOA_TRAFFIC;  // mat_up leaves it alone
    if (c->mode != MODE_MAC) {
        // bpf_redirect_neigh takes a packet with a link header (it pulls it off again
        // before the neighbour output): one of 14 bytes, any unicast destination, goes in
        // front of the TUN device's bare IP packet.
        if (bpf_skb_change_head(skb, ETH_HLEN, 0)) return TC_ACT_SHOT;
        struct ethhdr eth = { .h_proto = bpf_htons(ETH_P_IP) };
        if (bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0)) return TC_ACT_SHOT;
    }
    switch (c->mode) {
    case MODE_NEXTHOP: {
        struct bpf_redir_neigh nh = { .nh_family = 2 /* AF_INET */, .ipv4_nh = v->nexthop };
        return bpf_redirect_neigh(v->ifindex, &nh, sizeof(nh), 0);
    }
    case MODE_MAC: {
        if (bpf_skb_change_head(skb, ETH_HLEN, 0)) return TC_ACT_SHOT;
        struct ethhdr eth;
        __builtin_memcpy(eth.h_dest, v->dmac, 6);
        __builtin_memcpy(eth.h_source, v->smac, 6);
        eth.h_proto = bpf_htons(ETH_P_IP);
        if (bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0)) return TC_ACT_SHOT;
        return bpf_redirect(v->ifindex, 0);
    }
    default:
        return bpf_redirect_neigh(v->ifindex, 0, 0, 0);
    }
}

SEC("tc")
int mat_in(struct __sk_buff *skb) {
    __u32 zero = 0;
    if (skb->protocol != bpf_htons(ETH_P_IP)) return TC_ACT_OK;
    void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
    struct iphdr *iph = (void *)((__u8 *)data + ETH_HLEN);
    if ((void *)(iph + 1) > end) return TC_ACT_OK;
    if (iph->ihl != 5 || (iph->frag_off & bpf_htons(FRAG_MASK))) return TC_ACT_OK;
    const struct config *c = bpf_map_lookup_elem(&cfg, &zero);
    if (!c || iph->daddr != c->mobile) return TC_ACT_OK;
    __u32 peerMoA = iph->saddr;
    const __u32 *hoa = bpf_map_lookup_elem(&in4, &peerMoA);
    if (!hoa) return TC_ACT_OK;
    __u32 peerHoA = *hoa, flags;
    int l4 = transport(skb, ETH_HLEN, iph->protocol, &flags, c, 1);
    if (l4 < 0) return TC_ACT_OK;
    if (c->guard && iph->protocol != IPPROTO_ICMP) {
        __u16 *ports = (void *)(iph + 1);
        if ((void *)(ports + 2) > end) return TC_ACT_OK;
        struct flow f = { .peer = peerMoA, .protocol = iph->protocol, .peerPort = ports[0], .localPort = ports[1] };
        if (bpf_map_lookup_elem(&moaflows, &f)) return TC_ACT_OK;
        __u32 service = (__u32)iph->protocol << 16 | bpf_ntohs(ports[1]);
        if (bpf_map_lookup_elem(&listen4, &service)) return TC_ACT_OK;
    }
    if (rewrite(skb, ETH_HLEN, l4, flags, peerMoA, peerHoA, c->mobile, c->home)) return TC_ACT_SHOT;
    skb->mark |= 0x10000000;  // FastPathRuleset.translatedMark: the host firewall's hint
    count(1);
    return TC_ACT_OK;
}

SEC("tc")
int mat_up(struct __sk_buff *skb) {
    __u32 zero = 0;
    if (skb->mark & HOA_TRAFFIC || skb->protocol != bpf_htons(ETH_P_IP)) return TC_ACT_OK;
    void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
    struct iphdr *iph = (void *)((__u8 *)data + ETH_HLEN);
    if ((void *)(iph + 1) > end) return TC_ACT_OK;
    if (iph->ihl != 5 || (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP)) return TC_ACT_OK;
    __u32 peer = iph->daddr;
    if (!bpf_map_lookup_elem(&in4, &peer)) return TC_ACT_OK;
    __u16 *ports = (void *)(iph + 1);
    if ((void *)(ports + 2) > end) return TC_ACT_OK;
    struct flow f = { .peer = peer, .protocol = iph->protocol, .peerPort = ports[1], .localPort = ports[0] };
    if (!bpf_map_lookup_elem(&moaflows, &f)) bpf_map_update_elem(&moaflows, &f, &zero, BPF_ANY);
    return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
