import MATPacket

/// The node's own addresses per family: its home address (on the TUN device) and its
/// current mobile address (on the uplink). At home, both are the same.
public struct NodeAddresses: Sendable, Equatable {
    public var home4: IPv4Address?
    public var mobile4: IPv4Address?
    public var home6: IPv6Address?
    public var mobile6: IPv6Address?

    public init(home4: IPv4Address? = nil, mobile4: IPv4Address? = nil,
                home6: IPv6Address? = nil, mobile6: IPv6Address? = nil) {
        self.home4 = home4
        self.mobile4 = mobile4
        self.home6 = home6
        self.mobile6 = mobile6
    }

    /// The node's HoAs, one per family.
    public init(homes: [IPAddress]) {
        for home in homes {
            switch home {
            case .v4(let address): home4 = address
            case .v6(let address): home6 = address
            }
        }
    }

    /// The same HoAs with the MoAs taken from the uplinks' addresses: the first of each
    /// family. `uplinkAddresses` comes best first (`UplinkSelection.candidates`), so this
    /// is the documented choice (docs/config.md, "Uplinks and the MoA").
    public func withMobile(from uplinkAddresses: [IPAddress]) -> NodeAddresses {
        var next = self
        next.mobile4 = uplinkAddresses.lazy.compactMap { if case .v4(let a) = $0 { a } else { nil } }.first
        next.mobile6 = uplinkAddresses.lazy.compactMap { if case .v6(let a) = $0 { a } else { nil } }.first
        return next
    }

    /// Whether the peers of `family` must hear of a move to `next`: the node has a MoA of
    /// that family there, and it differs from this one's. Peers of a family whose MoA
    /// stayed are left alone (not held, not alerted) when only the other family's changed,
    /// for example an IPv6 address coming up by SLAAC seconds after the IPv4 one.
    public func mobileChanged(to next: NodeAddresses, family: AddressFamily) -> Bool {
        switch family {
        case .ipv4: next.mobile4 != nil && next.mobile4 != mobile4
        case .ipv6: next.mobile6 != nil && next.mobile6 != mobile6
        }
    }

    /// The HoAs, IPv4 first.
    public var homeAddresses: [IPAddress] {
        [home4.map(IPAddress.v4), home6.map(IPAddress.v6)].compactMap { $0 }
    }

    /// The current MoAs, IPv4 first.
    public var mobileAddresses: [IPAddress] {
        [mobile4.map(IPAddress.v4), mobile6.map(IPAddress.v6)].compactMap { $0 }
    }

    /// The MoAs for a log line.
    public var mobileDescription: String {
        mobileAddresses.isEmpty ? "none" : mobileAddresses.map(\.description).joined(separator: ", ")
    }
}
