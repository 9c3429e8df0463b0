import MATPacket
import Testing
import MATSignaling

@Suite("Cookies and admission under load")
struct CookieTests {
    let genuine = Fixture.moa4, spoofed = Fixture.moa4b, other6 = Fixture.moa6

    @Test func cookieIsBoundToTheSourceAndOutlivesOneKeyChangeOnly() {
        var guardian = CookieGuard()
        let cookie = guardian.cookie(for: genuine, now: 1_000)
        do { let check1 = guardian.isValid(cookie, from: genuine, now: 1_000); #expect(check1) }
        do { let check2 = !guardian.isValid(cookie, from: spoofed, now: 1_000); #expect(check2) }
        do { let check3 = !guardian.isValid(Cookie(high: cookie.high, low: cookie.low ^ 1), from: genuine, now: 1_000); #expect(check3) }
        do { let check4 = guardian.cookie(for: genuine, now: 2_000) == cookie; #expect(check4, "stateless: the same within a period") }
        // One key change later the cookie still holds; two later it does not.
        let period = CookieGuard.rotationInterval
        do { let check5 = guardian.isValid(cookie, from: genuine, now: 1_000 + period); #expect(check5) }
        do { let check6 = guardian.cookie(for: genuine, now: 1_000 + period) != cookie; #expect(check6) }
        do { let check7 = !guardian.isValid(cookie, from: genuine, now: 1_000 + 2 * period); #expect(check7) }
        // After a long silence even the last cookie handed out is too old.
        let late = guardian.cookie(for: genuine, now: 1_000 + 2 * period)
        do { let check8 = !guardian.isValid(late, from: genuine, now: 1_000 + 5 * period); #expect(check8) }
        // Another node's guard has its own key.
        var elsewhere = CookieGuard()
        do { let check9 = !elsewhere.isValid(late, from: genuine, now: 1_000 + 2 * period); #expect(check9) }
    }

    @Test func underLoadStrangersGetCookiesAndCookiesBypassTheSharedBudget() {
        var admission = SignalAdmission(shared: TokenBucket(rate: 10, burst: 5))
        for i in 0..<5 {
            let source = IPAddress.v4(IPv4Address(203, 0, 113, UInt8(100 + i)))
            do { let check10 = admission.admit(from: source, cookie: nil, now: 0) == .accept; #expect(check10) }
        }
        // The shared budget is spent: a genuine peer without a cookie is asked for one...
        guard case .askForCookie(let cookie) = admission.admit(from: genuine, cookie: nil, now: 0) else {
            Issue.record("no cookie asked for under load")
            return
        }
        // ...and with it, it gets through while the flood goes on.
        do { let check11 = admission.admit(from: genuine, cookie: cookie, now: 1) == .accept; #expect(check11) }
        // The cookie is the genuine source's: a spoofed source carrying it is asked again.
        do { let check12 = admission.admit(from: spoofed, cookie: cookie, now: 1) != .accept; #expect(check12) }
        // The shared budget refills (10/s: one per 100 ms), and then no cookie is needed.
        do { let check13 = admission.admit(from: other6, cookie: nil, now: 100) == .accept; #expect(check13) }
    }

    @Test func perSourceBudgetComesFirstAndCookieRepliesAreBounded() {
        var admission = SignalAdmission(perSource: RateLimiter(perSourceRate: 1, perSourceBurst: 2),
                                        shared: TokenBucket(rate: 0, burst: 0),
                                        cookieReplies: TokenBucket(rate: 0, burst: 3))
        let first = admission.admit(from: genuine, cookie: nil, now: 0)
        guard case .askForCookie(let cookie) = first else {
            Issue.record("expected a cookie, got \(first)")
            return
        }
        do { let check14 = admission.admit(from: genuine, cookie: cookie, now: 0) == .accept; #expect(check14) }
        // Two tokens per source: even a valid cookie does not pass a spent source budget.
        do { let check15 = admission.admit(from: genuine, cookie: cookie, now: 0) == .refuse; #expect(check15) }
        // Cookie replies have their own budget (3 here): then strangers are refused outright.
        var asked = 0, refused = 0
        for i in 0..<10 {
            switch admission.admit(from: .v4(IPv4Address(203, 0, 113, UInt8(i))), cookie: nil, now: 0) {
            case .askForCookie: asked += 1
            case .refuse: refused += 1
            case .accept: Issue.record("a stranger passed a spent shared budget")
            }
        }
        #expect(asked == 2 && refused == 8)
        // A cookie reply spends only its source's budget.
        do { let check16 = admission.admitCookieReply(from: other6, now: 0); #expect(check16) }
        do { let check17 = admission.admitCookieReply(from: other6, now: 0); #expect(check17) }
        do { let check18 = !admission.admitCookieReply(from: other6, now: 0); #expect(check18) }
    }

    @Test func cookieReplyWireFormatAndTrailer() throws {
        let reply = CookieReply(echo: Cookie(high: 0x0102_0304_0506_0708, low: 0x090A_0B0C_0D0E_0F10),
                                cookie: Cookie(high: 0xA1A2_A3A4_A5A6_A7A8, low: 0xB1B2_B3B4_B5B6_B7B8))
        let bytes = SignalCodec.seal(reply)
        #expect(bytes == Array("MATs".utf8) + [1, 5, 0, 0] + Array(1...16)
                + [0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xB1, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8])
        let isReply = bytes.withUnsafeBytes { SignalCodec.isCookieReply($0) }
        let opened = try bytes.withUnsafeBytes { raw throws(SignalError) in try SignalCodec.openCookieReply(raw) }
        #expect(isReply && opened == reply)
        for broken in [Array(bytes.dropLast()), bytes + [0], [0x4E] + bytes.dropFirst(), bytes.enumerated().map { $0.0 == 7 ? 1 : $0.1 }] {
            broken.withUnsafeBytes { raw in
                #expect(throws: SignalError.self) { try SignalCodec.openCookieReply(raw) }
            }
        }
        // Every message may carry a cookie after its signature; the signature still verifies.
        for message in Fixture.allMessages {
            let sealed = SignalCodec.seal(message, with: Fixture.keyA)
            let withCookie = SignalCodec.attaching(reply.cookie, to: sealed)
            let opened = try SignalCodec.open(withCookie)
            #expect(opened.cookie == reply.cookie)
            #expect(try opened.verify(with: Fixture.keyA.publicKey) == message)
            #expect(opened.cookieEcho == SignalCodec.echo(of: sealed))
            #expect(opened.datagramLength == withCookie.count)
            #expect(try SignalCodec.open(sealed).cookie == nil)
            withCookie.withUnsafeBytes { raw in
                let trailer = SignalCodec.peekTrailer(raw)
                #expect(trailer?.cookie == reply.cookie && trailer?.echo == SignalCodec.echo(of: sealed))
            }
            // Anything but exactly a cookie after the signature is malformed.
            #expect(throws: SignalError.badLength) { try SignalCodec.open(withCookie + [0]) }
            (sealed + [1, 2, 3]).withUnsafeBytes { raw in #expect(SignalCodec.peekTrailer(raw) == nil) }
        }
    }

    @Test func senderTakesOnlyARepliesToItsLastMessageAndAttachesTheCookie() {
        var jar = CookieJar()
        let message = SignalCodec.seal(Fixture.allMessages[0], with: Fixture.keyA)
        let later = SignalCodec.seal(Fixture.allMessages[1], with: Fixture.keyA)
        let cookie = Cookie(high: 7, low: 8)
        do { let check19 = jar.prepare(message, to: genuine, now: 0) == message; #expect(check19, "no cookie yet: sent as sealed") }
        // A reply that does not echo the message, or comes from elsewhere, is ignored.
        do { let check20 = jar.take(CookieReply(echo: Cookie(high: 1, low: 2), cookie: cookie), from: genuine, now: 10) == nil; #expect(check20) }
        let answer = CookieReply(echo: SignalCodec.echo(of: message), cookie: cookie)
        do { let check21 = jar.take(answer, from: spoofed, now: 10) == nil; #expect(check21) }
        // The right one: the message again, with the cookie; a duplicate reply sends nothing.
        do { let check22 = jar.take(answer, from: genuine, now: 10) == SignalCodec.attaching(cookie, to: message); #expect(check22) }
        do { let check23 = jar.take(answer, from: genuine, now: 11) == nil; #expect(check23) }
        // Later messages to that address carry the cookie while it is fresh.
        do { let check24 = jar.prepare(later, to: genuine, now: 20) == SignalCodec.attaching(cookie, to: later); #expect(check24) }
        do { let check25 = jar.prepare(later, to: spoofed, now: 20) == later; #expect(check25) }
        do { let check26 = jar.prepare(later, to: genuine, now: 10 + CookieJar.cookieLifetime) == later; #expect(check26) }
        // A reply after the reply window is too late.
        let stale = CookieReply(echo: SignalCodec.echo(of: later), cookie: cookie)
        do { let check27 = jar.take(stale, from: genuine, now: 10 + CookieJar.cookieLifetime + CookieJar.replyWindow) == nil; #expect(check27) }
    }
}

@Suite("Token bucket")
struct TokenBucketTests {
    @Test func burstRefillAndBackwardTime() {
        var bucket = TokenBucket(rate: 5, burst: 2)
        do { let check28 = bucket.isFull(now: 0); #expect(check28) }
        do { let check29 = bucket.take(now: 0) && bucket.take(now: 0) && !bucket.take(now: 0); #expect(check29) }
        do { let refill = !bucket.take(now: 199) && bucket.take(now: 200); #expect(refill) }  // one token per 200 ms
        do { let check30 = !bucket.take(now: 100); #expect(check30, "time going back gains nothing") }
        do { let check31 = bucket.isFull(now: 10_000); #expect(check31) }
        var huge = TokenBucket(rate: UInt32.max, burst: UInt32.max)
        do { let check32 = huge.take(now: 0) && huge.take(now: UInt64.max); #expect(check32) }
        var empty = TokenBucket(rate: 1000, burst: 0)
        do { let check33 = !empty.take(now: 0) && !empty.take(now: 60_000); #expect(check33) }
    }
}
