/// Writes metric families in the Prometheus text exposition format (version 0.0.4): HELP
/// and TYPE lines, then the samples with escaped, sorted labels. matd's and mat-ims's
/// expositions are both written with it.
public struct PrometheusWriter: Sendable {
    /// The Content-Type of the text format.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    public enum Kind: String, Sendable { case counter, gauge, histogram }

    public enum Value: Sendable {
        case integer(UInt64)
        case real(Double)

        var text: String {
            switch self {
            case .integer(let value): String(value)
            case .real(let value): value.isFinite ? String(value) : (value.isNaN ? "NaN" : (value > 0 ? "+Inf" : "-Inf"))
            }
        }
    }

    /// One histogram's samples: cumulative counts at each upper bound (seconds), then of
    /// all samples (the `+Inf` bucket), their sum and count.
    public struct Histogram: Sendable {
        public var boundsSeconds: [Double]
        /// One more than `boundsSeconds`: the last is every sample.
        public var cumulative: [UInt64]
        public var sumSeconds: Double
        public var count: UInt64

        public init(boundsSeconds: [Double], cumulative: [UInt64], sumSeconds: Double, count: UInt64) {
            self.boundsSeconds = boundsSeconds
            self.cumulative = cumulative
            self.sumSeconds = sumSeconds
            self.count = count
        }
    }

    public private(set) var text = ""

    public init() {}

    /// One family; written even without samples, so scrapers always see its HELP and TYPE.
    public mutating func family(_ name: String, _ help: String, _ kind: Kind, _ samples: [([String: String], Value)]) {
        header(name, help, kind)
        for (labels, value) in samples { sample(name, labels, value) }
    }

    /// One histogram family with a series per label set.
    public mutating func histograms(_ name: String, _ help: String, _ series: [([String: String], Histogram)]) {
        header(name, help, .histogram)
        for (labels, histogram) in series {
            let bounds = histogram.boundsSeconds.map { String($0) } + ["+Inf"]
            for (bound, count) in zip(bounds, histogram.cumulative) {
                sample(name + "_bucket", labels.merging(["le": bound]) { $1 }, .integer(count))
            }
            sample(name + "_sum", labels, .real(histogram.sumSeconds))
            sample(name + "_count", labels, .integer(histogram.count))
        }
    }

    private mutating func header(_ name: String, _ help: String, _ kind: Kind) {
        text += "# HELP \(name) \(Self.escape(help, quotes: false))\n# TYPE \(name) \(kind.rawValue)\n"
    }

    private mutating func sample(_ name: String, _ labels: [String: String], _ value: Value) {
        text += name
        if !labels.isEmpty {
            text += "{" + labels.sorted { $0.key < $1.key }.map { "\($0.key)=\"\(Self.escape($0.value))\"" }
                .joined(separator: ",") + "}"
        }
        text += " \(value.text)\n"
    }

    /// Text escaped as the format wants: backslash and newline always, the double quote in
    /// label values (`quotes`) but not in HELP text.
    public static func escape(_ value: String, quotes: Bool = true) -> String {
        var out = ""
        for character in value {
            switch character {
            case "\\": out += "\\\\"
            case "\"" where quotes: out += "\\\""
            case "\n": out += "\\n"
            default: out.append(character)
            }
        }
        return out
    }
}
