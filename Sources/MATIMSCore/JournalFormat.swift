import MATDNS
import MATWire

/// Why state on disk could not be used.
public struct JournalError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, naming the file.
    public var description: String

    /// An error that says `description`.
    public init(description: String) {
        self.description = description
    }
}

/// What the journal brought back at start.
public struct LoadedZone: Sendable {
    /// The zone as the snapshot and the journal records after it leave it.
    public var store: ZoneStore
    /// The changes replayed, oldest first, for IXFR.
    public var history: [ZoneDiff]
    /// Who signed them, for replay protection across the restart.
    public var stamps: [SignerStamp]

    /// A zone as loaded.
    public init(store: ZoneStore, history: [ZoneDiff], stamps: [SignerStamp]) {
        self.store = store
        self.history = history
        self.stamps = stamps
    }
}

/// Where the core makes accepted changes durable before it answers: one per zone. The
/// server's implementation is a journal file with snapshots (MATIMS `ZoneJournal`); the
/// core only stages, commits and asks for compaction, so it never touches a file.
public protocol ZoneJournaling: AnyObject, Sendable {
    /// Queues the record of `diff`; false if it cannot be encoded (nothing queued).
    func stage(_ diff: ZoneDiff, signer: SignerStamp?) -> Bool
    /// Makes everything staged durable at once (group commit), or throws and keeps none of it.
    func commit() throws(JournalError)
    /// Starts a compaction into a snapshot of `store` when the journal is past
    /// `threshold` bytes and none is running; returns whether one started.
    func compactIfNeeded(threshold: Int, store: ZoneStore, stamps: [SignerStamp]) -> Bool
    /// Whether a compaction is still running.
    var isCompacting: Bool { get }
    /// Committed bytes in the journal.
    var size: Int { get }
    /// Makes everything durable and stops taking changes.
    func close()
}

/// Opens a zone's durable state at start: the zone as it was stored (or `initial` when
/// nothing is stored yet) and the journal that keeps its later changes.
public typealias ZoneJournalOpener = (_ zone: ZoneConfiguration, _ initial: ZoneStore) throws(JournalError)
    -> (journal: any ZoneJournaling, loaded: LoadedZone)

/// The byte formats of the journal and the snapshot, without the files (docs/ims.md):
/// every record is its length, its CRC-32C and its payload; a snapshot is the whole zone
/// and the replay stamps, checksummed as one.
public enum JournalFormat {
    /// The first 8 bytes of a journal file.
    public static let journalMagic = Array("MATIMSJ1".utf8)
    /// The first 8 bytes of a snapshot file.
    public static let snapshotMagic = Array("MATIMSS1".utf8)

    /// A framed journal record of `diff`; nil if the change cannot be encoded.
    public static func record(_ diff: ZoneDiff, signer: SignerStamp?) -> [UInt8]? {
        guard let payload = encodeEntry(diff, signer: signer) else { return nil }
        var writer = ByteWriter(capacity: payload.count + 8)
        writer.u32(UInt32(payload.count))
        writer.u32(CRC32C.checksum(payload))
        writer.append(payload)
        return writer.bytes
    }

    /// The payload of the record framed at `offset`, if it is whole and passes its
    /// checksum; nil for a torn or damaged record.
    public static func recordPayload(in bytes: [UInt8], at offset: Int) -> Range<Int>? {
        var reader = JournalReader(bytes, from: offset)
        guard let length = try? reader.u32(), let crc = try? reader.u32(),
              Int(length) <= reader.remaining,
              CRC32C.checksum(bytes[reader.position..<reader.position + Int(length)]) == crc else { return nil }
        return reader.position..<reader.position + Int(length)
    }

    /// A snapshot of `store` with the replay `stamps`.
    public static func snapshot(store: ZoneStore, stamps: [SignerStamp]) throws(JournalError) -> [UInt8] {
        var writer = ByteWriter()
        writer.append(snapshotMagic)
        writer.u32(store.serial)
        writer.u32(UInt32(stamps.count))
        for stamp in stamps {
            writer.append(stamp.keyName.wireBytes)
            writer.u48(stamp.timeSigned)
            writer.u16(UInt16(stamp.mac.count))
            writer.append(stamp.mac)
        }
        guard let messages = RecordPacker.pack(store.allRecords()) else {
            throw JournalError(description: "zone \(store.origin) cannot be encoded")
        }
        writer.u32(UInt32(messages.count))
        for message in messages {
            writer.u32(UInt32(message.count))
            writer.append(message)
        }
        writer.u32(CRC32C.checksum(writer.bytes))
        return writer.bytes
    }

    /// Reads a snapshot of zone `origin` back; `path` names it in errors.
    public static func readSnapshot(_ bytes: [UInt8], origin: DNSName, path: String) throws(JournalError) -> LoadedZone {
        guard bytes.count >= 12, Array(bytes[0..<8]) == snapshotMagic else {
            throw JournalError(description: "\(path) is not a mat-ims snapshot")
        }
        var tail = JournalReader(bytes, from: bytes.count - 4)
        guard let crc = try? tail.u32(), CRC32C.checksum(bytes[0..<(bytes.count - 4)]) == crc else {
            throw JournalError(description: "\(path) fails its checksum (damaged on disk)")
        }
        do throws(CorruptData) {
            var reader = JournalReader(bytes, from: 8, to: bytes.count - 4)
            let serial = try reader.u32()
            var stamps: [SignerStamp] = []
            for _ in 0..<(try reader.u32()) {
                let name = try reader.name()
                let time = try reader.u48()
                let mac = try reader.bytes(Int(try reader.u16()))
                stamps.append(SignerStamp(keyName: name, timeSigned: time, mac: mac))
            }
            var messages: [[UInt8]] = []
            for _ in 0..<(try reader.u32()) {
                messages.append(try reader.bytes(Int(try reader.u32())))
            }
            let (records, _) = try RecordPacker.unpack(messages)
            guard let soa = records.first, case .soa(let soaData) = soa.data, soaData.serial == serial,
                  soa.name == origin else { throw CorruptData() }
            var store = ZoneStore(origin: origin, soa: soaData, soaTTL: soa.ttl)
            for record in records.dropFirst() {
                guard record.name.isSubdomain(of: origin) else { throw CorruptData() }
                store.add(record)
            }
            return LoadedZone(store: store, history: [], stamps: stamps)
        } catch {
            throw JournalError(description: "\(path) does not decode")
        }
    }

    /// Payload: version, signer (key name, time, MAC; a root name when none), then the
    /// diff as DNS messages: answers = old SOA + deleted, authorities = new SOA + added.
    public static func encodeEntry(_ diff: ZoneDiff, signer: SignerStamp?) -> [UInt8]? {
        var writer = ByteWriter()
        writer.u8(1)
        if let signer {
            writer.append(signer.keyName.wireBytes)
            writer.u48(signer.timeSigned)
            writer.u16(UInt16(signer.mac.count))
            writer.append(signer.mac)
        } else {
            writer.u8(0)
        }
        guard let messages = RecordPacker.pack([diff.oldSOA] + diff.deleted, [diff.newSOA] + diff.added) else { return nil }
        writer.u16(UInt16(messages.count))
        for message in messages {
            writer.u32(UInt32(message.count))
            writer.append(message)
        }
        return writer.bytes
    }

    /// Reads a record's payload (`bytes[start..<end]`) back: the change and who signed it.
    public static func decodeEntry(_ bytes: [UInt8], from start: Int, to end: Int) throws(CorruptData) -> (ZoneDiff, SignerStamp?) {
        var reader = JournalReader(bytes, from: start, to: end)
        guard try reader.u8() == 1 else { throw CorruptData() }
        let keyName = try reader.name()
        var stamp: SignerStamp? = nil
        if !keyName.isRoot {
            let time = try reader.u48()
            let mac = try reader.bytes(Int(try reader.u16()))
            stamp = SignerStamp(keyName: keyName, timeSigned: time, mac: mac)
        }
        var messages: [[UInt8]] = []
        for _ in 0..<(try reader.u16()) {
            messages.append(try reader.bytes(Int(try reader.u32())))
        }
        guard reader.remaining == 0 else { throw CorruptData() }
        let (removed, added) = try RecordPacker.unpack(messages)
        guard let oldSOA = removed.first, oldSOA.type == .soa, let newSOA = added.first, newSOA.type == .soa else {
            throw CorruptData()
        }
        return (ZoneDiff(oldSOA: oldSOA, newSOA: newSOA, deleted: Array(removed.dropFirst()), added: Array(added.dropFirst())),
                stamp)
    }
}

/// Packs resource records into DNS messages (answer and authority sections) and back, so
/// that the journal and snapshots reuse the DNS codec, compression and its hostile-input
/// checks instead of a format of their own.
enum RecordPacker {
    static let targetSize = 32 * 1024

    static func pack(_ first: [DNSResourceRecord], _ second: [DNSResourceRecord] = []) -> [[UInt8]]? {
        var messages: [[UInt8]] = []
        var current = DNSMessage()
        var estimate = 12
        func flush() -> Bool {
            guard !current.answers.isEmpty || !current.authorities.isEmpty || messages.isEmpty else { return true }
            guard let bytes = try? current.encode() else { return false }
            messages.append(bytes)
            current = DNSMessage()
            estimate = 12
            return true
        }
        for (index, section) in [first, second].enumerated() {
            for record in section {
                let size = record.name.wireLength + 10 + rdataEstimate(record.data)
                if estimate + size > targetSize && !(current.answers.isEmpty && current.authorities.isEmpty) {
                    guard flush() else { return nil }
                }
                if index == 0 { current.answers.append(record) } else { current.authorities.append(record) }
                estimate += size
            }
        }
        guard flush() else { return nil }
        return messages
    }

    static func unpack(_ messages: [[UInt8]]) throws(CorruptData) -> ([DNSResourceRecord], [DNSResourceRecord]) {
        var first: [DNSResourceRecord] = []
        var second: [DNSResourceRecord] = []
        for bytes in messages {
            guard let message = try? DNSMessage(bytes: bytes) else { throw CorruptData() }
            first += message.answers
            second += message.authorities
        }
        return (first, second)
    }

    /// An upper bound of the RDATA length (names uncompressed).
    static func rdataEstimate(_ data: DNSRecordData) -> Int {
        switch data {
        case .a: 4
        case .aaaa: 16
        case .ns(let n), .cname(let n), .ptr(let n): n.wireLength
        case .mx(_, let n): 2 + n.wireLength
        case .txt(let strings): strings.reduce(0) { $0 + $1.count + 1 }
        case .soa(let s): s.primary.wireLength + s.mailbox.wireLength + 20
        case .opt(let options): options.reduce(0) { $0 + 4 + $1.data.count }
        case .tsig(let t): t.algorithm.wireLength + 16 + t.mac.count + t.otherData.count
        case .empty: 0
        case .unknown(_, let raw): raw.count
        }
    }
}
