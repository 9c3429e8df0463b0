import MATIMSCore
import MATMetrics

/// mat-ims's counters and zone gauges in the Prometheus text exposition format (0.0.4),
/// served on `metrics-listen` (docs/ims.md). Every counter of `IMSCounter` is exposed,
/// zeros too, grouped into families by the first word of its name (`updates-refused-policy`
/// is `mat_ims_updates_total{result="refused-policy"}`), so a counter added later is
/// exposed without a change here.
public enum IMSExposition {
    /// Families by counter-name prefix: the prefix, the family, its label and HELP text.
    private static let groups: [(prefix: String, family: String, label: String, help: String)] = [
        ("queries-", "mat_ims_query_results_total", "result", "Queries answered NXDOMAIN, NODATA or REFUSED, by result."),
        ("updates-", "mat_ims_updates_total", "result", "UPDATE requests by result: accepted, no change, refused or failed and why."),
        ("tsig-", "mat_ims_tsig_errors_total", "error", "Requests whose TSIG failed, by error."),
        ("malformed-", "mat_ims_malformed_total", "action", "Malformed requests, by what was done with them."),
        ("notify-", "mat_ims_notify_total", "event", "NOTIFY to secondaries: sent, acknowledged, given up."),
        ("tcp-", "mat_ims_tcp_events_total", "event", "TCP connections: accepted, rejected (limits), closed idle or stalled."),
        ("rrl-", "mat_ims_rate_limit_total", "action", "Response rate limiting: responses dropped, slipped (truncated), exempt by TSIG."),
    ]

    /// The exposition of `core`'s counters and zones. `uptimeSeconds`, when given, is
    /// exposed as `mat_ims_uptime_seconds`; `endpoint` are the metrics endpoint's own
    /// counters (`MetricsServer.counters`).
    public static func render(core: IMSCore, uptimeSeconds: UInt64? = nil, endpoint: [String: UInt64] = [:]) -> String {
        let counters = core.counters
        var grouped: [String: [([String: String], PrometheusWriter.Value)]] = [:]
        var others: [([String: String], PrometheusWriter.Value)] = []
        var queries: UInt64 = 0
        for counter in IMSCounter.allCases {
            let name = counter.description
            let value = PrometheusWriter.Value.integer(UInt64(clamping: counters[counter]))
            if counter == .queries {
                queries = UInt64(clamping: counters[counter])
            } else if let group = groups.first(where: { name.hasPrefix($0.prefix) }) {
                grouped[group.family, default: []].append(([group.label: String(name.dropFirst(group.prefix.count))], value))
            } else {
                others.append((["event": name], value))
            }
        }
        var out = PrometheusWriter()
        out.family("mat_ims_queries_total", "Queries received (every opcode QUERY, answered or not).", .counter,
                   [([:], .integer(queries))])
        for group in groups {
            out.family(group.family, group.help, .counter, grouped[group.family] ?? [])
        }
        out.family("mat_ims_events_total", "Other server events: transfers served and refused, truncated responses, "
                   + "NOTIMP, BADVERS, journal compactions, expired mappings.", .counter, others)
        let zones = core.zoneGauges
        out.family("mat_ims_zone_serial", "The SOA serial of each zone.", .gauge,
                   zones.map { (["zone": $0.name], .integer(UInt64($0.serial))) })
        out.family("mat_ims_zone_names", "Names in each zone.", .gauge,
                   zones.map { (["zone": $0.name], .integer(UInt64($0.names))) })
        out.family("mat_ims_journal_bytes", "Bytes in each zone's journal file since its last compaction "
                   + "(zones kept in memory only have none).", .gauge,
                   zones.compactMap { zone in zone.journalBytes.map { (["zone": zone.name], .integer(UInt64($0))) } })
        if let uptimeSeconds {
            out.family("mat_ims_uptime_seconds", "Seconds since mat-ims started.", .gauge, [([:], .integer(uptimeSeconds))])
        }
        out.family("mat_ims_metrics_events_total", "The metrics endpoint: connections and their outcomes, by event.",
                   .counter, endpoint.sorted { $0.key < $1.key }.map { (["event": $0.key], .integer($0.value)) })
        return out.text
    }
}
