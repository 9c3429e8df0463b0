import MATPacket

/// The sender's side of cookies: what was last sent to each destination (so a cookie reply
/// can be matched to it and the message sent again at once, with the cookie) and the
/// cookies destinations gave, attached to everything sent there while they are fresh.
///
/// Only a reply that echoes the signature of the last message sent to its source, within
/// ``replyWindow``, is taken: an attacker that did not see that message cannot plant a
/// cookie. Bounded: at most ``capacity`` destinations of each kind; when full, entries past
/// their lifetime go first, then the whole table (it only costs a round trip).
public struct CookieJar: Sendable {
    /// How long after a send a cookie reply to it is taken, milliseconds.
    public static let replyWindow: UInt64 = 5_000
    /// How long a cookie is attached, milliseconds: less than the two key periods the
    /// receiver accepts it for (``CookieGuard/rotationInterval``).
    public static let cookieLifetime: UInt64 = 100_000
    /// The most destinations remembered.
    public static let capacity = 4096

    private var lastSent: [IPAddress: (echo: Cookie, bytes: [UInt8], at: UInt64)] = [:]
    private var cookies: [IPAddress: (cookie: Cookie, at: UInt64)] = [:]

    public init() {}

    /// The bytes to send for the sealed message `sealed` to `destination` at `now`: with
    /// the destination's cookie when one is fresh. Remembers the message for a cookie reply.
    public mutating func prepare(_ sealed: [UInt8], to destination: IPAddress, now: UInt64) -> [UInt8] {
        if lastSent[destination] == nil && lastSent.count >= Self.capacity {
            lastSent = lastSent.filter { now < $0.value.at + Self.replyWindow }
            if lastSent.count >= Self.capacity { lastSent.removeAll() }
        }
        lastSent[destination] = (SignalCodec.echo(of: sealed), sealed, now)
        guard let entry = cookies[destination], now < entry.at + Self.cookieLifetime else { return sealed }
        return SignalCodec.attaching(entry.cookie, to: sealed)
    }

    /// A cookie reply from `source`: when it answers the last message sent there, keeps the
    /// cookie and returns that message with the cookie attached, to send again now.
    public mutating func take(_ reply: CookieReply, from source: IPAddress, now: UInt64) -> [UInt8]? {
        guard let sent = lastSent[source], sent.echo.matches(reply.echo), now < sent.at + Self.replyWindow else {
            return nil
        }
        if cookies[source] == nil && cookies.count >= Self.capacity {
            cookies = cookies.filter { now < $0.value.at + Self.cookieLifetime }
            if cookies.count >= Self.capacity { cookies.removeAll() }
        }
        cookies[source] = (reply.cookie, now)
        // Answered: a second copy of the reply does not send the message a third time.
        lastSent[source] = nil
        return SignalCodec.attaching(reply.cookie, to: sent.bytes)
    }
}
