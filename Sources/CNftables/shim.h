// libnftables: nftables rulesets applied atomically through netlink, no `nft` process.
#include <nftables/libnftables.h>
