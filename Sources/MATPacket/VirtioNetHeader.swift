/// The `struct virtio_net_hdr` a TUN device opened with `IFF_VNET_HDR` puts in front of
/// every packet: how the kernel segmented (or wants segmented) a GSO super-packet, and
/// where a partial checksum sits. Fields are in host byte order (legacy virtio on a
/// little-endian host, which is what TUN uses unless told otherwise).
public struct VirtioNetHeader: Sendable, Equatable {
    /// The header's size on the wire.
    public static let size = 10

    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `checksumStart + checksumOffset`
    /// holds the pseudo-header sum and must still be completed.
    public static let needsChecksum: UInt8 = 1
    /// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was already verified.
    public static let dataValid: UInt8 = 2

    /// GSO types (`VIRTIO_NET_HDR_GSO_*`).
    public enum GSOType: UInt8, Sendable {
        case none = 0
        case tcpv4 = 1
        case udp = 3
        case tcpv6 = 4
        case udpL4 = 5
    }

    public var flags: UInt8
    /// The raw GSO type, with the ECN bit (0x80) kept.
    public var gsoTypeRaw: UInt8
    public var headerLength: UInt16
    public var gsoSize: UInt16
    public var checksumStart: UInt16
    public var checksumOffset: UInt16

    /// Reads the header at `base`; the caller guarantees `size` bytes are there.
    @inlinable
    public init(loadingFrom base: UnsafeRawPointer) {
        flags = base.load(as: UInt8.self)
        gsoTypeRaw = base.load(fromByteOffset: 1, as: UInt8.self)
        headerLength = UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        gsoSize = UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        checksumStart = UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
        checksumOffset = UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 8, as: UInt16.self))
    }

    /// A header for a plain packet: no GSO, checksum complete.
    public init() {
        flags = 0
        gsoTypeRaw = 0
        headerLength = 0
        gsoSize = 0
        checksumStart = 0
        checksumOffset = 0
    }

    /// Writes the header at `base`.
    @inlinable
    public func store(to base: UnsafeMutableRawPointer) {
        base.storeBytes(of: flags, as: UInt8.self)
        base.storeBytes(of: gsoTypeRaw, toByteOffset: 1, as: UInt8.self)
        base.storeBytes(of: headerLength.littleEndian, toByteOffset: 2, as: UInt16.self)
        base.storeBytes(of: gsoSize.littleEndian, toByteOffset: 4, as: UInt16.self)
        base.storeBytes(of: checksumStart.littleEndian, toByteOffset: 6, as: UInt16.self)
        base.storeBytes(of: checksumOffset.littleEndian, toByteOffset: 8, as: UInt16.self)
    }

    /// How the translator must treat the transport checksum of the packet behind this header.
    @inlinable
    public var checksumMode: ChecksumMode {
        flags & Self.needsChecksum != 0
            ? .partial(start: Int(checksumStart), offset: Int(checksumOffset))
            : .complete
    }
}
