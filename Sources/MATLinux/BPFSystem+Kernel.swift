#if canImport(Glibc)
import Glibc
#endif

extension BPFSystem {
    /// The running kernel's version from uname(2)'s release ("6.18.44-..." is 6.18); nil
    /// when it does not start with two numbers.
    public static func kernelVersion() -> (major: Int, minor: Int)? {
        var name = utsname()
        guard uname(&name) == 0 else { return nil }
        let release = withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return parseRelease(release)
    }

    /// The major and minor number of a kernel release string.
    static func parseRelease(_ release: String) -> (major: Int, minor: Int)? {
        let numbers = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        guard numbers.count == 2 else { return nil }
        return (numbers[0], numbers[1])
    }

    /// Whether bpf_l4_csum_replace takes BPF_F_IPV6 (Linux 6.16 and later). Before, the
    /// helper refuses the flag at run time (EINVAL for every packet, which the verifier
    /// does not see at load), so the IPv6 programs are built without it there
    /// (``TranslationPrograms6/Parameters/completeChecksumFlag``).
    public static let ipv6ChecksumFlagSupported: Bool = {
        guard let version = kernelVersion() else { return false }
        return version >= (6, 16)
    }()
}
