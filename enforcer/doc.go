// Package enforcer renders MUD policies (policy.Policy) into nftables and
// keeps the kernel in step with them, over netlink (never the nft binary).
//
// # Layout
//
// Two tables of our own, nothing else touched: table inet mud (routed
// traffic, hooks forward and input, priority -5 by default) and table bridge
// mud (device-to-device traffic across the LAN bridge, hook forward, priority
// -205); mud's third, table bridge mud_dnshold, is package dnshold's. Base
// chains start with the conntrack fast path (inet), accept DHCP and ICMPv6
// neighbour discovery, then dispatch in two stages: data maps
// keyed by the sender's MAC (from_dev) and the receiver's address or MAC
// (to_dev4, to_dev6; bridge: from_dev again) give a dispatch id, carried in
// meta secmark to the chains policy_out / policy_in: their verdict maps
// out_chain / in_chain goto the chains of the ids that have chains
// (quarantine, block, policies with a drop, devices with overrides), any
// other id goes to allow_out / allow_in. A device, and an allow-only
// policy, cost only data elements, whose insertion the kernel does not
// validate (a jump element makes it re-validate the whole table). Direct
// dispatch (device maps that are verdict maps) remains for kernels without
// secmark and for systems whose LSM labels forwarded packets
// (Config.DirectDispatch).
//
// Peers (DNS names, manufacturers, models, controllers) are not in rules:
// a remote address maps to a group id (addr4/addr6 for single addresses,
// net4/net6 for the segments of classes that may hold prefixes; DNS TTLs are
// element timeouts), the peer's own id, or the id of a group of the peers
// sharing the address (peergrp lists its members). An allow-only policy
// (every MUD file without an explicit drop) is elements of acl_out / acl_in
// keyed dispatch id . group . family . protocol . remote port, looked up by
// the generic chains acl_out / acl_in with the packet's secmark; its ACEs
// that are not such triples (ICMP types, header fields, local ports, port
// ranges, literal prefixes) stay rules in pol_<id>_out / pol_<id>_in, which end in the acl
// chain; its default deny is counted per policy in the dynamic sets
// denyc_out / denyc_in, which the packet path fills; its App. A defaults
// are elements of an id shared by all policies with the same defaults,
// which the map app_a gives the acl chains. A policy with a drop is an ordered chain of rules
// (pol_<id>_*), as are all policies with direct dispatch. Accept is a
// `return` to the dispatch, so lateral traffic must pass the sender's
// from-device and the receiver's to-device policy; drop is final; the
// default deny goes to a shared rate-limited log-and-drop chain. Replies of
// permitted bridged flows pass like routed ones: with nf_conntrack_bridge
// by conntrack, with br_netfilter by the inet forward chain, else by a
// timeout set of the flows the bridge table accepted. See README.md for
// hooks, priorities and coexistence with other firewalls.
//
// # Planner, wire, kernel
//
// Package plan is the planner: it owns every object of our tables. From
// the model (policies, devices, peers), the configuration and the ids it
// allocates, it computes the pieces each object contributes (chains,
// elements), and from a change a Plan: a plain value listing the tables to
// replace, the chains to create, flush or delete with their rules, and the
// elements to add or delete per set with typed keys, values and expiries.
// It is the one place that decides what changed: which objects a change or
// a whole desired state (Sync) touches, how their new pieces differ from
// what the kernel holds (a DNS answer changes address elements, acl
// elements only when a group of peers appears or vanishes), which devices'
// flows must end. It never talks to the kernel; plan.Tables, an in-memory
// model of our tables that refuses what the kernel refuses, checks its
// plans in tests without root (a property test of random sequences of
// changes against rebuilds, golden plans in testdata/plans). Package
// nftwire encodes a plan into one batch of netlink messages (tables, sets,
// chains and rules through google/nftables; elements by hand, with a codec
// for every key type) and decodes what the kernel lists back into the
// plan's values. This package joins them to the kernel: it sends each plan
// on internal/nftbatch's socket, commits it to the planner only when the
// kernel accepted it, reads counters and the tables back, follows
// notifications and ends flows.
//
// # API
//
// New opens the netlink connections in a namespace (Config). Apply installs a
// complete desired state, rebuilding our tables; Sync makes a complete
// desired state the installed one by changing only what differs; Update,
// SetPolicy, RemovePolicy, UpsertDevice, RemoveDevice and SetPeer change
// parts of it. Every one of them goes through the same commit: the
// planner's plan, sent as one netlink transaction and adopted by the
// planner only when the kernel accepted it, so a rejected batch leaves both
// as they were (the error is a *BatchError).
// Devices whose treatment changed, including devices new to the model,
// lose their open flows right after the commit (conntrack entries, and
// the bridge table's remembered flows), in a goroutine of the Enforcer's
// that coalesces bursts (FlowsEnded waits for it). Run follows nftables
// notifications and undoes, within a second, any change someone else makes
// to our tables (Config.OnTamper hears of it), with a periodic comparison
// of kernel and plan as a backstop; Counters reads the per-rule counters;
// Render prints what would be installed, in nft syntax, with illustrative
// ids, and RenderDevice what is installed for one device, with its ids.
//
// All methods are safe for concurrent use: one mutex serialises them, so
// one goroutine at a time owns the planner and the netlink connections
// (google/nftables batch state is not shareable, and its set-id counter is
// a package global: the wire layer assigns set ids itself).
package enforcer
