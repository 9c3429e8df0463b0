extension PacketLayout {
    /// Parses an IPv4 header (RFC 791) and whatever follows it.
    @usableFromInline @_transparent
    static func parseIPv4(_ base: UnsafeRawPointer, length: Int) throws(DropReason) -> PacketLayout {
        guard length >= 20 else { throw .truncated }
        let headerLength = Int(base.load(as: UInt8.self) & 0x0F) &* 4
        guard headerLength >= 20, headerLength <= length else { throw .badIPv4HeaderLength }
        let totalLength = Int(UInt16(bigEndian: base.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
        guard totalLength >= headerLength, totalLength <= length else { throw .badIPv4TotalLength }
        var pseudoHeaderHasDestination = true
        if headerLength > 20 {
            guard let hasDestination = ipv4OptionsKeepDestination(base, headerLength: headerLength) else {
                throw .badIPv4Options
            }
            pseudoHeaderHasDestination = hasDestination
        }
        let fragmentField = UInt16(bigEndian: base.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
        let fragmentOffset = fragmentField & 0x1FFF
        let moreFragments = fragmentField & 0x2000 != 0
        var layout = PacketLayout(
            family: .ipv4,
            packetLength: totalLength,
            transportProtocol: base.load(fromByteOffset: 9, as: UInt8.self),
            isFragment: fragmentOffset != 0 || moreFragments,
            pseudoHeaderHasDestination: pseudoHeaderHasDestination
        )
        // Only the first fragment holds the transport header and its checksum.
        if fragmentOffset == 0 {
            try layout.parseTransport(base, at: headerLength)
        }
        return layout
    }

    /// Walks IPv4 options. Returns nil when one is malformed, otherwise whether the
    /// header's destination is also the pseudo-header's: an unfinished loose or strict
    /// source route means the sender summed the route's final address instead.
    @inlinable
    static func ipv4OptionsKeepDestination(_ base: UnsafeRawPointer, headerLength: Int) -> Bool? {
        var keepsDestination = true
        var offset = 20
        while offset < headerLength {
            let type = base.load(fromByteOffset: offset, as: UInt8.self)
            if type == 0 { break }
            if type == 1 {
                offset += 1
                continue
            }
            guard offset + 2 <= headerLength else { return nil }
            let optionLength = Int(base.load(fromByteOffset: offset + 1, as: UInt8.self))
            guard optionLength >= 2, offset + optionLength <= headerLength else { return nil }
            let isSourceRoute = type == 131 || type == 137
            if isSourceRoute && optionLength >= 3 {
                let pointer = Int(base.load(fromByteOffset: offset + 2, as: UInt8.self))
                if pointer + 3 <= optionLength { keepsDestination = false }
            }
            offset += optionLength
        }
        return keepsDestination
    }
}
