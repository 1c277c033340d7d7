// Package enforcer renders MUD policies (policy.Policy) into nftables and
// keeps the kernel in step with them, over netlink (github.com/google/nftables
// for encoding; never the nft binary).
//
// # Layout
//
// Two tables of our own, nothing else touched: table inet mud (routed
// traffic, hooks forward and input, priority -5 by default) and table bridge
// mud (device-to-device traffic across the LAN bridge, hook forward, priority
// -205). Base chains start with the conntrack fast path (inet), accept DHCP
// and ICMPv6 neighbour discovery, then dispatch in two stages: data maps
// keyed by the sender's MAC (from_dev) and the receiver's address or MAC
// (to_dev4, to_dev6; bridge: to_dev) give a dispatch id, carried in meta
// secmark to the verdict maps out_chain / in_chain, which jump to the chains.
// A device costs only data elements, whose insertion the kernel does not
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
// chain; its default deny is counted per policy by its element of
// denyc_out / denyc_in. A policy with a drop is an ordered chain of rules
// (pol_<id>_*), as are all policies with direct dispatch. Accept is a
// `return` to the dispatch, so lateral traffic must pass the sender's
// from-device and the receiver's to-device policy; drop is final; the
// default deny goes to a shared rate-limited log-and-drop chain. groups.go
// keeps the address → group → element layer incremental: a DNS answer
// changes address elements, and acl elements only when a group appears or
// vanishes. Replies of permitted bridged flows pass like routed ones
// (bridgeflows.go): with nf_conntrack_bridge by conntrack, with
// br_netfilter by the inet forward chain, else by a timeout set of the
// flows the bridge table accepted. See README.md for hooks, priorities and
// coexistence with other firewalls.
//
// # API
//
// New opens the netlink connections in a namespace (Config). Apply installs a
// complete desired state; Update, SetPolicy, RemovePolicy, UpsertDevice,
// RemoveDevice and SetPeer change parts of it. Every one of them goes through
// the same commit: the pieces (chains, elements) of the changed objects are
// diffed against those the kernel holds and sent as one netlink transaction;
// Apply and repairs rebuild our tables from all pieces in one transaction.
// The in-memory model changes only when the kernel accepted the batch, so a
// rejected batch leaves both as they were (the error is a *BatchError).
// Devices whose treatment changed, including devices new to the model,
// lose their open flows right after the commit (conntrack entries, and
// the bridge table's remembered flows), in a goroutine of the Enforcer's
// that coalesces bursts (FlowsEnded waits for it). Run follows nftables
// notifications and undoes, within a second, any change someone else makes
// to our tables (Config.OnTamper hears of it), with a periodic comparison
// of kernel and plan as a backstop; Counters reads the
// per-rule counters; Render prints what would be installed, in nft syntax.
//
// All methods are safe for concurrent use: one mutex serialises them, so
// one goroutine at a time owns the netlink connections (google/nftables
// batch state is not shareable, and its set-id counter is a package global:
// we assign set ids ourselves).
package enforcer
