// libmnl, the rtnetlink uapi headers (raw netlink for events) and nf_tables' (counters read
// without nft, which reads every set element first).
#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nf_tables.h>
