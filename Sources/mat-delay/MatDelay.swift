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
                               + "direction while mat-delay cannot keep up, so the lab's bottleneck queue.",
                               valueName: "KiB"))
    var queueKilobytes = 8_192

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
        let forwarder = Forwarder(between: first, and: second, delay: delay, slots: slots, slotSize: slotSize,
                                  batch: batch, signals: signals)
        warn("forwarding \(first.interface) <-> \(second.interface), \(formatted(delayMilliseconds)) ms each way, "
             + "\(slots) slots of \(slotSize) bytes per direction, \(queueKilobytes) KiB queue in front of each")
        let stop = try forwarder.run()
        warn("stopped by \(signalName(stop))")
        for line in forwarder.report() { warn(line) }
    }

    private func formatted(_ milliseconds: Double) -> String {
        milliseconds == milliseconds.rounded() ? String(Int(milliseconds)) : String(milliseconds)
    }
}
