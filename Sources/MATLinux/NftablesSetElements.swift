#if canImport(Glibc)
import Glibc
#endif
import CMnl

/// Reads a set's elements over nfnetlink (`NFT_MSG_GETSETELEM`), through libmnl.
///
/// nft's listing of a set (`nft list set`) reads it, then the JSON it prints must be parsed:
/// seconds at 100,000 elements. The kernel dumps the set's elements alone, with what is
/// left of each one's timeout in milliseconds (nft rounds it down to whole seconds).
public enum NftablesSetElements {
    /// One element of a set: its key, and for a set with timeouts, its timeout and what
    /// is left of it.
    public struct Element: Equatable, Sendable {
        /// The key's bytes as the kernel stores them (an address: network order).
        public var key: [UInt8]
        /// The element's own timeout (ms), when it differs from the set's (the kernel
        /// leaves it out for an element that has the set's).
        public var timeout: UInt64?
        /// What is left of the timeout (ms); nil for an element that never expires.
        public var expiration: UInt64?

        public init(key: [UInt8], timeout: UInt64? = nil, expiration: UInt64? = nil) {
            self.key = key
            self.timeout = timeout
            self.expiration = expiration
        }
    }

    /// The elements of set `set` in `family`'s (as ``NftablesCounters``) table `table`.
    /// Throws ENOENT when the table or the set is not there. Opens a netlink socket of
    /// its own in the calling thread's network namespace, so any thread may call it.
    public static func read(family: String, table: String, set: String) throws(SystemError) -> [Element] {
        var elements: [Element] = []
        try NftablesCounters.dump("read the elements of nftables set \(family) \(table) \(set)", family: family,
                                  request: NFT_MSG_GETSETELEM.rawValue,
                                  attributes: { message in
                                      mnl_attr_put_strz(message, UInt16(NFTA_SET_ELEM_LIST_TABLE.rawValue), table)
                                      mnl_attr_put_strz(message, UInt16(NFTA_SET_ELEM_LIST_SET.rawValue), set)
                                  }, datagram: { datagram, sequence, portID in
                                      let part = parse(datagram, sequence: sequence, portID: portID)
                                      elements += part.elements
                                      return part.end
                                  })
        return elements
    }

    /// The elements in one datagram of a dump answering request `sequence` from `portID`,
    /// and whether the dump ends there. Safe on any bytes, as ``NftablesCounters``'s:
    /// a message or attribute whose length does not fit ends the walk (messages) or is
    /// dropped (attributes), an element without a key is skipped.
    static func parse(_ datagram: UnsafeRawBufferPointer, sequence: UInt32, portID: UInt32) -> (elements: [Element], end: NftablesCounters.End) {
        var elements: [Element] = []
        let end = NftablesCounters.walk(datagram, sequence: sequence, portID: portID,
                                        type: NftablesCounters.messageType(UInt16(NFT_MSG_NEWSETELEM.rawValue))) { payload in
            guard payload.count >= MemoryLayout<nfgenmsg>.size else { return }
            let attributes = NftablesCounters.attributes(UnsafeRawBufferPointer(rebasing: payload[MemoryLayout<nfgenmsg>.size...]))
            for (kind, list) in attributes where kind == UInt16(NFTA_SET_ELEM_LIST_ELEMENTS.rawValue) {
                for (entry, data) in NftablesCounters.attributes(list) where entry == UInt16(NFTA_LIST_ELEM.rawValue) {
                    if let element = element(in: data) { elements.append(element) }
                }
            }
        }
        return (elements, end)
    }

    /// The element one NFTA_LIST_ELEM describes (nil without a key).
    private static func element(in data: UnsafeRawBufferPointer) -> Element? {
        var key: [UInt8]?
        var timeout: UInt64?
        var expiration: UInt64?
        for (kind, value) in NftablesCounters.attributes(data) {
            switch kind {
            case UInt16(NFTA_SET_ELEM_KEY.rawValue):
                for (field, bytes) in NftablesCounters.attributes(value) where field == UInt16(NFTA_DATA_VALUE.rawValue) {
                    key = Array(bytes)
                }
            case UInt16(NFTA_SET_ELEM_TIMEOUT.rawValue) where value.count == 8:
                timeout = UInt64(bigEndian: value.loadUnaligned(as: UInt64.self))
            case UInt16(NFTA_SET_ELEM_EXPIRATION.rawValue) where value.count == 8:
                expiration = UInt64(bigEndian: value.loadUnaligned(as: UInt64.self))
            default:
                continue
            }
        }
        guard let key else { return nil }
        return Element(key: key, timeout: timeout, expiration: expiration)
    }
}
