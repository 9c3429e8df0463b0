/// The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
///
/// Sums are kept unfolded in a `UInt64` while they are built, so adding words never needs a
/// carry chain, and folded to 16 bits once at the end. All 16-bit values in and out of this
/// type are in host order, as read with `UInt16(bigEndian:)` from the wire.
public enum InternetChecksum {
    /// The one's-complement sum of `count` bytes at `base`, read as big-endian 16-bit words,
    /// folded to 16 bits. A trailing odd byte counts as the high byte of a final word.
    ///
    /// Four independent accumulators over native-order 32-bit loads let the compiler keep
    /// several additions in flight; byte order does not change a one's-complement sum
    /// (RFC 1071 section 2), so the result is swapped to big-endian once at the end.
    @inlinable
    public static func sum(_ base: UnsafeRawPointer, count: Int) -> UInt16 {
        var a: UInt64 = 0, b: UInt64 = 0, c: UInt64 = 0, d: UInt64 = 0
        var offset = 0
        while offset + 16 <= count {
            a &+= UInt64(base.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
            b &+= UInt64(base.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self))
            c &+= UInt64(base.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self))
            d &+= UInt64(base.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
            offset += 16
        }
        while offset + 4 <= count {
            a &+= UInt64(base.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
            offset += 4
        }
        if offset + 2 <= count {
            b &+= UInt64(base.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
            offset += 2
        }
        if offset < count {
            // A lone final byte is the high byte of a big-endian word, which is the low
            // byte in a little-endian host's native-order sum.
            let last = UInt64(base.load(fromByteOffset: offset, as: UInt8.self))
            #if _endian(little)
            c &+= last
            #else
            c &+= last << 8
            #endif
        }
        let native = fold(a &+ b &+ c &+ d)
        #if _endian(little)
        return native.byteSwapped
        #else
        return native
        #endif
    }

    /// Folds an unfolded one's-complement sum to 16 bits with end-around carries.
    ///
    /// A positive sum never folds to 0, so every residue has one representation
    /// (0xFFFF stands for zero), which is what makes incremental and full results agree.
    @inlinable @inline(__always)
    public static func fold(_ sum: UInt64) -> UInt16 {
        var value = (sum & 0xFFFF_FFFF) &+ (sum >> 32)
        value = (value & 0xFFFF) &+ (value >> 16)
        value = (value & 0xFFFF) &+ (value >> 16)
        value = (value & 0xFFFF) &+ (value >> 16)
        return UInt16(truncatingIfNeeded: value)
    }

    /// The checksum field value for data whose unfolded word sum is `sum`.
    @inlinable @inline(__always)
    public static func finish(_ sum: UInt64) -> UInt16 { ~fold(sum) }

    /// The value to add to a sum when words whose sum is `old` are replaced by words whose
    /// sum is `new`: `~old + new`, as in RFC 1624 equation 3.
    @inlinable @inline(__always)
    public static func delta(replacing old: UInt64, with new: UInt64) -> UInt64 {
        UInt64(~fold(old)) &+ UInt64(fold(new))
    }

    /// Applies `delta` to a complete checksum: `HC' = ~(~HC + delta)` (RFC 1624 eqn. 3).
    @inlinable @inline(__always)
    public static func update(_ checksum: UInt16, delta: UInt64) -> UInt16 {
        ~fold(UInt64(~checksum) &+ delta)
    }

    /// Applies `delta` to a partial checksum, the folded but uncomplemented pseudo-header
    /// sum that a GSO packet carries while the device is still to finish it.
    @inlinable @inline(__always)
    public static func updatePartial(_ partial: UInt16, delta: UInt64) -> UInt16 {
        fold(UInt64(partial) &+ delta)
    }
}
