#if canImport(Glibc)
import Glibc
#endif
import MATDNS
import MATIMSCore
import MATLog
import MATSystem
import Synchronization

/// The zone's durable state: a snapshot file with the whole zone at some serial, and an
/// append-only journal of every change accepted since, each record checksummed.
///
/// An update is acknowledged only after its record is written (and, with
/// `journal-sync = fsync`, `fdatasync`ed), so an acknowledged update survives `kill -9`
/// (and power loss with fsync). A torn record at the end (a crash mid-write, so never
/// acknowledged) is cut off at start. Compaction writes a new snapshot from a copy of the
/// zone on a background thread and then drops the old journal; see docs/ims.md.
final class ZoneJournal: ZoneJournaling, @unchecked Sendable {
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

    /// How the core opens each zone's journal files in `configuration`'s state
    /// directory; nil without one (state kept in memory only).
    static func opener(for configuration: IMSConfiguration) -> ZoneJournalOpener? {
        guard let directory = configuration.stateDirectory else { return nil }
        let sync = configuration.journalSync
        return { zone, initial throws(JournalError) in
            let journal = ZoneJournal(directory: directory, zone: zone.name, sync: sync)
            return (journal, try journal.load(initial: initial, historyLimit: zone.ixfrHistory))
        }
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
        guard Array(bytes[0..<8]) == JournalFormat.journalMagic else {
            throw JournalError(description: "\(path) is not a mat-ims journal")
        }
        if bytes.count > 8 { sawRecords = true }
        var offset = 8
        var chained = false
        while offset < bytes.count {
            guard let payload = JournalFormat.recordPayload(in: bytes, at: offset) else {
                // A torn or damaged tail: never acknowledged, or the disk lost it. Cut it.
                log("journal \(path): \(bytes.count - offset) bytes at offset \(offset) unreadable; truncated")
                truncateFile(path, to: offset)
                break
            }
            let entry: (ZoneDiff, SignerStamp?)
            do {
                entry = try JournalFormat.decodeEntry(bytes, from: payload.lowerBound, to: payload.upperBound)
            } catch {
                throw JournalError(description: "\(path): record at offset \(offset) passes its checksum but does not decode")
            }
            offset = payload.upperBound
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
            guard writeAll(JournalFormat.journalMagic) else {
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
        guard let record = JournalFormat.record(diff, signer: signer) else { return false }
        pending += record
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
        let bytes = try JournalFormat.snapshot(store: store, stamps: stamps)
        let temporary = snapshotPath + ".tmp"
        let out = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard out >= 0 else { throw JournalError(description: "cannot create \(temporary): \(errnoText())") }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { write(out, $0.baseAddress! + done, $0.count - done) }
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
        return try JournalFormat.readSnapshot(bytes, origin: origin, path: snapshotPath)
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
