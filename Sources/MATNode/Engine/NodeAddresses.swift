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
}
