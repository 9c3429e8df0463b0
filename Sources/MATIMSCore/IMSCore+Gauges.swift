extension IMSCore {
    /// What the exposition shows of one zone.
    public struct ZoneGauges: Sendable {
        /// The zone apex.
        public var name: String
        /// The current SOA serial.
        public var serial: UInt32
        /// Names holding records.
        public var names: Int
        /// Committed bytes in the journal file; nil without a state directory.
        public var journalBytes: Int?
    }

    /// Every zone's serial, size and journal size, read under one lock.
    public var zoneGauges: [ZoneGauges] {
        state.withLock { state in
            zip(zoneConfigs, state.zones).map { config, zone in
                ZoneGauges(name: config.name.description, serial: zone.store.serial, names: zone.store.nameCount,
                           journalBytes: zone.journal?.size)
            }
        }
    }
}
