/*
 * C reference of the MATPacket translator, used only by the benchmark (mat-bench).
 *
 * It does the same work per packet as `PacketLayout.parse` followed by
 * `Translator.translate` (Sources/MATPacket): the same validation, the same
 * extension-header walk, the same ICMP error quote detection, and the same RFC 1624
 * incremental checksum updates, with the same data representation (IPv4 addresses as a
 * host-order uint32, IPv6 addresses as two host-order uint64 halves, unfolded 64-bit
 * one's-complement sums folded once). Keep the two in step: a C side that skips a check
 * the Swift side makes, or does one more, would bias the comparison.
 */
#ifndef MAT_REFERENCE_TRANSLATE_H
#define MAT_REFERENCE_TRANSLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Success, or why a packet was refused: REF_DROP_x == 1 + DropReason.x.rawValue. */
enum ref_result {
    REF_OK = 0,
    REF_DROP_TRUNCATED,
    REF_DROP_UNSUPPORTED_VERSION,
    REF_DROP_BAD_IPV4_HEADER_LENGTH,
    REF_DROP_BAD_IPV4_TOTAL_LENGTH,
    REF_DROP_BAD_IPV4_OPTIONS,
    REF_DROP_BAD_IPV6_PAYLOAD_LENGTH,
    REF_DROP_EXTENSION_HEADER_TRUNCATED,
    REF_DROP_TOO_MANY_EXTENSION_HEADERS,
    REF_DROP_MISPLACED_HOP_BY_HOP,
    REF_DROP_TRANSPORT_TRUNCATED,
    REF_DROP_BAD_TCP_HEADER_LENGTH,
    REF_DROP_BAD_ICMP_QUOTE,
    REF_DROP_ADDRESS_FAMILY_MISMATCH,
    REF_DROP_BAD_PARTIAL_CHECKSUM_OFFSET,
};

/* An IPv6 address as MATPacket's IPv6Address holds it: bytes 0-7 and 8-15, host order. */
struct ref_ipv6 {
    uint64_t high;
    uint64_t low;
};

/* The packet an ICMP error quotes (QuotedPacket). Offsets are from the outer IP header. */
struct ref_quote {
    long offset;
    long length;
    long transport_checksum_offset; /* -1: none */
    bool transport_is_udp;
    bool pseudo_header_has_destination;
};

/* Where the parts of one packet sit (PacketLayout). */
struct ref_layout {
    uint8_t family; /* 4 or 6 */
    uint8_t transport_protocol;
    bool is_fragment;
    bool pseudo_header_has_destination;
    bool has_quote;
    long packet_length;
    long transport_offset; /* -1: no transport header of its own */
    struct ref_quote quote;
};

/* PacketLayout.parse: validates the packet at `base` and fills `layout`. */
int ref_parse(const uint8_t *base, long length, struct ref_layout *layout);

/*
 * Translator.translate for one family. A NULL address leaves that field alone.
 * `partial_start` < 0 means a complete transport checksum (ChecksumMode.complete);
 * otherwise ChecksumMode.partial(start: partial_start, offset: partial_offset).
 */
int ref_translate_ipv4(uint8_t *base, const struct ref_layout *layout,
                       const uint32_t *source, const uint32_t *destination,
                       const uint32_t *quote_source, const uint32_t *quote_destination,
                       long partial_start, long partial_offset);
int ref_translate_ipv6(uint8_t *base, const struct ref_layout *layout,
                       const struct ref_ipv6 *source, const struct ref_ipv6 *destination,
                       const struct ref_ipv6 *quote_source, const struct ref_ipv6 *quote_destination,
                       long partial_start, long partial_offset);

/*
 * The benchmark loop: `passes` passes over `count` packets of `length` bytes laid out
 * every `stride` bytes from `ring`. Even passes rewrite source -> `moa_source` and
 * destination -> `moa_destination`, odd passes back to the `hoa_*` addresses, each
 * packet parsed then translated. Returns the sum of the packet lengths found, plus
 * 2^32 times (1 + reason) for each dropped packet.
 */
uint64_t ref_translate_ring_ipv4(uint8_t *ring, long stride, long count, long length, long passes,
                                 uint32_t hoa_source, uint32_t hoa_destination,
                                 uint32_t moa_source, uint32_t moa_destination,
                                 long partial_start, long partial_offset);
uint64_t ref_translate_ring_ipv6(uint8_t *ring, long stride, long count, long length, long passes,
                                 struct ref_ipv6 hoa_source, struct ref_ipv6 hoa_destination,
                                 struct ref_ipv6 moa_source, struct ref_ipv6 moa_destination,
                                 long partial_start, long partial_offset);

#ifdef __cplusplus
}
#endif

#endif
