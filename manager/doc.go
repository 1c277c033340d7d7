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
// in the logic; fetches run in goroutines the manager starts, bounds and waits
// for.
//
// # Device lifecycle
//
//	discovered ──▶ fetching ──▶ enforced | pending-approval | failed ──▶ removed
//	     └──(file cached)─────────▲
//	quarantined: from any state (admin), back to the evaluated state on release
//	removed ──(lease seen again)──▶ discovered
//
// A device is evaluated from its MUD URL, the cached file for that URL, the
// compiled policy and the pins and approvals in the store:
//
//   - no cached file: fetching (a fetch is started), or failed when the last
//     fetch failed;
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
// While fetching, pending or failed the device gets policy.on_failure:
// "baseline" (it is in no map of the enforcer: the no-MUD treatment) or
// "block". A cached, previously verified file keeps being enforced when the
// MUD server is unreachable, and cache expiry never removes enforcement
// (RFC 8520 §3.5): expiry only schedules a refresh. A refreshed file that is
// no longer verified does not replace the verified one in the cache.
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
// # Restart
//
// Run loads the store snapshot, re-verifies cached signatures against the
// current trust anchors, and does ONE full reconcile through the enforcer's
// atomic Apply. Our tables stay in the kernel while mudd is down, so a device
// is never left open in between; nothing else deletes or flushes them.
package manager
