/*
 * C reference of the MATPacket translator (see reference_translate.h). Each function
 * below names the Swift function it mirrors; the checks and their order are the same.
 */
#include "reference_translate.h"

#include <string.h>

/* The per-packet path is forced inline, as a C programmer tuning this loop would do;
 * only the cold paths (IPv4 options, ICMP quotes) stay out of line. */
#define INLINE static inline __attribute__((always_inline))

enum {
    PROTO_HOP_BY_HOP = 0, PROTO_ICMP = 1, PROTO_TCP = 6, PROTO_UDP = 17, PROTO_DCCP = 33,
    PROTO_ROUTING = 43, PROTO_FRAGMENT = 44, PROTO_ESP = 50, PROTO_AUTHENTICATION = 51,
    PROTO_ICMPV6 = 58, PROTO_NO_NEXT_HEADER = 59, PROTO_DESTINATION_OPTIONS = 60,
    PROTO_UDP_LITE = 136,
};

enum { MAXIMUM_EXTENSION_HEADERS = 16 };

/* ---- Loads and stores of network-order fields (loadUnaligned + bigEndian) ---- */

/* A network-order field of N bits: an unaligned load or store plus a byte swap. */
#define FIELD_ACCESSORS(bits)                                                          \
    INLINE uint##bits##_t load##bits(const uint8_t *base, long offset) {               \
        uint##bits##_t value;                                                          \
        memcpy(&value, base + offset, sizeof value);                                   \
        return __builtin_bswap##bits(value);                                           \
    }                                                                                  \
    INLINE void store##bits(uint8_t *base, long offset, uint##bits##_t value) {        \
        value = __builtin_bswap##bits(value);                                          \
        memcpy(base + offset, &value, sizeof value);                                   \
    }
FIELD_ACCESSORS(16)
FIELD_ACCESSORS(32)
FIELD_ACCESSORS(64)

INLINE uint8_t load8(const uint8_t *base, long offset) { return base[offset]; }

/* ---- InternetChecksum ---- */

INLINE uint16_t csum_fold(uint64_t sum) {
    uint64_t value = (sum & 0xFFFFFFFFu) + (sum >> 32);
    value = (value & 0xFFFF) + (value >> 16);
    value = (value & 0xFFFF) + (value >> 16);
    value = (value & 0xFFFF) + (value >> 16);
    return (uint16_t)value;
}

/* delta(replacing:with:): ~old + new (RFC 1624 eqn. 3). */
INLINE uint64_t csum_delta(uint64_t old_sum, uint64_t new_sum) {
    return (uint64_t)(uint16_t)~csum_fold(old_sum) + csum_fold(new_sum);
}

/* update(_:delta:): HC' = ~(~HC + delta). */
INLINE uint16_t csum_update(uint16_t checksum, uint64_t delta) {
    return (uint16_t)~csum_fold((uint64_t)(uint16_t)~checksum + delta);
}

/* updatePartial(_:delta:): the uncomplemented pseudo-header sum of a GSO packet. */
INLINE uint16_t csum_update_partial(uint16_t partial, uint64_t delta) {
    return csum_fold((uint64_t)partial + delta);
}

/* ---- TransportRules ---- */

INLINE long minimum_header(uint8_t proto) {
    switch (proto) {
    case PROTO_TCP: return 20;
    case PROTO_UDP: case PROTO_UDP_LITE: return 8;
    case PROTO_ICMP: case PROTO_ICMPV6: return 8;
    case PROTO_DCCP: return 12;
    default: return 0;
    }
}

/* Offset of a checksum covering the pseudo-header, or -1. */
INLINE long pseudo_header_checksum_offset(uint8_t proto) {
    switch (proto) {
    case PROTO_TCP: return 16;
    case PROTO_UDP: case PROTO_UDP_LITE: case PROTO_DCCP: return 6;
    case PROTO_ICMPV6: return 2;
    default: return -1;
    }
}

INLINE bool icmp_is_error(uint8_t type, bool icmpv6) {
    if (icmpv6) return type < 128;
    switch (type) {
    case 3: case 4: case 5: case 11: case 12: return true;
    default: return false;
    }
}

/* ---- Parsing (IPv4Parsing.swift, IPv6Parsing.swift, TransportParsing.swift) ---- */

/* ipv4OptionsKeepDestination: -1 when malformed, else 1 if the header's destination is
 * the pseudo-header's (no unfinished LSRR/SSRR), 0 if not. */
static int ipv4_options_keep_destination(const uint8_t *base, long header_length) {
    int keeps_destination = 1;
    long offset = 20;
    while (offset < header_length) {
        uint8_t type = load8(base, offset);
        if (type == 0) break;
        if (type == 1) {
            offset += 1;
            continue;
        }
        if (offset + 2 > header_length) return -1;
        long option_length = load8(base, offset + 1);
        if (option_length < 2 || offset + option_length > header_length) return -1;
        bool is_source_route = type == 131 || type == 137;
        if (is_source_route && option_length >= 3) {
            long pointer = load8(base, offset + 2);
            if (pointer + 3 <= option_length) keeps_destination = 0;
        }
        offset += option_length;
    }
    return keeps_destination;
}

/* IPv6ChainEnd */
struct chain_end {
    uint8_t next_header;
    long offset;
    bool is_fragment;
    bool is_later_fragment;
    bool pseudo_header_has_destination;
};

/* walkIPv6Chain */
INLINE int walk_ipv6_chain(const uint8_t *base, long header_start, long end, uint8_t first_header,
                           struct chain_end *chain) {
    chain->next_header = first_header;
    chain->offset = header_start + 40;
    chain->is_fragment = false;
    chain->is_later_fragment = false;
    chain->pseudo_header_has_destination = true;
    int headers_seen = 0;
    for (;;) {
        long offset = chain->offset;
        long header_length;
        switch (chain->next_header) {
        case PROTO_HOP_BY_HOP: case PROTO_ROUTING: case PROTO_DESTINATION_OPTIONS:
            if (chain->next_header == PROTO_HOP_BY_HOP && offset != header_start + 40)
                return REF_DROP_MISPLACED_HOP_BY_HOP;
            if (offset + 8 > end) return REF_DROP_EXTENSION_HEADER_TRUNCATED;
            header_length = ((long)load8(base, offset + 1) + 1) * 8;
            if (chain->next_header == PROTO_ROUTING && load8(base, offset + 3) != 0)
                chain->pseudo_header_has_destination = false;
            break;
        case PROTO_FRAGMENT: {
            header_length = 8;
            if (offset + 8 > end) return REF_DROP_EXTENSION_HEADER_TRUNCATED;
            uint16_t field = load16(base, offset + 2);
            chain->is_fragment = true;
            chain->is_later_fragment = (field >> 3) != 0;
            break;
        }
        case PROTO_AUTHENTICATION:
            if (offset + 8 > end) return REF_DROP_EXTENSION_HEADER_TRUNCATED;
            header_length = ((long)load8(base, offset + 1) + 2) * 4;
            break;
        default:
            return REF_OK;
        }
        if (offset + header_length > end) return REF_DROP_EXTENSION_HEADER_TRUNCATED;
        headers_seen += 1;
        if (headers_seen > MAXIMUM_EXTENSION_HEADERS) return REF_DROP_TOO_MANY_EXTENSION_HEADERS;
        chain->next_header = load8(base, offset);
        chain->offset = offset + header_length;
        if (chain->is_later_fragment) return REF_OK;
    }
}

/* parseQuote */
static int parse_quote(const uint8_t *base, uint8_t family, long start, long end, struct ref_quote *quote) {
    long length = end - start;
    quote->offset = start;
    quote->length = length;
    quote->transport_checksum_offset = -1;
    quote->transport_is_udp = false;
    quote->pseudo_header_has_destination = true;
    long transport_start;
    uint8_t proto;
    if (family == 4) {
        if (length < 20 || load8(base, start) >> 4 != 4) return REF_DROP_BAD_ICMP_QUOTE;
        long header_length = (long)(load8(base, start) & 0x0F) * 4;
        if (header_length < 20 || header_length > length) return REF_DROP_BAD_ICMP_QUOTE;
        int keeps_destination = ipv4_options_keep_destination(base + start, header_length);
        if (keeps_destination < 0) return REF_DROP_BAD_ICMP_QUOTE;
        quote->pseudo_header_has_destination = keeps_destination;
        if ((load16(base, start + 6) & 0x1FFF) != 0) return REF_OK;
        transport_start = start + header_length;
        proto = load8(base, start + 9);
    } else {
        if (length < 40 || load8(base, start) >> 4 != 6) return REF_DROP_BAD_ICMP_QUOTE;
        /* A quote cut inside its extension headers is normal: translate its addresses only. */
        struct chain_end chain;
        if (walk_ipv6_chain(base, start, end, load8(base, start + 6), &chain) != REF_OK) return REF_OK;
        quote->pseudo_header_has_destination = chain.pseudo_header_has_destination;
        if (chain.is_later_fragment) return REF_OK;
        transport_start = chain.offset;
        proto = chain.next_header;
    }
    long checksum_offset = pseudo_header_checksum_offset(proto);
    if (checksum_offset >= 0 && transport_start + checksum_offset + 2 <= end) {
        quote->transport_checksum_offset = transport_start + checksum_offset;
        quote->transport_is_udp = proto == PROTO_UDP;
    }
    return REF_OK;
}

/* PacketLayout.parseTransport */
INLINE int parse_transport(const uint8_t *base, long offset, struct ref_layout *layout) {
    uint8_t proto = layout->transport_protocol;
    long available = layout->packet_length - offset;
    if (available < minimum_header(proto)) return REF_DROP_TRANSPORT_TRUNCATED;
    if (proto == PROTO_TCP) {
        long data_offset = (long)(load8(base, offset + 12) >> 4) * 4;
        if (data_offset < 20 || data_offset > available) return REF_DROP_BAD_TCP_HEADER_LENGTH;
    }
    layout->transport_offset = offset;
    bool is_icmp = layout->family == 4 ? proto == PROTO_ICMP : proto == PROTO_ICMPV6;
    if (is_icmp && icmp_is_error(load8(base, offset), layout->family == 6)) {
        /* A local, so that `layout` does not escape into the out-of-line call. */
        struct ref_quote quote;
        int result = parse_quote(base, layout->family, offset + 8, layout->packet_length, &quote);
        if (result != REF_OK) return result;
        layout->quote = quote;
        layout->has_quote = true;
    }
    return REF_OK;
}

INLINE void layout_init(struct ref_layout *layout, uint8_t family, long packet_length, uint8_t proto,
                        bool is_fragment, bool pseudo_header_has_destination) {
    layout->family = family;
    layout->packet_length = packet_length;
    layout->transport_offset = -1;
    layout->transport_protocol = proto;
    layout->is_fragment = is_fragment;
    layout->pseudo_header_has_destination = pseudo_header_has_destination;
    layout->has_quote = false;
}

/* parseIPv4 */
INLINE int parse_ipv4(const uint8_t *base, long length, struct ref_layout *layout) {
    if (length < 20) return REF_DROP_TRUNCATED;
    long header_length = (long)(load8(base, 0) & 0x0F) * 4;
    if (header_length < 20 || header_length > length) return REF_DROP_BAD_IPV4_HEADER_LENGTH;
    long total_length = load16(base, 2);
    if (total_length < header_length || total_length > length) return REF_DROP_BAD_IPV4_TOTAL_LENGTH;
    bool pseudo_header_has_destination = true;
    if (header_length > 20) {
        int keeps_destination = ipv4_options_keep_destination(base, header_length);
        if (keeps_destination < 0) return REF_DROP_BAD_IPV4_OPTIONS;
        pseudo_header_has_destination = keeps_destination;
    }
    uint16_t fragment_field = load16(base, 6);
    uint16_t fragment_offset = fragment_field & 0x1FFF;
    bool more_fragments = (fragment_field & 0x2000) != 0;
    layout_init(layout, 4, total_length, load8(base, 9), fragment_offset != 0 || more_fragments,
                pseudo_header_has_destination);
    /* Only the first fragment holds the transport header and its checksum. */
    if (fragment_offset == 0) return parse_transport(base, header_length, layout);
    return REF_OK;
}

/* parseIPv6 */
INLINE int parse_ipv6(const uint8_t *base, long length, struct ref_layout *layout) {
    if (length < 40) return REF_DROP_TRUNCATED;
    long payload_length = load16(base, 4);
    uint8_t first_header = load8(base, 6);
    long packet_length = 40 + payload_length;
    if (packet_length > length || (payload_length == 0 && first_header != PROTO_NO_NEXT_HEADER))
        return REF_DROP_BAD_IPV6_PAYLOAD_LENGTH;
    struct chain_end end;
    int result = walk_ipv6_chain(base, 0, packet_length, first_header, &end);
    if (result != REF_OK) return result;
    layout_init(layout, 6, packet_length, end.next_header, end.is_fragment,
                end.pseudo_header_has_destination);
    bool carries_transport = !end.is_later_fragment && end.next_header != PROTO_ESP
        && end.next_header != PROTO_NO_NEXT_HEADER;
    if (carries_transport) return parse_transport(base, end.offset, layout);
    return REF_OK;
}

/* PacketLayout.parse */
INLINE int parse(const uint8_t *base, long length, struct ref_layout *layout) {
    if (length < 1) return REF_DROP_TRUNCATED;
    switch (load8(base, 0) >> 4) {
    case 4: return parse_ipv4(base, length, layout);
    case 6: return parse_ipv6(base, length, layout);
    default: return REF_DROP_UNSUPPORTED_VERSION;
    }
}

int ref_parse(const uint8_t *base, long length, struct ref_layout *layout) {
    return parse(base, length, layout);
}

/* ---- Translation (Translator.swift) ---- */

/* Translator.replace: writes the new address and returns the checksum delta, or 0 when
 * there is nothing to change (RFC 1624 erratum 4782). `family` is a constant wherever this
 * is inlined, as the Swift generic is specialised per address type. */
INLINE uint64_t replace(uint8_t *base, long offset, uint8_t family, const void *new_address) {
    if (!new_address) return 0;
    if (family == 4) {
        uint32_t new_value = *(const uint32_t *)new_address;
        uint32_t old_value = load32(base, offset);
        if (old_value == new_value) return 0;
        store32(base, offset, new_value);
        return csum_delta((uint64_t)(old_value >> 16) + (old_value & 0xFFFF),
                          (uint64_t)(new_value >> 16) + (new_value & 0xFFFF));
    }
    const struct ref_ipv6 *new_value = new_address;
    struct ref_ipv6 old_value = { load64(base, offset), load64(base, offset + 8) };
    if (old_value.high == new_value->high && old_value.low == new_value->low) return 0;
    store64(base, offset, new_value->high);
    store64(base, offset + 8, new_value->low);
    return csum_delta(
        (old_value.high >> 32) + (old_value.high & 0xFFFFFFFFu) + (old_value.low >> 32) + (old_value.low & 0xFFFFFFFFu),
        (new_value->high >> 32) + (new_value->high & 0xFFFFFFFFu) + (new_value->low >> 32) + (new_value->low & 0xFFFFFFFFu));
}

/* Translator.updateChecksumField: returns the delta of the field's own change. */
INLINE uint64_t update_checksum_field(uint8_t *base, long offset, uint64_t delta, bool zero_means_none) {
    if (delta == 0) return 0;
    uint16_t old_value = load16(base, offset);
    if (zero_means_none && old_value == 0) return 0;
    uint16_t new_value = csum_update(old_value, delta);
    if (zero_means_none && new_value == 0) new_value = 0xFFFF;
    store16(base, offset, new_value);
    return csum_delta(old_value, new_value);
}

/* Translator.translateQuote */
INLINE uint64_t translate_quote(uint8_t *base, const struct ref_quote *quote, uint8_t family,
                                const void *source, const void *destination) {
    bool v4 = family == 4;
    long start = quote->offset;
    uint64_t source_delta = replace(base, start + (v4 ? 12 : 8), family, source);
    uint64_t destination_delta = replace(base, start + (v4 ? 16 : 24), family, destination);
    if ((source_delta | destination_delta) == 0) return 0;
    uint64_t outer_delta = source_delta + destination_delta;
    if (v4) outer_delta += update_checksum_field(base, start + 10, source_delta + destination_delta, false);
    if (quote->transport_checksum_offset >= 0) {
        uint64_t pseudo_delta = source_delta + (quote->pseudo_header_has_destination ? destination_delta : 0);
        outer_delta += update_checksum_field(base, quote->transport_checksum_offset, pseudo_delta,
                                             quote->transport_is_udp);
    }
    return outer_delta;
}

/* Translator.translate(_:layout:rewrite:quoteRewrite:checksum:) */
INLINE int translate(uint8_t *base, const struct ref_layout *layout, uint8_t family,
                     const void *source, const void *destination,
                     const void *quote_source, const void *quote_destination,
                     long partial_start, long partial_offset) {
    if (family != layout->family) return REF_DROP_ADDRESS_FAMILY_MISMATCH;
    long partial_field = -1;
    if (partial_start >= 0) {
        if (partial_offset < 0 || partial_start + partial_offset + 2 > layout->packet_length)
            return REF_DROP_BAD_PARTIAL_CHECKSUM_OFFSET;
        partial_field = partial_start + partial_offset;
    }

    uint64_t source_delta = replace(base, family == 4 ? 12 : 8, family, source);
    uint64_t destination_delta = replace(base, family == 4 ? 16 : 24, family, destination);
    if (family == 4 && (source_delta | destination_delta) != 0)
        update_checksum_field(base, 10, source_delta + destination_delta, false);
    uint64_t pseudo_delta = source_delta + (layout->pseudo_header_has_destination ? destination_delta : 0);

    uint64_t quote_delta = 0;
    if (layout->has_quote)
        quote_delta = translate_quote(base, &layout->quote, family, quote_source, quote_destination);
    /* A partial sum covers only the pseudo-header; the data is summed by whoever completes it. */
    if (partial_field >= 0) {
        if (pseudo_delta != 0)
            store16(base, partial_field, csum_update_partial(load16(base, partial_field), pseudo_delta));
        return REF_OK;
    }
    long transport = layout->transport_offset;
    if (transport < 0) return REF_OK;
    uint8_t proto = layout->transport_protocol;
    long checksum_offset = pseudo_header_checksum_offset(proto);
    if (checksum_offset >= 0)
        update_checksum_field(base, transport + checksum_offset, pseudo_delta + quote_delta, proto == PROTO_UDP);
    else if (quote_delta != 0)
        update_checksum_field(base, transport + 2, quote_delta, false);
    return REF_OK;
}

int ref_translate_ipv4(uint8_t *base, const struct ref_layout *layout,
                       const uint32_t *source, const uint32_t *destination,
                       const uint32_t *quote_source, const uint32_t *quote_destination,
                       long partial_start, long partial_offset) {
    return translate(base, layout, 4, source, destination, quote_source, quote_destination,
                     partial_start, partial_offset);
}

int ref_translate_ipv6(uint8_t *base, const struct ref_layout *layout,
                       const struct ref_ipv6 *source, const struct ref_ipv6 *destination,
                       const struct ref_ipv6 *quote_source, const struct ref_ipv6 *quote_destination,
                       long partial_start, long partial_offset) {
    return translate(base, layout, 6, source, destination, quote_source, quote_destination,
                     partial_start, partial_offset);
}

/* ---- The benchmark loop (TranslateBench.swift's swiftTranslateRing) ---- */

INLINE uint64_t translate_ring(uint8_t *ring, long stride, long count, long length, long passes,
                               uint8_t family, const void *hoa_source, const void *hoa_destination,
                               const void *moa_source, const void *moa_destination,
                               long partial_start, long partial_offset) {
    uint64_t result = 0;
    for (long pass = 0; pass < passes; pass++) {
        bool to_moa = (pass & 1) == 0;
        const void *source = to_moa ? moa_source : hoa_source;
        const void *destination = to_moa ? moa_destination : hoa_destination;
        uint8_t *packet = ring;
        for (long index = 0; index < count; index++) {
            struct ref_layout layout;
            int status = parse(packet, length, &layout);
            if (status == REF_OK)
                status = translate(packet, &layout, family, source, destination, NULL, NULL,
                                   partial_start, partial_offset);
            result += status == REF_OK ? (uint64_t)layout.packet_length : (uint64_t)status << 32;
            packet += stride;
        }
    }
    return result;
}

uint64_t ref_translate_ring_ipv4(uint8_t *ring, long stride, long count, long length, long passes,
                                 uint32_t hoa_source, uint32_t hoa_destination,
                                 uint32_t moa_source, uint32_t moa_destination,
                                 long partial_start, long partial_offset) {
    return translate_ring(ring, stride, count, length, passes, 4, &hoa_source, &hoa_destination,
                          &moa_source, &moa_destination, partial_start, partial_offset);
}

uint64_t ref_translate_ring_ipv6(uint8_t *ring, long stride, long count, long length, long passes,
                                 struct ref_ipv6 hoa_source, struct ref_ipv6 hoa_destination,
                                 struct ref_ipv6 moa_source, struct ref_ipv6 moa_destination,
                                 long partial_start, long partial_offset) {
    return translate_ring(ring, stride, count, length, passes, 6, &hoa_source, &hoa_destination,
                          &moa_source, &moa_destination, partial_start, partial_offset);
}
