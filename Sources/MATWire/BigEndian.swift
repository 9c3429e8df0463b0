/// Big-endian (network order) integers at a given offset, for fixed layouts whose
/// length the caller has already checked (a header of known size). The subscripts still
/// trap rather than read out of bounds if a caller ever did not check.
///
/// Everything is `@inlinable`: the DNS server's and the packet path's callers are in
/// other modules, and a call per field would cost more than the field.
public enum BigEndian {
    /// The two bytes at `offset`.
    @inlinable @inline(__always)
    public static func u16<C: RandomAccessCollection<UInt8>>(_ bytes: C, at offset: Int) -> UInt16 where C.Index == Int {
        UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    /// The four bytes at `offset`.
    @inlinable @inline(__always)
    public static func u32<C: RandomAccessCollection<UInt8>>(_ bytes: C, at offset: Int) -> UInt32 where C.Index == Int {
        UInt32(u16(bytes, at: offset)) << 16 | UInt32(u16(bytes, at: offset + 2))
    }

    /// The six bytes at `offset` (a DNS TSIG time), in the low bits.
    @inlinable @inline(__always)
    public static func u48<C: RandomAccessCollection<UInt8>>(_ bytes: C, at offset: Int) -> UInt64 where C.Index == Int {
        UInt64(u16(bytes, at: offset)) << 32 | UInt64(u32(bytes, at: offset + 2))
    }

    /// The eight bytes at `offset`.
    @inlinable @inline(__always)
    public static func u64<C: RandomAccessCollection<UInt8>>(_ bytes: C, at offset: Int) -> UInt64 where C.Index == Int {
        UInt64(u32(bytes, at: offset)) << 32 | UInt64(u32(bytes, at: offset + 4))
    }
}

extension Array where Element == UInt8 {
    /// Appends `value` most significant byte first.
    @inlinable @inline(__always)
    public mutating func appendBigEndian<T: FixedWidthInteger & UnsignedInteger>(_ value: T) {
        var shift = T.bitWidth - 8
        while shift >= 0 {
            append(UInt8(truncatingIfNeeded: value >> shift))
            shift -= 8
        }
    }

    /// Appends the low 48 bits of `value` (a DNS TSIG time), most significant byte first.
    @inlinable @inline(__always)
    public mutating func appendBigEndian48(_ value: UInt64) {
        appendBigEndian(UInt16(truncatingIfNeeded: value >> 32))
        appendBigEndian(UInt32(truncatingIfNeeded: value))
    }

    /// Overwrites the two bytes at `offset` with `value` (a length known only after what
    /// it counts was written).
    @inlinable @inline(__always)
    public mutating func storeBigEndian(_ value: UInt16, at offset: Int) {
        self[offset] = UInt8(truncatingIfNeeded: value >> 8)
        self[offset + 1] = UInt8(truncatingIfNeeded: value)
    }
}
