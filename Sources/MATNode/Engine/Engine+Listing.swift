import Foundation
import MATPacket
import MATSystem
import Synchronization

/// How the engine's last listing of its table (`matctl peers`) went: how long the engine
/// thread stopped for its longest part, which is how long a packet could wait behind it.
public struct ListingFigures: Sendable, Equatable {
    /// The mappings listed.
    public var mappings = 0
    /// The parts (turns of the engine's loop) it took.
    public var parts = 0
    /// The longest part, in microseconds of the engine thread.
    public var longestPartMicroseconds: UInt64 = 0
    /// From the first part to the last, in microseconds (packets were handled between).
    public var totalMicroseconds: UInt64 = 0

    public init() {}

    /// The figures by name, for `matctl stats` (`peerListing` in `--json`, "last peer listing:" in its text).
    public var named: [String: UInt64] {
        ["mappings": UInt64(mappings), "parts": UInt64(parts),
         "longest_part_us": longestPartMicroseconds, "total_us": totalMicroseconds]
    }
}

/// A listing under way: who asked, what was read so far, and its figures.
struct ListingRun {
    var tickets: [MappingSnapshotTicket]
    var states: [Engine.MappingState] = []
    var figures = ListingFigures()
    let started: UInt64

    init(tickets: [MappingSnapshotTicket], started: UInt64) {
        self.tickets = tickets
        self.started = started
    }
}

extension Engine {
    /// Mappings read per turn of the engine's loop while a listing runs: a few
    /// milliseconds at most of a debug build (docs/benchmarks.md, "Scale"), so packets wait
    /// no longer than that behind it, and 100,000 peers take about 50 turns.
    public static let listingPart = 2_048

    /// The table as the engine thread has it, read a part per turn of its loop so packets
    /// are handled between the parts; nil when the engine does not finish within `timeout`
    /// seconds. A mapping that changes meanwhile comes as it was when its part was read; a
    /// HoA removed and added again may come twice (``MappingTable/startListing()``).
    public func mappings(timeout: Double = 10) -> [MappingState]? {
        let ticket = MappingSnapshotTicket()
        snapshotRequests.withLock { $0.append(ticket) }
        wakeup.signal()
        guard ticket.done.wait(timeout: .now() + timeout) == .success else { return nil }
        return ticket.mappings.withLock { $0 }
    }

    /// The figures of the last listing finished, nil before the first.
    public var lastListing: ListingFigures? { publishedListing.withLock { $0 } }

    /// Starts a listing for the requests waiting, unless one runs: those wait for the
    /// next, since the one under way has read part of the table already.
    func startListingIfAsked() {
        guard listingRun == nil else { return }
        let tickets = snapshotRequests.withLock { queue -> [MappingSnapshotTicket] in
            defer { queue.removeAll() }
            return queue
        }
        guard !tickets.isEmpty else { return }
        processor.table.startListing()
        listingRun = ListingRun(tickets: tickets, started: MonotonicClock.nanoseconds())
    }

    /// Reads the next part of the listing under way; the last part hands the whole to
    /// everyone who asked and publishes the figures.
    func continueListing() {
        guard var run = listingRun else { return }
        listingRun = nil   // no copy of the states on append: this thread owns the only one
        let start = MonotonicClock.nanoseconds()
        let (part, done) = processor.table.continueListing(limit: Self.listingPart)
        if run.states.isEmpty { run.states.reserveCapacity(processor.table.count) }
        for mapping in part {
            let preferred = processor.table.preferredMoA(forHoA: mapping.hoa)
            run.states.append(MappingState(
                mapping: mapping, preferred: preferred,
                encapsulated: preferred.map { encap?.endpoints.port(for: $0) != nil } ?? false,
                relayed: preferred.map { encap?.relayedMoAs.contains($0) ?? false } ?? false,
                fastPath: fastPath?.carries(mapping.hoa) ?? false))
        }
        let end = MonotonicClock.nanoseconds()
        run.figures.parts += 1
        run.figures.longestPartMicroseconds = max(run.figures.longestPartMicroseconds, (end - start) / 1_000)
        guard done else {
            listingRun = run
            return
        }
        run.figures.mappings = run.states.count
        run.figures.totalMicroseconds = (end - run.started) / 1_000
        let figures = run.figures
        publishedListing.withLock { $0 = figures }
        for ticket in run.tickets { ticket.finish(run.states) }
        // Requests that came during this listing start the next one.
        startListingIfAsked()
    }
}

/// Where the engine thread leaves its listing of the table for the thread that asked.
final class MappingSnapshotTicket: Sendable {
    let done = DispatchSemaphore(value: 0)
    let mappings = Mutex<[Engine.MappingState]>([])

    func finish(_ snapshot: [Engine.MappingState]) {
        mappings.withLock { $0 = snapshot }
        done.signal()
    }
}
