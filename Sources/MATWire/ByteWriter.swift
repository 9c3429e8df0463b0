/// Appends big-endian integers to a byte array. A conforming type supplies the array
/// (and may keep more state beside it, such as a DNS name compression table); the
/// writes come from this protocol's extension.
public protocol ByteWriting {
    /// Everything written so far.
    var bytes: [UInt8] { get set }
}

extension ByteWriting {
    /// Appends one byte.
    @inlinable @inline(__always)
    public mutating func u8(_ value: UInt8) { bytes.append(value) }

    /// Appends a big-endian `UInt16`.
    @inlinable @inline(__always)
    public mutating func u16(_ value: UInt16) { bytes.appendBigEndian(value) }

    /// Appends a big-endian `UInt32`.
    @inlinable @inline(__always)
    public mutating func u32(_ value: UInt32) { bytes.appendBigEndian(value) }

    /// Appends the low 48 bits of `value`, big-endian (a DNS TSIG time).
    @inlinable @inline(__always)
    public mutating func u48(_ value: UInt64) { bytes.appendBigEndian48(value) }

    /// Appends a big-endian `UInt64`.
    @inlinable @inline(__always)
    public mutating func u64(_ value: UInt64) { bytes.appendBigEndian(value) }

    /// Appends bytes as they are.
    @inlinable
    public mutating func append<C: Collection>(_ data: C) where C.Element == UInt8 { bytes.append(contentsOf: data) }

    /// Overwrites the two bytes at `offset` (a length known only after what it counts).
    @inlinable
    public mutating func patchU16(at offset: Int, _ value: UInt16) { bytes.storeBigEndian(value, at: offset) }
}

/// A plain byte array to write into (file records, signed messages).
public struct ByteWriter: ByteWriting, Sendable {
    public var bytes: [UInt8]

    /// An empty writer that can hold `capacity` bytes before it grows.
    @inlinable
    public init(capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }
}
