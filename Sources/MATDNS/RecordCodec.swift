// Wire encoding and decoding of questions, records and their RDATA.

import MATWire

extension WireReader {
    mutating func question() throws(DNSParseError) -> DNSQuestion {
        let name = try name()
        let type = DNSType(try u16())
        let qclass = DNSClass(try u16())
        return DNSQuestion(name: name, type: type, class: qclass)
    }

    mutating func record() throws(DNSParseError) -> DNSResourceRecord {
        let name = try name()
        let type = DNSType(try u16())
        let rclass = DNSClass(try u16())
        let ttl = try u32()
        let length = Int(try u16())
        try need(length)
        let data = try rdata(type: type, class: rclass, length: length)
        return DNSResourceRecord(name: name, class: rclass, ttl: ttl, data: data)
    }

    /// Decodes RDATA of `length` octets at the cursor, which the caller has checked are
    /// present. Any read past the RDATA, or octets left inside it, is `badRData`.
    mutating func rdata(type: DNSType, class rclass: DNSClass, length: Int) throws(DNSParseError) -> DNSRecordData {
        let start = position
        let end = start + length
        if length == 0 {
            return type == .opt ? .opt([]) : .empty(type)
        }
        let savedLimit = limit
        limit = end
        defer { limit = savedLimit }
        let data: DNSRecordData
        do {
            data = try typedRData(type: type, class: rclass, end: end)
        } catch .truncated {
            throw .badRData(type: type, offset: start)
        }
        guard position == end else { throw .badRData(type: type, offset: start) }
        return data
    }

    private mutating func typedRData(type: DNSType, class rclass: DNSClass, end: Int) throws(DNSParseError) -> DNSRecordData {
        // A and AAAA layouts are defined for class IN only; UPDATE reuses them with
        // NONE (delete this address), and ANY never carries data.
        let addressClass = rclass == .in || rclass == .none || rclass == .any
        switch type {
        case .a where addressClass:
            return .a(try u32())
        case .aaaa where addressClass:
            let high = UInt64(try u32()) << 32 | UInt64(try u32())
            let low = UInt64(try u32()) << 32 | UInt64(try u32())
            return .aaaa(high: high, low: low)
        case .ns:
            return .ns(try name())
        case .cname:
            return .cname(try name())
        case .ptr:
            return .ptr(try name())
        case .mx:
            let preference = try u16()
            return .mx(preference: preference, exchange: try name())
        case .txt:
            var strings: [[UInt8]] = []
            while position < end {
                let count = Int(try u8())
                strings.append(try bytes(count))
            }
            return .txt(strings)
        case .soa:
            let primary = try name()
            let mailbox = try name()
            return .soa(DNSSOA(primary: primary, mailbox: mailbox, serial: try u32(), refresh: try u32(),
                               retry: try u32(), expire: try u32(), minimum: try u32()))
        case .opt:
            var options: [EDNSOption] = []
            while position < end {
                let code = try u16()
                let count = Int(try u16())
                options.append(EDNSOption(code: code, data: try bytes(count)))
            }
            return .opt(options)
        case .tsig:
            return .tsig(try tsigData())
        default:
            return .unknown(type, try bytes(end - position))
        }
    }

    mutating func tsigData() throws(DNSParseError) -> TSIGData {
        let algorithm = try name()
        let time = try u48()
        let fudge = try u16()
        let mac = try bytes(Int(try u16()))
        let originalID = try u16()
        let error = DNSResponseCode(try u16())
        let other = try bytes(Int(try u16()))
        return TSIGData(algorithm: algorithm, timeSigned: time, fudge: fudge, mac: mac,
                        originalID: originalID, error: error, otherData: other)
    }
}

extension WireWriter {
    mutating func question(_ q: DNSQuestion) {
        name(q.name, compress: true)
        u16(q.type.rawValue)
        u16(q.questionClass.rawValue)
    }

    /// Writes a record. TSIG owners stay uncompressed: RFC 8945 §4.2 and every
    /// implementation (nsupdate included) write them in full.
    mutating func record(_ rr: DNSResourceRecord) throws(DNSEncodeError) {
        name(rr.name, compress: rr.type != .tsig)
        u16(rr.type.rawValue)
        u16(rr.recordClass.rawValue)
        u32(rr.ttl)
        let lengthAt = bytes.count
        u16(0)
        try rdata(rr.data)
        let length = bytes.count - lengthAt - 2
        guard length <= 0xFFFF else { throw .rdataTooLong }
        patchU16(at: lengthAt, UInt16(length))
    }

    /// Names inside RDATA are compressed only for the RFC 1035 types (RFC 3597 §4), the
    /// ones every reader knows to decompress.
    mutating func rdata(_ data: DNSRecordData) throws(DNSEncodeError) {
        switch data {
        case .a(let v):
            u32(v)
        case .aaaa(let high, let low):
            u32(UInt32(truncatingIfNeeded: high >> 32))
            u32(UInt32(truncatingIfNeeded: high))
            u32(UInt32(truncatingIfNeeded: low >> 32))
            u32(UInt32(truncatingIfNeeded: low))
        case .ns(let n), .cname(let n), .ptr(let n):
            name(n, compress: true)
        case .mx(let preference, let exchange):
            u16(preference)
            name(exchange, compress: true)
        case .txt(let strings):
            for s in strings {
                guard s.count <= 255 else { throw .characterStringTooLong }
                u8(UInt8(s.count))
                append(s)
            }
        case .soa(let soa):
            name(soa.primary, compress: true)
            name(soa.mailbox, compress: true)
            for v in [soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum] { u32(v) }
        case .opt(let options):
            for option in options {
                guard option.data.count <= 0xFFFF else { throw .rdataTooLong }
                u16(option.code)
                u16(UInt16(option.data.count))
                append(option.data)
            }
        case .tsig(let t):
            try tsigData(t)
        case .empty:
            break
        case .unknown(_, let raw):
            append(raw)
        }
    }

    mutating func tsigData(_ t: TSIGData) throws(DNSEncodeError) {
        guard t.timeSigned <= 0xFFFF_FFFF_FFFF else { throw .timeOutOfRange }
        guard t.mac.count <= 0xFFFF, t.otherData.count <= 0xFFFF else { throw .rdataTooLong }
        name(t.algorithm, compress: false)
        u48(t.timeSigned)
        u16(t.fudge)
        u16(UInt16(t.mac.count))
        append(t.mac)
        u16(t.originalID)
        u16(t.error.rawValue)
        u16(UInt16(t.otherData.count))
        append(t.otherData)
    }
}
