// Package violations owns turning the enforcer's logged drops into
// violation records: the admin sees that a camera tried to reach a host its
// manufacturer never declared.
//
// The enforcer logs default-deny and source-guard drops to an NFLOG group
// (enforcer/README.md, "Logged drops"), with the prefixes PrefixDenyOut,
// PrefixDenyIn and PrefixGuard, at most 10 packets per second per prefix
// and table. A Reader binds that group over netlink (nfnetlink_log, in the
// gateway's network namespace), parses each message (Parser: the prefix,
// the link-layer header, the packet, which internal/packet decodes) and
// adds the drop to its Table.
//
// Which device: for an out drop (and a source-guard drop) the source MAC
// of the link-layer header the packet arrived with. For an in drop in the
// bridge table (lateral traffic) the destination MAC of that header. For an
// in drop in the inet table (routed, from the WAN side) the link-layer
// header names the gateway, so the device is the packet's destination
// address, mapped to its MAC by Config.DeviceOf; without a mapping the
// record is keyed by that address (Violation.MAC nil). The payload starts
// at the IP header in both tables (the bridge table's messages carry the
// Ethernet header as NFULA_L2HDR besides).
//
// A Table aggregates drops per device, direction, kind, peer address,
// protocol and destination port (ICMP type), counting them with the first
// and last time seen. Its memory is bounded: at most MaxRecords records
// (default 4096) and MaxPerDevice (default 64) per device; inserting past a
// bound evicts the least recently seen record (the device's own first),
// counted in Stats.Evicted. A device spraying 10,000 distinct forbidden
// destinations therefore holds 64 records and cannot push out other
// devices' records. A record costs about 430 bytes of heap
// (BenchmarkTableMemory): a device's 64 about 27 KiB, a full table of 4096
// about 1.7 MiB.
//
// New and updated records go out on Updates, rate-limited per device (a
// token bucket: Burst 10, then Rate 1 per second; a record that changes
// while held back goes out once, with its latest state, when the bucket
// allows). The channel never blocks the reader: when it is full,
// deliveries wait for the next flush. List and Snapshot return the held
// records; Counters the per-device-and-direction drop counts of the
// MetricDevices (default 32) devices with most drops plus all-device
// totals, at most 2·32+2 series (WriteMetrics writes them in the
// Prometheus text format); Stats the parse errors by name, overruns and
// evictions.
//
// Every message is hostile input: a malformed message or packet is counted
// under a named reason (ParseError, Stats.Errors) and skipped, never a
// panic (FuzzParseMessage).
package violations
