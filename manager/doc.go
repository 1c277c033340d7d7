// Package manager is mudd's reconciler and device state machine: the one
// package that knows all the others.
//
// One goroutine (Run) owns the desired state: the devices, their MUD files
// and compiled policies, approvals, pins, overrides and controller mappings,
// mirrored from the store. Every input — a DHCP lease event, a finished fetch,
// a DNS update, an admin command, a timer (cache refresh due, removal grace
// period over) — is handled in that goroutine, changes the desired state,
// writes it to the store first (device and event in one fsync'd
// transaction), and then drives the enforcer until the kernel matches. Admin
// commands are requests answered through the same loop, so there are no locks
// in the logic; fetches run in goroutines the manager starts, schedules
// fairly between bridge ports, bounds and waits for.
//
// # Reconciling: one transaction, what changed only
//
// Every place that changes what the enforcer or the resolver should hold
// marks it dirty: a device record, a device's overrides, a URL's compiled
// file, a DNS name's addresses; a reload of the settings or a change of a
// controller mapping marks everything. A reconcile recomputes the entries
// of the marked devices only, and the peers their change can affect: a
// device joining or leaving a model or manufacturer class (or changing
// its addresses in it) marks the class, which is recomputed from its
// members. A policy is installed while an enforced device uses it, a peer
// while an installed policy or an enforced device's overrides name it
// (reference counts). Everything a reconcile changes goes to the enforcer
// in one transaction (enforcer.Update): the cost of an event follows what
// it changed, not how many devices there are. A transaction the enforcer
// refuses makes the next reconcile a full Apply of the whole desired
// state, derived from scratch.
//
// Inputs that wait while the loop is busy are handled together and
// reconciled once (up to DefaultBatchMax of them, for DefaultBatchTime at
// most), so a burst of DHCP arrivals becomes a few transactions: the
// batch's store changes share one store transaction (store.Group, one
// fsync), and no fsync is on an arrival's way to enforcement: a batch
// with an administrator's request is committed while its reconcile drives
// the kernel, and answered after both; the changes of other batches stay
// uncommitted while further inputs come (up to DefaultBatchTime; once
// nothing has come for a millisecond, they are committed). The events and
// fleet decisions a change makes go out after its commit. The kernel may
// hold a change a few milliseconds before the disk; if mudd dies in
// between, its start makes the kernel equal the store, as if it had died
// just before the change. Snooped DNS answers (HandleDNS: the DNS hold releases an
// answer once its addresses are allowed) go before every other input,
// and their addresses to the enforcer at once — alone, if a batch is
// under way.
//
// # Device lifecycle
//
//	discovered ──▶ fetching ──▶ enforced | pending-approval | failed ──▶ removed
//	     └──(file cached)─────────▲
//	quarantined: from any state (admin), back to the evaluated state on release
//	removed ──(lease seen again)──▶ discovered
//	never enforced, no address, not seen for forget_after ──▶ forgotten (record deleted)
//
// A device is evaluated from its MUD URL, the cached file for that URL, the
// compiled policy and the pins and approvals in the store:
//
//   - no cached file: fetching (a fetch is queued), or failed once a fetch
//     failed — it stays failed through the retries until one succeeds;
//   - the URL the device announced is invalid (dhcpsnoop's invalid-mud-url
//     flag, e.g. a fragment) and it has no other: failed;
//   - the file does not parse or compile: failed;
//   - pending-approval (RFC 8520 §13.2, §16) when the signature is missing or
//     invalid or the signer does not chain to a trust anchor, when the URL
//     authority or signer pinned for this MAC (or the signer pinned for this
//     URL) changed, when the file contains IP literals
//     (policy.Policy.NeedsApproval), or when DHCPv4 and DHCPv6 announced
//     different URLs — unless an approval for exactly this file's digest
//     exists for the MAC or for the URL;
//   - otherwise enforced, and the signer and authority are pinned.
//
// # When the file cannot be used: availability or safety
//
// While fetching, failed or pending approval, a device is held to
// policy.on_failure, and every device record says which (Enforcement):
//
//   - "baseline" (the default) favours availability: the device is in no
//     map of the enforcer, as if it had announced no MUD URL — unrestricted
//     by MUD, "unenforced". A MUD server that is down, a signature that
//     does not verify or a file awaiting approval then leaves the device as
//     open as the gateway's own firewall makes it, until the file can be
//     used;
//   - "block" favours safety: the device can do nothing but DHCP,
//     "blocked", until its file can be used — at the price of a device that
//     does not work while its manufacturer's server is down or an
//     administrator has not looked.
//
// An unenforced device is never silent: its record carries Enforcement
// "unenforced" and UnenforcedReason ("MUD server unreachable: …"), the
// events "unenforced" and "unenforced-ended" mark when it became and
// stopped being so, and the mud_devices_unenforced gauge counts them. The
// enforcer is driven from Enforcement alone, so what mudctl shows is what
// the kernel holds; a reload that changes on_failure re-evaluates every
// device. At start-up the cached files are verified again: a signer that
// expired meanwhile or a trust anchor no longer configured (all of them, if
// none is) puts the file back to pending approval, and its devices under
// on_failure, in the one start-up reconcile.
//
// A cached, previously verified file keeps being enforced when the MUD
// server is unreachable, and cache expiry never removes enforcement
// (RFC 8520 §3.5): expiry only schedules a refresh. A refreshed file that is
// no longer verified does not replace the verified one in the cache.
//
// # Fetching: retries and fairness
//
// A failed fetch is retried by itself after Settings.RetryInitial (5 s),
// the delay doubling with each further failure up to Settings.RetryMax
// (5 min), less up to a quarter at random so that devices that failed
// together do not retry together. Every attempt is recorded: the URL's
// latest attempts, failures and next attempt in the device view
// (FetchView), and a "fetch-failed" event per failed attempt.
//
// Fetches are queued per bridge port (dhcpsnoop names the port from the
// bridge's forwarding database; unknown ports share one bucket) and started
// in turns between ports, devices with a lease before those that only
// asked, within the slots (MaxFetches, MaxFetchesPerPort) and the budgets
// per window (FetchBudget overall, FetchBudgetPerPort, FetchBudgetPerDevice).
// A fetch over a budget waits rather than fails. So a host on one port
// announcing thousands of made-up MACs with distinct URLs, or URLs whose
// server hangs, spends its port's share and no more: devices on the other
// ports are fetched at once. Such a port raises a rate-limited "fetch-flood"
// event naming it. The URLs themselves arrive in one normal form
// (dhcpsnoop.ParseMUDURL), so spellings of one URL are one fetch.
//
// Records of devices that never got past DHCP — never enforced, no address
// now, nothing an administrator set for them — are forgotten once not seen
// for Settings.ForgetAfter, with one "forgotten" event per sweep.
//
// Rules are removed only when the lease ends (release, decline or expiry
// leaving the device without addresses), after Config.RemovalGrace; a
// renewal or address change updates the binding in place and cancels a
// pending removal.
//
// # Peers
//
// Devices announcing the same URL share one compiled policy. The peer sets
// are live: "model:URL" and "manufacturer:AUTHORITY" hold the addresses of
// the enforced devices with that URL or authority (a device pending approval
// is not trusted into a group, RFC 8520 §16), "controller:URI" and
// "my-controller:URL" come from the configuration and the store's mappings
// (the store's, set with mudctl, win), "local-networks" from
// Config.LocalNetworks, and "dns:NAME" from resolver updates. The DNS names
// of installed policies are watched in the resolver (owner: the policy ID)
// and unwatched when the last policy using them goes; each enforced device's
// names are given to DNS snooping.
//
// # Never above the baseline
//
// MUD only ever restricts (RFC 8520 §16): an accept in
// the enforcer's chains only lets a packet continue to the administrator's
// own firewall, so a device — whatever URL it announced over DHCP — never
// gets more than the no-MUD baseline. Manufacturer and model classes never
// mix administrator-bound (strong) and DHCP-learnt (weak) members: when any
// member was bound by an administrator, only those are in the class (RFC
// 8520 §16).
//
// # Several gateways: the fleet
//
// With Config.Fleet (store.backend etcd), the administrator's decisions
// — pins, approvals and rejections, overrides, controller and
// my-controller mappings, bindings — go to the site's other gateways once
// the store has committed them, and theirs arrive as inputs of Run, to be
// stored and applied exactly like a local decision, with events naming
// the fleet as their origin; nothing received is sent back. Device
// summaries go when a device's state, addresses or enforcement change.
// While etcd is unreachable nothing changes: enforcement keeps to the
// local store ("fleet-partition", "fleet-heal" events). See fleet.go.
//
// # Restart
//
// Run loads the store snapshot, re-verifies cached signatures against the
// current trust anchors and clock, and does ONE full reconcile through the
// enforcer's atomic Apply. Our tables stay in the kernel while mudd is down, so a device
// is never left open in between; nothing else deletes or flushes them.
package manager
