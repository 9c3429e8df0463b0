/// Where a walk over a ``MappingTable`` a part at a time has got to: the family and the
/// next record, and the HoAs whose records a removal moved from ahead of that point to
/// behind it (the family's last record takes a removed one's place).
struct MappingListingCursor {
    var family = AddressFamily.ipv4
    var next = 0
    var moved: [IPAddress] = []
}

extension MappingTable {
    /// Starts a walk over every mapping, a part per ``continueListing(limit:)`` call, so an
    /// owner with other work (the engine, its packets) never stops for the whole table.
    /// A walk already under way starts again from the beginning.
    ///
    /// What the walk promises, whatever changes come between its parts: a mapping stored
    /// from the start to the end of the walk comes exactly once, as it was when its part
    /// was taken; one added or removed meanwhile may come or not; a HoA removed and added
    /// again may come twice (the later one is newer).
    public mutating func startListing() {
        listing = MappingListingCursor()
    }

    /// Whether a walk is under way.
    public var isListing: Bool { listing != nil }

    /// The next `limit` mappings (fewer at the end) of the walk ``startListing()`` began,
    /// and whether that was its last part; O(limit). Empty and done when no walk is under way.
    public mutating func continueListing(limit: Int) -> (mappings: [PeerMapping], done: Bool) {
        guard var cursor = listing else { return ([], true) }
        var part: [PeerMapping] = []
        part.reserveCapacity(min(limit, count))
        // Records moved behind the cursor first: where they are now was already read.
        while part.count < limit, let hoa = cursor.moved.popLast() {
            if let index = recordIndex(of: hoa) { part.append(storedMapping(hoa.family, index)) }
        }
        while part.count < limit {
            if cursor.next < recordCount(cursor.family) {
                part.append(storedMapping(cursor.family, cursor.next))
                cursor.next += 1
            } else if cursor.family == .ipv4 {
                cursor.family = .ipv6
                cursor.next = 0
            } else {
                break
            }
        }
        let done = cursor.moved.isEmpty && cursor.family == .ipv6 && cursor.next >= recordCount(.ipv6)
        listing = done ? nil : cursor
        return (part, done)
    }

    /// Keeps a walk under way whole when a removal moves the family's last record from
    /// `last` into `index`: if the walk had passed `index` but not `last`, the moved record
    /// is read from where it is now.
    mutating func noteRecordMoved(_ family: AddressFamily, from last: Int, to index: Int, hoa: IPAddress) {
        guard let cursor = listing, cursor.family == family, index < cursor.next, last >= cursor.next else { return }
        listing?.moved.append(hoa)
    }
}
