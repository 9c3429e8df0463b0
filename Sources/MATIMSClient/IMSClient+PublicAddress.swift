import MATDNS
import MATPacket

extension IMSClient {
    /// The address the IMS sees this node's queries of `family` come from: behind 1:1 NAT,
    /// the public address peers will see (``WhoAmI``; docs/ims.md, "What is my address").
    /// Asked of the servers of that family in order, signed as every query of a node with
    /// a key is, so nobody on the path can hand the node an address of their choosing.
    /// Nil when no server of that family is configured or the IMS does not answer the name
    /// (BIND and Knot), in which case the node is configured with the address instead.
    ///
    /// The query leaves by the route to the server, so the answer is the public address of
    /// the uplink that route takes.
    public func publicAddress(family: AddressFamily) throws(IMSClientError) -> IPAddress? {
        let servers = configuration.servers.filter { $0.address.family == family }
        guard !servers.isEmpty else { return nil }
        let answer = try query(WhoAmI.name(in: configuration.names.zone), type: family == .ipv4 ? .a : .aaaa,
                               servers: servers)
        return answer.records.lazy.compactMap { MappingNames.address(from: $0.data) }.first { $0.family == family }
    }
}
