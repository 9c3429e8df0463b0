#if canImport(Glibc)
import Glibc
#endif
import MATDNS
import MATLog
import MATSystem
import MATWire
import Synchronization

/// Who signed an accepted update, kept so that replay protection survives a restart.
public struct SignerStamp: Hashable, Sendable {
    public var keyName: DNSName
    public var timeSigned: UInt64
    public var mac: [UInt8]
}

/// RFC 8945 §5.2.3: per key, the latest Time Signed accepted; anything signed earlier
/// than the second before it is refused (BADTIME), even inside the fudge window. Within
/// those two seconds a request is taken only if its MAC was not seen before: clients
/// legitimately send several updates per second (and a pipelining client's datagrams may
/// be handled out of order across a second boundary), while a byte-identical resend is a
/// replay. MACs are remembered by their first 8 octets (HMAC output: a collision between
/// two honest messages is a 2^-64 event, and forging one needs the key).
public struct ReplayGuard: Sendable {
    struct Entry: Sendable {
        var time: UInt64
        var macs: Set<UInt64>
        /// MACs seen at `time - 1`.
        var previous: Set<UInt64>
    }
    private(set) var latest: [DNSName: Entry] = [:]
    /// How many distinct MACs one key may use within one second (8 octets each).
    static let maxPerSecond = 1 << 18

    public init() {}

    static func fingerprint(_ mac: [UInt8]) -> UInt64 {
        var v: UInt64 = 0
        for b in mac.prefix(8) { v = v << 8 | UInt64(b) }
        return v
    }

    /// Whether a request signed at `time` with `mac` is fresh; if so it is remembered.
    public mutating func admit(key: DNSName, time: UInt64, mac: [UInt8]) -> Bool {
        let print = Self.fingerprint(mac)
        guard var entry = latest.removeValue(forKey: key) else {
            latest[key] = Entry(time: time, macs: [print], previous: [])
            return true
        }
        // Taken out of the dictionary so the sets grow without being copied.
        defer { latest[key] = entry }
        if time > entry.time {
            entry.previous = time == entry.time + 1 ? entry.macs : []
            entry.macs = [print]
            entry.time = time
            return true
        }
        if time == entry.time {
            return entry.macs.count < Self.maxPerSecond && entry.macs.insert(print).inserted
        }
        if time + 1 == entry.time {
            return entry.previous.count < Self.maxPerSecond && entry.previous.insert(print).inserted
        }
        return false
    }

    /// Restores state from a persisted stamp (journal replay, snapshot).
    mutating func restore(_ stamp: SignerStamp) {
        _ = admit(key: stamp.keyName, time: stamp.timeSigned, mac: stamp.mac)
    }

    var stamps: [SignerStamp] {
        func bytes(_ print: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: print >> (56 - 8 * UInt64($0))) } }
        return latest.flatMap { key, entry in
            entry.previous.map { SignerStamp(keyName: key, timeSigned: entry.time - 1, mac: bytes($0)) }
                + entry.macs.map { SignerStamp(keyName: key, timeSigned: entry.time, mac: bytes($0)) }
        }
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

/// Why state on disk could not be used.
public struct JournalError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// What the journal brought back at start.
struct LoadedZone {
    var store: ZoneStore
    var history: [ZoneDiff]
    var stamps: [SignerStamp]
}

/// The zone's durable state: a snapshot file with the whole zone at some serial, and an
/// append-only journal of every change accepted since, each record checksummed.
///
/// An update is acknowledged only after its record is written (and, with
/// `journal-sync = fsync`, `fdatasync`ed), so an acknowledged update survives `kill -9`
/// (and power loss with fsync). A torn record at the end (a crash mid-write, so never
/// acknowledged) is cut off at start. Compaction writes a new snapshot from a copy of the
/// zone on a background thread and then drops the old journal; see docs/ims.md.
final class ZoneJournal: @unchecked Sendable {
    static let journalMagic = Array("MATIMSJ1".utf8)
    static let snapshotMagic = Array("MATIMSS1".utf8)

    let directory: String
    let base: String
    let sync: JournalSync
    private var fd: Int32 = -1
    /// Bytes in the journal file (committed).
    private(set) var size = 0
    private var pending: [UInt8] = []
    private let compacting = Atomic<Bool>(false)

    var journalPath: String { "\(directory)/\(base).journal" }
    var oldJournalPath: String { "\(directory)/\(base).journal.old" }
    var snapshotPath: String { "\(directory)/\(base).snapshot" }

    init(directory: String, zone: DNSName, sync: JournalSync) {
        self.directory = directory
        self.sync = sync
        base = Self.fileBase(for: zone)
    }

    deinit {
        if fd >= 0 { Glibc.close(fd) }
    }

    /// A file name for the zone: its presentation form without the trailing dot, with
    /// anything but letters, digits, `-` and `.` escaped.
    static func fileBase(for zone: DNSName) -> String {
        var text = zone.lowercased().description
        if text.count > 1, text.hasSuffix(".") { text.removeLast() }
        if text == "." { text = "root" }
        var out = ""
        for scalar in text.unicodeScalars {
            if scalar.properties.isASCIIHexDigit || (scalar.value >= 0x61 && scalar.value <= 0x7A)
                || scalar == "-" || scalar == "." || (scalar.value >= 0x30 && scalar.value <= 0x39) {
                out.unicodeScalars.append(scalar)
            } else {
                out += "_" + String(scalar.value, radix: 16)
            }
        }
        return out
    }

    // MARK: Start

    /// Loads the snapshot and replays the journals after it; with no state yet, writes
    /// `initial` as the first snapshot. Leaves the journal open for appending.
    func load(initial: ZoneStore, historyLimit: Int) throws(JournalError) -> LoadedZone {
        try makeDirectory()
        var loaded: LoadedZone
        if let snapshot = try readSnapshot(origin: initial.origin) {
            loaded = snapshot
        } else {
            if access(journalPath, F_OK) == 0 || access(oldJournalPath, F_OK) == 0 {
                throw JournalError(description: "\(journalPath) exists but \(snapshotPath) does not: "
                                   + "restore the snapshot, or remove the journal to start the zone afresh")
            }
            loaded = LoadedZone(store: initial, history: [], stamps: [])
            try writeSnapshot(store: initial, stamps: [])
        }
        var replayed = 0
        var sawRecords = false
        for path in [oldJournalPath, journalPath] {
            try replay(path: path, into: &loaded, historyLimit: historyLimit, replayed: &replayed, sawRecords: &sawRecords)
        }
        // Only the newest stamps per key matter: fold them through a guard.
        var folded = ReplayGuard()
        for stamp in loaded.stamps.sorted(by: { $0.timeSigned < $1.timeSigned }) { folded.restore(stamp) }
        loaded.stamps = folded.stamps
        try openForAppend()
        if sawRecords || access(oldJournalPath, F_OK) == 0 {
            // Compact at start: the history stays in memory, the files start small.
            try writeSnapshot(store: loaded.store, stamps: loaded.stamps)
            try truncateJournals()
        }
        return loaded
    }

    private func makeDirectory() throws(JournalError) {
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw JournalError(description: "cannot create \(directory): \(errnoText())")
        }
    }

    private func replay(path: String, into loaded: inout LoadedZone, historyLimit: Int,
                        replayed: inout Int, sawRecords: inout Bool) throws(JournalError) {
        guard let bytes = try readWholeFile(path) else { return }
        guard bytes.count >= 8 else {
            if !bytes.isEmpty { truncateFile(path, to: 0) }
            return
        }
        guard Array(bytes[0..<8]) == Self.journalMagic else {
            throw JournalError(description: "\(path) is not a mat-ims journal")
        }
        if bytes.count > 8 { sawRecords = true }
        var offset = 8
        var chained = false
        while offset < bytes.count {
            var reader = JournalReader(bytes, from: offset)
            guard let length = try? reader.u32(), let crc = try? reader.u32(),
                  Int(length) <= reader.remaining,
                  CRC32C.checksum(bytes[reader.position..<reader.position + Int(length)]) == crc else {
                // A torn or damaged tail: never acknowledged, or the disk lost it. Cut it.
                log("journal \(path): \(bytes.count - offset) bytes at offset \(offset) unreadable; truncated")
                truncateFile(path, to: offset)
                break
            }
            let payloadStart = reader.position
            let entry: (ZoneDiff, SignerStamp?)
            do {
                entry = try Self.decodeEntry(bytes, from: payloadStart, to: payloadStart + Int(length))
            } catch {
                throw JournalError(description: "\(path): record at offset \(offset) passes its checksum but does not decode")
            }
            offset = payloadStart + Int(length)
            let (diff, stamp) = entry
            if diff.oldSerial == loaded.store.serial {
                loaded.store.apply(diff)
                loaded.history.append(diff)
                if loaded.history.count > historyLimit { loaded.history.removeFirst(loaded.history.count - historyLimit) }
                if let stamp { loaded.stamps.append(stamp) }
                chained = true
                replayed += 1
            } else if chained || SerialNumber.isNewer(diff.oldSerial, than: loaded.store.serial) {
                throw JournalError(description: "\(path): record at offset \(offset) starts at serial \(diff.oldSerial), "
                                   + "the zone is at \(loaded.store.serial)")
            }
            // Records before the chain starts are older than the snapshot: skip them.
        }
    }

    private func readWholeFile(_ path: String) throws(JournalError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw JournalError(description: "cannot open \(path): \(errnoText())")
        }
        defer { Glibc.close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw JournalError(description: "cannot read \(path): \(errnoText())")
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return bytes
    }

    private func truncateFile(_ path: String, to length: Int) {
        _ = truncate(path, off_t(length))
    }

    private func openForAppend() throws(JournalError) {
        if fd >= 0 { Glibc.close(fd) }
        fd = open(journalPath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw JournalError(description: "cannot open \(journalPath): \(errnoText())") }
        var info = stat()
        fstat(fd, &info)
        size = Int(info.st_size)
        if size == 0 {
            guard writeAll(Self.journalMagic) else {
                throw JournalError(description: "cannot write \(journalPath): \(errnoText())")
            }
            size = 8
            syncFile(fd)
            syncDirectory()
        }
    }

    private func truncateJournals() throws(JournalError) {
        unlink(oldJournalPath)
        guard ftruncate(fd, 8) == 0 else { throw JournalError(description: "cannot truncate \(journalPath): \(errnoText())") }
        size = 8
        syncFile(fd)
        syncDirectory()
    }

    // MARK: Appending

    /// Queues a record; `commit` writes everything queued.
    func stage(_ diff: ZoneDiff, signer: SignerStamp?) -> Bool {
        guard let payload = Self.encodeEntry(diff, signer: signer) else { return false }
        var writer = ByteWriter()
        writer.u32(UInt32(payload.count))
        writer.u32(CRC32C.checksum(payload))
        writer.append(payload)
        pending += writer.bytes
        return true
    }

    var hasPending: Bool { !pending.isEmpty }

    /// Writes the queued records in one `write(2)` and syncs once: group commit for all
    /// updates of a receive batch. On failure the file is cut back and nothing is kept.
    func commit() throws(JournalError) {
        guard !pending.isEmpty else { return }
        defer { pending.removeAll(keepingCapacity: true) }
        guard fd >= 0 else { throw JournalError(description: "journal is not open") }
        guard writeAll(pending) else {
            let reason = errnoText()
            _ = ftruncate(fd, off_t(size))
            throw JournalError(description: "cannot write \(journalPath): \(reason)")
        }
        if sync == .fsync {
            guard fdatasync(fd) == 0 else {
                let reason = errnoText()
                _ = ftruncate(fd, off_t(size))
                throw JournalError(description: "cannot sync \(journalPath): \(reason)")
            }
        }
        size += pending.count
    }

    func discardPending() { pending.removeAll(keepingCapacity: true) }

    private func writeAll(_ bytes: [UInt8]) -> Bool {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                return false
            }
            done += n
        }
        return true
    }

    func close() {
        if fd >= 0 {
            syncFile(fd)
            Glibc.close(fd)
            fd = -1
        }
    }

    // MARK: Compaction

    /// Starts a compaction if the journal is past `threshold` and none is running: the
    /// journal is renamed aside and a fresh one opened (under the caller's lock), and a
    /// background thread writes the snapshot from the copy and removes the old journal.
    /// Returns whether one started.
    func compactIfNeeded(threshold: Int, store: ZoneStore, stamps: [SignerStamp]) -> Bool {
        guard size > threshold, !compacting.load(ordering: .acquiring),
              access(oldJournalPath, F_OK) != 0 else { return false }
        guard rename(journalPath, oldJournalPath) == 0 else {
            log("cannot rename \(journalPath) for compaction: \(errnoText())")
            return false
        }
        do {
            try openForAppend()
        } catch {
            // Put the old journal back; appends keep going to it.
            rename(oldJournalPath, journalPath)
            log("\(error); compaction skipped")
            try? openForAppend()
            return false
        }
        compacting.store(true, ordering: .releasing)
        let started = SystemThread.start(name: "mat-ims-journal") { [self] in
            do {
                try writeSnapshot(store: store, stamps: stamps)
                unlink(oldJournalPath)
                syncDirectory()
            } catch {
                log("compaction failed: \(error); the old journal stays and is replayed at start")
            }
            compacting.store(false, ordering: .releasing)
        }
        if let started {
            started.detach()
        } else {
            compacting.store(false, ordering: .releasing)
        }
        return started != nil
    }

    /// Whether a background compaction is running (tests wait on it).
    var isCompacting: Bool { compacting.load(ordering: .acquiring) }

    // MARK: Snapshot

    /// Writes the whole zone to a temporary file, syncs it and renames it into place.
    func writeSnapshot(store: ZoneStore, stamps: [SignerStamp]) throws(JournalError) {
        var writer = ByteWriter()
        writer.append(Self.snapshotMagic)
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
        let temporary = snapshotPath + ".tmp"
        let out = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard out >= 0 else { throw JournalError(description: "cannot create \(temporary): \(errnoText())") }
        var done = 0
        while done < writer.bytes.count {
            let n = writer.bytes.withUnsafeBytes { write(out, $0.baseAddress! + done, $0.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                let reason = errnoText()
                Glibc.close(out)
                unlink(temporary)
                throw JournalError(description: "cannot write \(temporary): \(reason)")
            }
            done += n
        }
        guard fsync(out) == 0 else {
            let reason = errnoText()
            Glibc.close(out)
            throw JournalError(description: "cannot sync \(temporary): \(reason)")
        }
        Glibc.close(out)
        guard rename(temporary, snapshotPath) == 0 else {
            throw JournalError(description: "cannot rename \(temporary): \(errnoText())")
        }
        syncDirectory()
    }

    private func readSnapshot(origin: DNSName) throws(JournalError) -> LoadedZone? {
        guard let bytes = try readWholeFile(snapshotPath) else { return nil }
        guard bytes.count >= 12, Array(bytes[0..<8]) == Self.snapshotMagic else {
            throw JournalError(description: "\(snapshotPath) is not a mat-ims snapshot")
        }
        var tail = JournalReader(bytes, from: bytes.count - 4)
        guard let crc = try? tail.u32(), CRC32C.checksum(bytes[0..<(bytes.count - 4)]) == crc else {
            throw JournalError(description: "\(snapshotPath) fails its checksum (damaged on disk)")
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
            throw JournalError(description: "\(snapshotPath) does not decode")
        }
    }

    // MARK: Records

    /// Payload: version, signer (key name, time, MAC; a root name when none), then the
    /// diff as DNS messages: answers = old SOA + deleted, authorities = new SOA + added.
    static func encodeEntry(_ diff: ZoneDiff, signer: SignerStamp?) -> [UInt8]? {
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

    static func decodeEntry(_ bytes: [UInt8], from start: Int, to end: Int) throws(CorruptData) -> (ZoneDiff, SignerStamp?) {
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

    private func syncFile(_ fd: Int32) {
        _ = fsync(fd)
    }

    private func syncDirectory() {
        let dfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dfd >= 0 else { return }
        _ = fsync(dfd)
        Glibc.close(dfd)
    }

    private func log(_ message: String) {
        Log.write(.info, "mat-ims: \(message)")
    }
}
