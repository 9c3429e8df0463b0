/// A bounds-checked big-endian cursor over bytes the reader does not own.
///
/// A conforming type supplies the bytes, the cursor, the end reads may not pass, and the
/// error a short read throws; the reads come from this protocol's extension. Each read
/// checks against `limit` first, so no input can make it read past the end; a conformer
/// adds its format's own fields (DNS names, for instance) on top. The reads are
/// `@inlinable`, so a conformer gets them specialized for its storage, as fast as reads
/// written out by hand.
public protocol ByteReading {
    /// What the bytes are kept in: `UnsafeBufferPointer<UInt8>` on a hot path, `[UInt8]`
    /// where a copy is held anyway.
    associatedtype Storage: RandomAccessCollection<UInt8> where Storage.Index == Int
    /// What a read past `limit` throws.
    associatedtype Failure: Error

    /// The whole input.
    var buffer: Storage { get }
    /// The index of the next byte to read.
    var position: Int { get set }
    /// Reads may not pass this index (the end of the input, or of the current field).
    var limit: Int { get }

    /// The error for a read of a field starting at `offset` that does not fit.
    static func shortInput(at offset: Int) -> Failure
}

extension ByteReading {
    /// Bytes left before `limit`.
    @inlinable
    public var remaining: Int { limit - position }

    /// Throws unless `count` more bytes are there (a negative count never is).
    @inlinable @inline(__always)
    public func need(_ count: Int) throws(Failure) {
        guard count >= 0, count <= limit - position else { throw Self.shortInput(at: position) }
    }

    /// Reads one byte.
    @inlinable @inline(__always)
    public mutating func u8() throws(Failure) -> UInt8 {
        try need(1)
        defer { position += 1 }
        return buffer[position]
    }

    /// Reads a big-endian `UInt16`.
    @inlinable @inline(__always)
    public mutating func u16() throws(Failure) -> UInt16 {
        try need(2)
        defer { position += 2 }
        return BigEndian.u16(buffer, at: position)
    }

    /// Reads a big-endian `UInt32`.
    @inlinable @inline(__always)
    public mutating func u32() throws(Failure) -> UInt32 {
        try need(4)
        defer { position += 4 }
        return BigEndian.u32(buffer, at: position)
    }

    /// Reads a big-endian 48-bit integer (a DNS TSIG time).
    @inlinable @inline(__always)
    public mutating func u48() throws(Failure) -> UInt64 {
        try need(6)
        defer { position += 6 }
        return BigEndian.u48(buffer, at: position)
    }

    /// Reads a big-endian `UInt64`.
    @inlinable @inline(__always)
    public mutating func u64() throws(Failure) -> UInt64 {
        try need(8)
        defer { position += 8 }
        return BigEndian.u64(buffer, at: position)
    }

    /// Copies the next `count` bytes out.
    @inlinable
    public mutating func bytes(_ count: Int) throws(Failure) -> [UInt8] {
        try need(count)
        defer { position += count }
        return Array(buffer[position..<position + count])
    }

    /// Steps over `count` bytes.
    @inlinable
    public mutating func skip(_ count: Int) throws(Failure) {
        try need(count)
        position += count
    }
}
