// libFuzzer target over MATDNS: the message parser, the encoder, the UPDATE decoder and
// TSIG verification, on arbitrary bytes (the whole input is one DNS message, as received
// over UDP, without a TCP length prefix). Like FuzzPacket it has no `main` of its own.
//
// Invariants (a violation traps, so libFuzzer saves the input):
// - nothing traps or reads out of bounds on any input; refusals are typed errors;
// - a parsed message encodes (compressed or not) unless it is too long for the wire, and
//   the encoding parses back to an equal message whose own encoding is byte-identical;
// - any TSIG outcome on the raw bytes is computed without trapping, and the error reply
//   built for it is itself a parseable message whenever the request parses;
// - a parsed message without TSIG, once signed with the test key, verifies (as a request,
//   as the response to it, and as the next message of a multi-message response, each
//   chained to the MAC before it; not against the wrong prior MAC); and the signed request
//   with one bit of the signed part flipped (other than the ID and ARCOUNT) never verifies.

import MATDNS

let fuzzKey = TSIGKey(name: try! DNSName("fuzz-key.example."), secret: (0..<32).map { UInt8($0) })
let fuzzKeyring = TSIGKeyring([fuzzKey])
/// A fixed clock, so every run of an input does the same thing.
let fuzzNow: UInt64 = 1_700_000_000

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDNS(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))

    // TSIG first, as a server does: on the raw bytes, before any parse. The client-side
    // checks too, as if the bytes were a reply.
    let outcome = TSIG.verifyRequest(bytes, keyring: fuzzKeyring, now: fuzzNow)
    let reply = TSIG.errorResponse(to: bytes, outcome: outcome, keyring: fuzzKeyring, now: fuzzNow)
    let someMAC = Array(bytes.prefix(32))
    _ = TSIG.verifyResponse(bytes, key: fuzzKey, requestMAC: someMAC, now: fuzzNow)
    _ = TSIG.verifySubsequentResponse(bytes, key: fuzzKey, priorMAC: someMAC, now: fuzzNow)

    let message: DNSMessage
    do {
        message = try DNSMessage(bytes: bytes)
    } catch {
        // The error reply to a request that does not parse may echo its broken question
        // section (reported to the lead; docs/fuzzing.md), so it is only required to be
        // built without trapping.
        return 0
    }
    if let reply {
        do {
            _ = try DNSMessage(bytes: reply)
        } catch {
            fail("error reply for \(outcome) to a well-formed request does not parse: \(error)")
        }
    }
    _ = try? DNSUpdateRequest(message)
    _ = try? message.response(code: .formErr).encode()

    var canonical: [UInt8]? = nil
    for compress in [true, false] {
        let encoded: [UInt8]
        do {
            encoded = try message.encode(compress: compress)
        } catch .messageTooLong {
            continue  // names expanded past 64 KiB: refused, as it should be
        } catch {
            fail("parsed message does not encode (compress: \(compress)): \(error)")
        }
        let again: DNSMessage
        do {
            again = try DNSMessage(bytes: encoded)
        } catch {
            fail("encoding (compress: \(compress)) does not parse: \(error)")
        }
        check(again == message, "encoding (compress: \(compress)) parses to a different message")
        let reencoded = try? again.encode(compress: compress)
        check(reencoded == encoded, "encoding (compress: \(compress)) is not stable")
        if compress { canonical = encoded }
    }

    // A TSIG-typed record anywhere (even an empty one in the answer section, which the
    // parser accepts as a record) makes the signed message malformed, rightly.
    let hasTSIG = [message.answers, message.authorities, message.additionals].contains {
        $0.contains { $0.type == .tsig }
    }
    if let canonical, !hasTSIG, message.additionals.count < 0xFFFF {
        let signed: TSIGSignedMessage
        do {
            signed = try TSIG.sign(canonical, key: fuzzKey, now: fuzzNow)
        } catch .messageTooLong {
            return 0  // no room left for the TSIG record: refused, as it should be
        } catch {
            fail("a parsed message without TSIG could not be signed: \(error)")
        }
        guard case .verified(let context) = TSIG.verifyRequest(signed.bytes, keyring: fuzzKeyring, now: fuzzNow) else {
            fail("own signature does not verify: \(TSIG.verifyRequest(signed.bytes, keyring: fuzzKeyring, now: fuzzNow))")
        }
        // The same message as the signed reply to it, and as the next message of a
        // multi-message response (AXFR), each chained to the MAC before it.
        if let response = try? TSIG.signResponse(canonical, key: fuzzKey, request: context, now: fuzzNow) {
            guard case .verified = TSIG.verifyResponse(response.bytes, key: fuzzKey, requestMAC: signed.mac, now: fuzzNow) else {
                fail("own signed response does not verify")
            }
            if let next = try? TSIG.signSubsequent(canonical, key: fuzzKey, priorMAC: response.mac, now: fuzzNow) {
                guard case .verified = TSIG.verifySubsequentResponse(next.bytes, key: fuzzKey, priorMAC: response.mac, now: fuzzNow) else {
                    fail("own subsequent message does not verify")
                }
                if case .verified = TSIG.verifySubsequentResponse(next.bytes, key: fuzzKey, priorMAC: signed.mac, now: fuzzNow) {
                    fail("subsequent message verifies against the wrong prior MAC")
                }
            }
        }
        // Flip one bit of the signed part (chosen by the input) and it must not verify.
        var tampered = signed.bytes
        let index = Int(bytes.count % canonical.count)
        tampered[index] ^= 0x01 << (bytes.count % 8)
        // Not the ID (bytes 0-1: the MAC covers the Original ID from the TSIG record, so
        // that forwarders may renumber, RFC 8945 §4.3.1), nor ARCOUNT (10-11: changing it
        // hides the TSIG record, which reads as unsigned or malformed, not verified).
        if ![0, 1, 10, 11].contains(index) {
            if case .verified = TSIG.verifyRequest(tampered, keyring: fuzzKeyring, now: fuzzNow) {
                fail("a tampered message verifies (byte \(index))")
            }
        }
    }
    return 0
}

func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fail(message()) }
}

func fail(_ message: String) -> Never {
    fatalError("FuzzDNS invariant violated: \(message)")
}
