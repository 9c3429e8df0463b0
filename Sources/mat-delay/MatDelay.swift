import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import MATSystem

/// `mat-delay`: the lab's delay element. The kernel of the lab machines has no `tc netem`,
/// so this is a bump in the wire between two interfaces of one namespace: every frame
/// that arrives on one leaves by the other, `--delay-ms` later, in order.
///
/// Frames wait in a ring of fixed-size slots per direction, allocated at start-up; when a
/// ring is full, or a frame is larger than a slot (offloads left on hand over GRO/TSO
/// super-frames up to 64 KiB), the frame is dropped and counted. SIGTERM or SIGINT stops
/// it and prints the counters to standard error.
///
/// With `--rate-mbit`, each direction is also a link of that rate, as a router's
/// interface: frames that arrive faster wait in a queue of `--queue-kb` bytes, and
/// `--qdisc` picks the order they leave it in (fifo, prio, fq; see ``QueueDiscipline``).
/// Without it, a flow faster than mat-delay queues in the kernel's socket buffer in front
/// of it (first in, first out).
@main
struct MatDelay: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mat-delay",
        abstract: "Forward Ethernet frames between two interfaces, each held for a fixed delay.",
        discussion: """
            Turn offloads off on both links first (ethtool -K IF gro off gso off tso off tx off, \
            on both veth ends): mat-delay forwards frames of at most --slot-size bytes.
            """)

    @Option(name: .long, parsing: .upToNextOption,
            help: ArgumentHelp("The two interfaces to join.", valueName: "interface"))
    var between: [String]

    @Option(name: .customLong("delay-ms"), help: "One-way delay applied to each direction, in milliseconds (0 allowed).")
    var delayMilliseconds: Double

    @Option(help: "Frames each direction can hold (the default holds 200 ms of 1514-byte frames at 1 Gbit/s).")
    var slots = 20_480

    @Option(help: "Largest frame forwarded, in bytes; larger ones are dropped and counted.")
    var slotSize = 2_048

    @Option(help: "Frames per recvmmsg or sendmmsg call.")
    var batch = 64

    @Option(name: .customLong("queue-kb"),
            help: ArgumentHelp("Kernel receive buffer per interface, in KiB: the queue that builds in front of a "
                               + "direction while mat-delay cannot keep up, so the lab's bottleneck queue. With "
                               + "--rate-mbit, also the most the link's queue holds (frame bytes; per band for prio).",
                               valueName: "KiB"))
    var queueKilobytes = 8_192

    @Option(name: .customLong("rate-mbit"),
            help: ArgumentHelp("Make each direction a link of this rate (Mbit/s on the wire, Ethernet's 24 bytes of "
                               + "preamble, check sequence and gap per frame included): frames beyond it wait in a "
                               + "queue of --queue-kb bytes ordered by --qdisc. 0: no link, frames go as fast as "
                               + "mat-delay reads them.", valueName: "Mbit/s"))
    var rateMegabits: Double = 0

    @Option(help: ArgumentHelp("The order frames leave the link's queue (with --rate-mbit): fifo; prio (DSCP EF, CS6 "
                               + "and CS7 first, like a router's network-control band); fq (a queue per flow, served "
                               + "in turn, new flows first, as fq_codel).", valueName: "fifo|prio|fq"))
    var qdisc: QueueDiscipline = .fifo

    func validate() throws {
        guard between.count == 2 else {
            throw ValidationError("--between takes two interfaces, e.g. --between veth0 veth1")
        }
        guard between[0] != between[1] else { throw ValidationError("--between needs two different interfaces") }
        guard delayMilliseconds >= 0, delayMilliseconds <= 60_000 else {
            throw ValidationError("--delay-ms must be between 0 and 60000")
        }
        guard slots > 0, slots <= 1 << 22 else { throw ValidationError("--slots must be between 1 and \(1 << 22)") }
        guard slotSize >= 64, slotSize <= 65_536 else { throw ValidationError("--slot-size must be between 64 and 65536") }
        guard batch > 0, batch <= 1_024 else { throw ValidationError("--batch must be between 1 and 1024") }
        guard queueKilobytes >= 64, queueKilobytes <= 1 << 20 else {
            throw ValidationError("--queue-kb must be between 64 and \(1 << 20)")
        }
        guard rateMegabits >= 0, rateMegabits <= 100_000 else {
            throw ValidationError("--rate-mbit must be between 0 (no link) and 100000")
        }
        guard qdisc == .fifo || rateMegabits > 0 else {
            throw ValidationError("--qdisc \(qdisc.rawValue) orders the queue in front of a link: give its rate with "
                                  + "--rate-mbit (without one, frames wait only in the kernel's socket buffer, first in, first out)")
        }
    }

    func run() throws {
        guard MultipleMessages.layoutMatches else {
            throw DelayError("struct mmsghdr does not have the layout mat-delay assumes")
        }
        let queueBytes = Int32(queueKilobytes * 1_024)
        let first = try PacketSocket(interface: between[0], receiveBuffer: queueBytes)
        let second = try PacketSocket(interface: between[1], receiveBuffer: queueBytes)
        let signals = try StopSignals()
        let delay = UInt64((delayMilliseconds * 1_000_000).rounded())
        let bottleneck = rateMegabits > 0 ? (discipline: qdisc, limitBytes: queueKilobytes * 1_024,
                                             bitsPerSecond: rateMegabits * 1e6) : nil
        let forwarder = Forwarder(between: first, and: second, delay: delay, slots: slots, slotSize: slotSize,
                                  batch: batch, bottleneck: bottleneck, signals: signals)
        let link = rateMegabits > 0 ? ", a \(formatted(rateMegabits)) Mbit/s link with qdisc \(qdisc.rawValue) each way" : ""
        warn("forwarding \(first.interface) <-> \(second.interface), \(formatted(delayMilliseconds)) ms each way, "
             + "\(slots) slots of \(slotSize) bytes per direction, \(queueKilobytes) KiB queue in front of each\(link)")
        let stop = try forwarder.run()
        warn("stopped by \(signalName(stop))")
        for line in forwarder.report() { warn(line) }
    }

    private func formatted(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }
}
