import Dispatch
import MATIMSClient
import MATLinux
import MATPacket
import Synchronization

/// Runs the IMS client's exchanges (registrations, lookups), which wait on the network
/// for up to their timeouts, on a thread of its own: a silent IMS then delays only other
/// IMS work, never the service thread's netlink handling, alerts, retransmissions or
/// control replies. Jobs run in the order given; results wait in `takeResults()` and
/// `resultsReady` tells the service to take them.
final class IMSWorker: Sendable {
    /// Why a HoA is looked up, which decides what its answer is used for.
    enum Purpose: Sendable, Hashable {
        /// An application sends to a HoA the engine has no mapping for.
        case firstPacket
        /// A learned mapping's TTL ran out.
        case refresh
        /// A peer's alert came in and its key is unknown.
        case key
        /// A peer does not acknowledge its alerts: it may have moved too.
        case again
        /// A relay's lookup of the key a registration is checked with
        /// (``RelayKeyLookups``): its answer goes only to the relay's forwarder, never to
        /// this node's own peer keys, state file or signaling (the HoA is no peer of it).
        case relayKey
    }

    enum Job: Sendable {
        case register(IMSClient, hoa: IPAddress, moas: [IPAddress], sequence: UInt64, publicKey: String)
        case lookup(IMSClient, hoa: IPAddress, purpose: Purpose)
        /// Which address the IMS sees this node's queries of `family` come from, asked
        /// for the local MoA `local` (behind 1:1 NAT, its public address).
        case publicAddress(IMSClient, family: AddressFamily, local: IPAddress)
    }

    enum Outcome: Sendable {
        case registered(hoa: IPAddress, moas: [IPAddress], sequence: UInt64, Result<RegistrationResult, IMSClientError>)
        case lookedUp(hoa: IPAddress, purpose: Purpose, Result<PeerMappingAnswer, IMSClientError>)
        case publicAddress(family: AddressFamily, local: IPAddress, Result<IPAddress?, IMSClientError>)
    }

    private let jobs = Mutex<[Job]>([])
    private let timings = Mutex<[String: DurationHistogram]>([:])
    private let results = Mutex<[Outcome]>([])
    private let pending = DispatchSemaphore(value: 0)
    private let stopped = Mutex(false)
    private let resultsReady: @Sendable () -> Void

    /// Starts the worker thread; `resultsReady` is called on it after each job. Throws when
    /// the system gives no thread.
    init(resultsReady: @escaping @Sendable () -> Void) throws(SystemError) {
        self.resultsReady = resultsReady
        // Not joined: `stop` does not wait for an exchange with a silent server.
        guard let thread = SystemThread.start(name: "matd-ims", { [self] in run() }) else {
            throw SystemError("start the IMS worker thread", detail: "no thread to be had")
        }
        thread.detach()
    }

    /// Queues `job`.
    func submit(_ job: Job) {
        jobs.withLock { $0.append(job) }
        pending.signal()
    }

    /// How long registrations and lookups took (each to its answer or its last timeout),
    /// by kind: `registration`, `lookup`.
    var durations: [String: DurationHistogram] { timings.withLock { $0 } }

    /// The outcomes of finished jobs, oldest first.
    func takeResults() -> [Outcome] {
        results.withLock { list in
            defer { list.removeAll() }
            return list
        }
    }

    /// Lets the thread end after the job it runs now; it is not waited for (an exchange
    /// with a silent server ends only at its timeout).
    func stop() {
        stopped.withLock { $0 = true }
        pending.signal()
    }

    private func run() {
        while true {
            pending.wait()
            if stopped.withLock({ $0 }) { return }
            guard let job = jobs.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else { continue }
            let outcome: Outcome
            let started = MonotonicClock.milliseconds()
            switch job {
            case .register(let client, let hoa, let moas, let sequence, let publicKey):
                outcome = .registered(hoa: hoa, moas: moas, sequence: sequence, Result { () throws(IMSClientError) in
                    try client.register(hoa: hoa, moas: moas, sequence: sequence, publicKey: publicKey)
                })
            case .lookup(let client, let hoa, let purpose):
                outcome = .lookedUp(hoa: hoa, purpose: purpose, Result { () throws(IMSClientError) in
                    try client.lookup(hoa: hoa, allowCached: purpose == .firstPacket)
                })
            case .publicAddress(let client, let family, let local):
                outcome = .publicAddress(family: family, local: local, Result { () throws(IMSClientError) in
                    try client.publicAddress(family: family)
                })
            }
            let kind = if case .registered = outcome { "registration" } else { "lookup" }
            let took = MonotonicClock.milliseconds() - started
            timings.withLock { $0[kind, default: DurationHistogram()].record(milliseconds: took) }
            results.withLock { $0.append(outcome) }
            resultsReady()
        }
    }
}

/// A lookup on its way to the IMS, so the same question is not queued twice.
struct PendingLookup: Hashable {
    var hoa: IPAddress
    var purpose: IMSWorker.Purpose
}
