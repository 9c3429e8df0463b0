// libFuzzer target over MATSignaling's codec: `SignalCodec.open`, `peekTrailer`,
// `openCookieReply` and `UnverifiedSignal.verify` on arbitrary bytes (the whole input is one UDP datagram), with
// a fixed key, and `EncapWire.parse` (the UDP encapsulation, with its relay registration,
// the relay's answer, relayed packet and relayed signal) on the same bytes. Like the
// other targets it has no `main` of its own.
//
// A fuzzer cannot forge Ed25519 signatures, so every input is tried twice: as it is, and
// re-signed (the 64 bytes before its cookie, or its last 64 without one, replaced by the
// fixed key's signature over what comes before), so that the body decoder behind the
// signature check is fuzzed too.
//
// Invariants (a violation traps, so libFuzzer saves the input):
// - nothing traps or reads out of bounds on any input; refusals are typed errors;
// - `open` on the raw buffer and on an array agree;
// - what `open` accepts has a sane length and header, and `peekTrailer` (which runs before
//   it, under load) reads the same cookie from it;
// - a cookie reply that opens seals back to the same 40 bytes;
// - what verifies is canonical: sealing the decoded message with the same key (padded to
//   the input's length) gives back exactly the input up to its cookie (Ed25519 signing is
//   deterministic), and the message validates;
// - it does not verify with another key, nor with one bit of its signed part flipped (the
//   bit chosen by the input);
// - a re-signed input that `open` accepts never fails with `badSignature`.

import Crypto
import MATSignaling

/// The key make-corpus.py signs the seeds with: seed bytes 00 01 .. 1f.
let fuzzSeed: [UInt8] = (0..<32).map { UInt8($0) }
let fuzzKey = try! SigningKey(rawRepresentation: fuzzSeed)
let fuzzVerifyingKey = fuzzKey.publicKey
let otherVerifyingKey = try! SigningKey(rawRepresentation: (32..<64).map { UInt8($0) }).publicKey
let fuzzRelaySecret = RelaySecret((64..<96).map { UInt8($0) })!
let otherRelaySecret = RelaySecret((96..<128).map { UInt8($0) })!
/// The same key through Crypto directly, to re-sign arbitrary bytes (MATSignaling only
/// ever signs messages it encoded itself).
let rawSigner = try! Curve25519.Signing.PrivateKey(rawRepresentation: fuzzSeed)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSignaling(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let raw = UnsafeRawBufferPointer(start: data, count: size)
    let bytes = Array(raw)
    examineEncap(raw)

    let viaBuffer = Result { () throws(SignalError) in try SignalCodec.open(raw) }
    let viaArray = Result { () throws(SignalError) in try SignalCodec.open(bytes) }
    switch (viaBuffer, viaArray) {
    case (.failure(let a), .failure(let b)):
        check(a == b, "open disagrees: buffer \(a), array \(b)")
    case (.success(let a), .success(let b)):
        check(a.type == b.type && a.sequence == b.sequence && a.sender == b.sender && a.receiver == b.receiver,
              "open disagrees on the header")
    default:
        fail("open accepts on one entry point only")
    }
    if let reply = try? SignalCodec.openCookieReply(raw) {
        check(SignalCodec.isCookieReply(raw), "a cookie reply without its type byte")
        check(SignalCodec.seal(reply) == bytes, "a cookie reply does not seal back to its bytes")
    }
    examine(bytes, resigned: false)

    // Re-signed: the signature is replaced, and a cookie after it (if the framing says
    // there is one) stays where it is, outside the signature.
    let cookie = raw.count >= SignalCodec.cookieLength && SignalCodec.peekTrailer(raw)?.cookie != nil
        ? Array(bytes.suffix(SignalCodec.cookieLength)) : []
    let framed = Array(bytes.dropLast(cookie.count))
    if framed.count >= SignalCodec.headerLength + SignalCodec.signatureLength {
        let signed = Array(framed.dropLast(SignalCodec.signatureLength))
        guard let signature = try? rawSigner.signature(for: signed) else { fail("Crypto could not sign") }
        examine(signed + Array(signature) + cookie, resigned: true)
    }
    return 0
}

func examine(_ bytes: [UInt8], resigned: Bool) {
    let unverified: UnverifiedSignal
    do {
        unverified = try SignalCodec.open(bytes)
    } catch {
        return
    }
    check(bytes.count <= SignalCodec.maximumLength, "accepted \(bytes.count) bytes")
    check(bytes.count >= SignalCodec.headerLength + 9 + SignalCodec.signatureLength, "accepted \(bytes.count) bytes")
    check(bytes[5] == unverified.type.rawValue, "type differs from byte 5")
    check(unverified.sender.family == unverified.receiver.family, "HoAs of two families accepted")
    let trailer = bytes.withUnsafeBytes { SignalCodec.peekTrailer($0) }
    check(trailer != nil && trailer?.cookie == unverified.cookie && trailer?.echo == unverified.cookieEcho,
          "peekTrailer disagrees with open")
    check(unverified.datagramLength == bytes.count, "datagram length \(unverified.datagramLength) of \(bytes.count) bytes")
    let signedPart = unverified.cookie == nil ? bytes : Array(bytes.dropLast(SignalCodec.cookieLength))

    let message: SignalMessage
    do {
        message = try unverified.verify(with: fuzzVerifyingKey)
    } catch .badSignature {
        check(!resigned, "a message signed with the key does not verify")
        return
    } catch {
        return  // a body refusal, after the signature verified
    }
    check(message.type == unverified.type && message.sequence == unverified.sequence
          && message.sender == unverified.sender && message.receiver == unverified.receiver,
          "verified message differs from its header")
    do {
        try message.validate()
    } catch {
        fail("verified message does not validate: \(error)")
    }
    // Padded as the input is: a binding update's zero padding is signed with it.
    check(SignalCodec.seal(message, with: fuzzKey, paddedTo: signedPart.count) == signedPart,
          "verified bytes are not what sealing gives: not canonical")

    do {
        _ = try unverified.verify(with: otherVerifyingKey)
        fail("verifies with another key")
    } catch {
        check(error == .badSignature, "another key gives \(error), not badSignature")
    }
    var tampered = signedPart
    let bit = signedPart.count &* 31 &+ Int(signedPart[signedPart.count / 2])
    tampered[(bit / 8) % signedPart.count] ^= 1 << (bit % 8)
    if let flipped = try? SignalCodec.open(tampered), (try? flipped.verify(with: fuzzVerifyingKey)) != nil {
        fail("verifies with bit \(bit % 8) of byte \((bit / 8) % signedPart.count) flipped")
    }
}

func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fail(message()) }
}

func fail(_ message: String) -> Never {
    fatalError("FuzzSignaling invariant violated: \(message)")
}

/// The UDP encapsulation's framing (`EncapWire`, docs/signaling.md) on the same datagram:
/// what parses has a length its kind allows and a packet of IP version 4 or 6; a control
/// datagram encodes back to the same bytes; and signaling never takes an encapsulation
/// datagram (their magics differ), so the two can share nothing by mistake.
func examineEncap(_ raw: UnsafeRawBufferPointer) {
    guard let frame = EncapWire.parse(raw) else { return }
    let bytes = Array(raw)
    check(bytes.count >= EncapWire.headerLength && bytes.prefix(6) == [0x4D, 0x41, 0x54, 0x75, 1, bytes[5]],
          "encapsulation header accepted with another magic or version")
    let rest = Array(bytes.dropFirst(EncapWire.headerLength))
    switch frame {
    case .packet:
        check(rest.count >= EncapWire.virtioHeaderLength + EncapWire.minimumPacketLength, "short packet accepted")
        let version = rest[EncapWire.virtioHeaderLength] >> 4
        check(version == 4 || version == 6, "IP version \(version) accepted")
    case .keepalive:
        check(bytes == EncapWire.control(.keepalive), "a keepalive does not encode back")
    case .probeRequest:
        check(bytes == EncapWire.control(.probeRequest, nonce: rest), "a probe request does not encode back")
    case .probeAnswer:
        check(bytes == EncapWire.control(.probeAnswer, nonce: rest), "a probe answer does not encode back")
    case .relayed:
        check(rest.count >= EncapWire.virtioHeaderLength + EncapWire.minimumPacketLength, "short relayed packet accepted")
        let version = rest[EncapWire.virtioHeaderLength] >> 4
        check(version == 4 || version == 6, "IP version \(version) accepted")
        let addresses = EncapWire.innerAddresses(raw)
        check((addresses == nil) == (version == 6 && rest.count < EncapWire.virtioHeaderLength + 40),
              "inner addresses read from a packet shorter than its header, or not read from a whole one")
    case .registration:
        examineRegistration(bytes)
    case .relayedSignal:
        examineRelayedSignal(bytes)
    case .registrationAnswer:
        let answer = RelayAnswer(raw)
        check(answer?.bytes == bytes, "a relay's answer does not encode back")
    }
    check((try? SignalCodec.open(raw)) == nil, "signaling opened an encapsulation datagram")
}

/// A relayed signal (`RelayedSignal`): its length is a message's with the origin and MAC
/// before it and the message starts with signaling's magic; the HoAs the relay routes by
/// are the message's own (the receiver the sender's side reads from the bare message); an
/// origin stamped (either HoA, of either family) reads back, leaves the message as it was
/// and is authentic with the secret it was stamped for only; the input's own MAC is not
/// (the fuzzer cannot guess an HMAC), nor anything cut short.
func examineRelayedSignal(_ bytes: [UInt8]) {
    check((RelayedSignal.minimumLength...RelayedSignal.maximumLength).contains(bytes.count)
          && bytes[RelayedSignal.signalOffset..<RelayedSignal.signalOffset + 4].elementsEqual([0x4D, 0x41, 0x54, 0x73]),
          "a relayed signal accepted with a length or magic no message has")
    let message = Array(bytes[RelayedSignal.signalOffset...])
    let hoas = bytes.withUnsafeBytes { RelayedSignal.addresses($0) }
    guard let hoas else { return }
    check(hoas.receiver == RelayedSignal.receiver(ofSignal: message), "the relay and the sender read different receivers")
    check(!bytes.withUnsafeBytes { RelayedSignal.isAuthentic($0, secret: fuzzRelaySecret) },
          "a relayed signal's MAC verified without being stamped")
    for origin in [hoas.sender, hoas.receiver] {
        var stamped = bytes
        stamped.withUnsafeMutableBytes { RelayedSignal.stamp(origin, for: fuzzRelaySecret, in: $0) }
        check(stamped.withUnsafeBytes { RelayedSignal.origin($0) } == origin
              && Array(stamped[RelayedSignal.signalOffset...]) == message,
              "a stamped origin does not read back, or the stamp changed the message")
        check(stamped.withUnsafeBytes { RelayedSignal.isAuthentic($0, secret: fuzzRelaySecret) }
              && !stamped.withUnsafeBytes { RelayedSignal.isAuthentic($0, secret: otherRelaySecret) }
              && !stamped.dropLast().withUnsafeBytes { RelayedSignal.isAuthentic($0, secret: fuzzRelaySecret) },
              "a stamped MAC does not verify with its secret only, or verifies cut short")
    }
}

/// A relay registration (`RelayRegistration`), as it is and re-signed with the fixed key:
/// what opens is canonical (sealing its HoAs and sequence number gives back its signed
/// part, and the whole input when it verifies), never verifies with another key, and a
/// re-signed one verifies. Its signature can never open as signaling (checked above).
func examineRegistration(_ bytes: [UInt8]) {
    let signedPart = Array(bytes.dropLast(64))
    let resigned = signedPart + Array(try! rawSigner.signature(for: signedPart))
    for input in [bytes, resigned] {
        guard let registration = input.withUnsafeBytes({ RelayRegistration($0) }) else { continue }
        check((1...RelayRegistration.maximumHoAs).contains(registration.hoas.count)
              && Set(registration.hoas).count == registration.hoas.count, "a registration opened with bad HoAs")
        check(registration.nodeKey.count == RelayExchangeKey.length
              && (registration.relayKey.map { $0.count == RelayExchangeKey.length && $0.contains { $0 != 0 } } ?? true),
              "a registration opened with an exchange key of another length, or a zero one named")
        let sealed = RelayRegistration.seal(hoas: registration.hoas, sequence: registration.sequence,
                                            nodeKey: registration.nodeKey, relayKey: registration.relayKey, with: fuzzKey)
        check(Array(sealed.dropLast(64)) == signedPart, "a registration does not encode back")
        check(!registration.verify(with: otherVerifyingKey), "a registration verifies with another key")
        if input == resigned {
            check(registration.verify(with: fuzzVerifyingKey), "a re-signed registration does not verify")
        }
        if registration.verify(with: fuzzVerifyingKey) {
            check(sealed == input, "a verified registration is not what sealing gives")
        }
    }
}
