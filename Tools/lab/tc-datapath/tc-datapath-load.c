// Loads Tools/lab/tc-datapath/tc-datapath.bpf.o into the current network namespace and
// attaches it (a measurement aid of issue 14, run by Tools/lab/bench-udp64-bpf):
//
//   tc-datapath-load OBJ MODE TUN UPLINK HOA MOA PORT1 PORT2 [PEER_HOA PEER_MOA NEXTHOP NEXTHOP_MAC]...
//   tc-datapath-load OBJ MODE TUN UPLINK ... with TUN "-": no egress program (inbound only)
//   with UPLINK given as "-egress-only:NAME": no ingress program (outbound only) on NAME
//   with UPLINK given as "-guard:NAME": MoA-to-MoA flows guarded (mat_up on NAME's egress)
//
// MODE is the struct config mode of tc-datapath.bpf.c (0 route, 1 next hop, 2 MAC). The
// programs go on clsact qdiscs (egress of TUN, ingress of UPLINK), which it creates; the
// caller removes them (`tc qdisc del dev X clsact`), and with them the programs and maps.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/ether.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

struct config { __u32 home, mobile, mode; __u16 ports[2]; __u32 guard; };
struct out_value { __u32 moa, nexthop, ifindex; __u8 dmac[6], smac[6]; };

static void die(const char *what, int err) {
    fprintf(stderr, "tc-datapath-load: %s: %s\n", what, strerror(err < 0 ? -err : err));
    exit(1);
}

static __u32 address(const char *text) {
    struct in_addr a;
    if (inet_pton(AF_INET, text, &a) != 1) { fprintf(stderr, "tc-datapath-load: bad address %s\n", text); exit(2); }
    return a.s_addr;
}

static void attach(struct bpf_object *obj, const char *program, const char *dev, enum bpf_tc_attach_point point) {
    struct bpf_program *p = bpf_object__find_program_by_name(obj, program);
    if (!p) die(program, ENOENT);
    int ifindex = if_nametoindex(dev);
    if (!ifindex) die(dev, errno);
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point);
    int err = bpf_tc_hook_create(&hook);
    if (err && err != -EEXIST) die("clsact", err);
    LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = bpf_program__fd(p));
    if ((err = bpf_tc_attach(&hook, &opts))) die(program, err);
}

int main(int argc, char **argv) {
    if (argc < 9 || (argc - 9) % 4) {
        fprintf(stderr, "usage: tc-datapath-load OBJ MODE TUN UPLINK HOA MOA PORT1 PORT2 [PEER_HOA PEER_MOA NEXTHOP NEXTHOP_MAC]...\n");
        return 2;
    }
    const char *tun = argv[3], *uplink = argv[4];
    int inbound = 1;
    int guard = 0;
    if (!strncmp(uplink, "-egress-only:", 13)) { uplink += 13; inbound = 0; }
    if (!strncmp(uplink, "-guard:", 7)) { uplink += 7; guard = 1; }
    struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
    int err = libbpf_get_error(obj);
    if (err) die("open", err);
    if ((err = bpf_object__load(obj))) die("load", err);
    int uplinkIndex = if_nametoindex(uplink);
    if (!uplinkIndex) die(uplink, errno);

    // The uplink's own MAC, for MODE_MAC.
    struct ifreq ifr = { 0 };
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", uplink);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0 || ioctl(s, SIOCGIFHWADDR, &ifr)) die("SIOCGIFHWADDR", errno);
    close(s);

    struct config c = { .home = address(argv[5]), .mobile = address(argv[6]), .mode = atoi(argv[2]),
                        .ports = { htons(atoi(argv[7])), htons(atoi(argv[8])) }, .guard = guard };
    __u32 zero = 0;
    if ((err = bpf_map_update_elem(bpf_object__find_map_fd_by_name(obj, "cfg"), &zero, &c, BPF_ANY))) die("cfg", errno);
    for (int i = 9; i < argc; i += 4) {
        __u32 hoa = address(argv[i]), moa = address(argv[i + 1]);
        struct out_value v = { .moa = moa, .nexthop = address(argv[i + 2]), .ifindex = uplinkIndex };
        struct ether_addr *mac = ether_aton(argv[i + 3]);
        if (!mac) { fprintf(stderr, "tc-datapath-load: bad MAC %s\n", argv[i + 3]); return 2; }
        memcpy(v.dmac, mac, 6);
        memcpy(v.smac, ifr.ifr_hwaddr.sa_data, 6);
        if (bpf_map_update_elem(bpf_object__find_map_fd_by_name(obj, "out4"), &hoa, &v, BPF_ANY)) die("out4", errno);
        if (bpf_map_update_elem(bpf_object__find_map_fd_by_name(obj, "in4"), &moa, &hoa, BPF_ANY)) die("in4", errno);
    }
    if (strcmp(tun, "-")) attach(obj, "mat_out", tun, BPF_TC_EGRESS);
    if (inbound) attach(obj, "mat_in", uplink, BPF_TC_INGRESS);
    if (guard) attach(obj, "mat_up", uplink, BPF_TC_EGRESS);
    return 0;
}
