import MATLinux
import MATPacket

/// Has the kernel resolve the neighbour of a peer's next hop when the peer enters the BPF
/// datapath's outbound map, before its first packet (``FastPathBPF``, ``FastPathBPF6``):
/// `bpf_redirect_neigh` loses a packet that has to wait for the neighbour
/// (docs/datapath.md, "The BPF datapath"), where a routed one is queued. Asked at most
/// once a second per next hop, and not while its entry is resolved, so a thousand peers
/// behind one gateway ask the kernel once. Engine thread only.
final class NextHopResolver {
    private let neighbours: Neighbours
    /// When each next hop's neighbour was last looked at (monotonic ms).
    private var asked: [RouteLookup.Hop: UInt64] = [:]
    private var failureLogged = false

    /// Opens the neighbour table's socket.
    init() throws(SystemError) {
        neighbours = try Neighbours()
    }

    /// Starts the resolution of `hop`'s next hop on the interface with index `interface`
    /// unless it was asked for within the last second or is resolved. A failure is logged
    /// once: the packets still go, and the first ones to a next hop may be lost.
    func resolve(_ hop: RouteLookup.Hop, interface: UInt32) {
        let now = MonotonicClock.milliseconds()
        if let last = asked[hop], now < last + 1_000 { return }
        // A bound on what is remembered: forgetting only costs a lookup more.
        if asked.count >= 4_096 { asked = [:] }
        asked[hop] = now
        do {
            if try neighbours.entry(hop.nextHop, interface: interface)?.resolved == true { return }
            try neighbours.use(hop.nextHop, interface: interface)
        } catch {
            if !failureLogged {
                failureLogged = true
                log(.warning, "matd: BPF datapath: resolving next hop \(hop) failed (\(error)); a peer's first packets "
                    + "may be lost while the kernel resolves it (logged once)")
            }
        }
    }
}
