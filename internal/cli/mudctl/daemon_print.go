package mudctl

// Table rendering of the daemon commands' answers.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/internal/cli"
)

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

// flushTable flushes t, reporting a write failure as an I/O error.
func flushTable(t *tabwriter.Writer) error {
	if err := t.Flush(); err != nil {
		return cli.IOError(fmt.Errorf("write: %w", err))
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.RFC3339)
}

func joinAddrs[T fmt.Stringer](xs []T) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = x.String()
	}
	return dash(strings.Join(parts, ","))
}

func writeJSONLine(w io.Writer, v any) error {
	if err := json.NewEncoder(w).Encode(v); err != nil {
		return cli.IOError(fmt.Errorf("write: %w", err))
	}
	return nil
}

func printStatus(w io.Writer, st api.Status) error {
	t := newTable(w)
	states := make([]string, 0, len(st.DevicesByState))
	for s, n := range st.DevicesByState {
		states = append(states, fmt.Sprintf("%s %d", s, n))
	}
	slices.Sort(states)
	health := "healthy"
	if !st.Enforcer.Healthy {
		health = "UNHEALTHY"
	}
	fmt.Fprintf(t, "version\t%s\n", st.Version)
	fmt.Fprintf(t, "uptime\t%s\n", (time.Duration(st.UptimeSeconds) * time.Second).String())
	fmt.Fprintf(t, "devices\t%d\t%s\n", st.Devices, strings.Join(states, ", "))
	unenforced := "0"
	if st.DevicesUnenforced > 0 {
		unenforced = fmt.Sprintf("%d UNENFORCED (mudctl devices says why)", st.DevicesUnenforced)
	}
	fmt.Fprintf(t, "devices unenforced\t%s\n", unenforced)
	fmt.Fprintf(t, "policies installed\t%d\n", st.PoliciesInstalled)
	fmt.Fprintf(t, "dns answers refused\t%d\n", st.DNSAnswersRefused)
	fmt.Fprintf(t, "enforcer\t%s\n", health)
	fmt.Fprintf(t, "last apply\t%s\t%.2f ms\n", when(st.Enforcer.LastApply), st.Enforcer.LastApplyLatency)
	if st.Enforcer.LastError != "" {
		fmt.Fprintf(t, "last error\t%s\t%s\n", when(st.Enforcer.LastErrorAt), st.Enforcer.LastError)
	}
	fmt.Fprintf(t, "tables\t%s\n", dash(strings.Join(st.Enforcer.Tables, ", ")))
	fmt.Fprintf(t, "bridge conntrack\t%t\n", st.Enforcer.BridgeConntrack)
	fmt.Fprintf(t, "bridge replies\t%s\n", dash(st.Enforcer.BridgeReplies))
	fmt.Fprintf(t, "tables repaired\t%d\n", st.Enforcer.Repairs)
	if len(st.LateralUnenforced) == 0 {
		fmt.Fprintf(t, "lateral unenforced\tnone found\n")
	}
	for _, g := range st.LateralUnenforced {
		where := g.Interface
		if g.Port != "" {
			where += " port " + g.Port
		}
		line := fmt.Sprintf("%s (%s): %s", where, g.Severity, g.Reason)
		if g.Fix != "" {
			line += "; fix: " + g.Fix
		}
		fmt.Fprintf(t, "lateral unenforced\t%s\n", line)
	}
	if f := st.Fleet; f != nil {
		conn := "connected"
		if !f.Connected {
			conn = "PARTITIONED (enforcing from the local store)"
		}
		fmt.Fprintf(t, "fleet\t%s\t%s, %d writes queued\n", f.GatewayID, conn, f.QueuedWrites)
	}
	return flushTable(t)
}

// printDevices lists the devices. ENFORCEMENT is in capitals when a
// device's MUD file cannot be used and it is unrestricted for it
// (UNENFORCED), and the reason ends the line.
//
// With mudd's nft.device_counters, SENT/DROPPED and RECEIVED/DROPPED give
// each device's packets its tables judged and, after the slash, dropped.
// A gateway of a fleet names itself in a first column, GATEWAY.
func printDevices(w io.Writer, ds []api.Device) error {
	counted := slices.ContainsFunc(ds, func(d api.Device) bool { return d.Counters != nil })
	gateway := slices.ContainsFunc(ds, func(d api.Device) bool { return d.Gateway != "" })
	t := newTable(w)
	if gateway {
		fmt.Fprint(t, "GATEWAY\t")
	}
	if counted {
		fmt.Fprintln(t, "MAC\tIPS\tHOSTNAME\tSTATE\tENFORCEMENT\tMUD URL\tSENT/DROPPED\tRECEIVED/DROPPED\tREASON")
	} else {
		fmt.Fprintln(t, "MAC\tIPS\tHOSTNAME\tSTATE\tENFORCEMENT\tMUD URL\tREASON")
	}
	for _, d := range ds {
		enf := dash(string(d.Enforcement))
		if d.Enforcement == api.EnforcementUnenforced {
			enf = "UNENFORCED"
		}
		if gateway {
			fmt.Fprintf(t, "%s\t", dash(d.Gateway))
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t", d.MAC, joinAddrs(d.IPs), dash(d.Hostname), d.State, enf, dash(d.MUDURL))
		if counted {
			sent, recv := "-", "-"
			if c := d.Counters; c != nil {
				sent = fmt.Sprintf("%d/%d", c.SentPackets, c.SentDroppedPackets)
				recv = fmt.Sprintf("%d/%d", c.ReceivedPackets, c.ReceivedDroppedPackets)
			}
			fmt.Fprintf(t, "%s\t%s\t", sent, recv)
		}
		fmt.Fprintf(t, "%s\n", d.UnenforcedReason)
	}
	return flushTable(t)
}

func printDevice(w io.Writer, d api.Device) error {
	t := newTable(w)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(t, "%s\t%s\n", k, v)
		}
	}
	row("mac", d.MAC)
	row("ips", joinAddrs(d.IPs))
	switch {
	case len(d.StaticIPs) > 0 && d.BindOnFirstUse:
		row("static ips", joinAddrs(d.StaticIPs)+" (bound on first use)")
	case len(d.StaticIPs) > 0:
		row("static ips", joinAddrs(d.StaticIPs))
	case d.BindOnFirstUse:
		row("static ips", "none yet: the first address it uses is bound to it")
	}
	row("hostname", dash(d.Hostname))
	row("interface", d.Interface)
	row("port", d.Port)
	row("state", string(d.State))
	row("reason", d.Reason)
	switch d.Enforcement {
	case api.EnforcementUnenforced:
		row("enforcement", "UNENFORCED (unrestricted: policy.on_failure baseline)")
	default:
		row("enforcement", string(d.Enforcement))
	}
	row("unenforced because", d.UnenforcedReason)
	row("invalid mud url", d.InvalidMUDURL)
	for _, r := range d.PendingReasons {
		row("pending because", r)
	}
	if q := d.Quarantine; q != nil {
		row("quarantined", fmt.Sprintf("since %s by %s: %s", when(q.At), dash(q.By), dash(q.Reason)))
	}
	row("mud url", dash(d.MUDURL))
	row("mud url source", string(d.URLSource))
	row("policy", d.PolicyID)
	if m := d.MUD; m != nil {
		row("manufacturer", m.MfgName)
		row("model", m.ModelName)
		row("systeminfo", m.SystemInfo)
		row("firmware", m.FirmwareRev)
		row("software", m.SoftwareRev)
		row("documentation", m.Documentation)
		if m.IsSupported != nil {
			row("supported", fmt.Sprint(*m.IsSupported))
		}
		printTransparency(row, m.Transparency)
		if m.TLSProfileSupported != nil {
			tls := "not supported by the device (RFC 9761)"
			if *m.TLSProfileSupported {
				tls = "supported by the device (RFC 9761; mudd does not enforce it)"
			}
			row("(d)tls profile", tls)
		}
		sig := string(m.Signature)
		if m.Signer != "" {
			sig += " (" + m.Signer + ")"
		}
		if m.SignatureReason != "" {
			sig += ": " + m.SignatureReason
		}
		row("signature", sig)
		row("digest", m.Digest)
		if !m.FetchedAt.IsZero() {
			row("fetched", when(m.FetchedAt))
		}
	}
	if f := d.Fetch; f != nil {
		switch {
		case f.InFlight:
			row("fetch", "in flight")
		case f.Queued:
			row("fetch", "queued: "+f.Waiting)
		}
		if f.Failures > 0 {
			row("fetch failures", fmt.Sprintf("%d; next attempt %s", f.Failures, when(f.NextAttempt)))
		}
		for _, a := range f.Attempts {
			res := "fetched"
			if !a.OK {
				res = "failed: " + a.Error
			}
			row("fetch attempt", fmt.Sprintf("%s  %.2fs  %s  %s", when(a.At), a.Seconds, dash(a.Port), res))
		}
	}
	if !d.LeaseExpiry.IsZero() {
		row("lease expires", when(d.LeaseExpiry))
	}
	row("first seen", when(d.FirstSeen))
	row("last seen", when(d.LastSeen))
	if c := d.Counters; c != nil {
		row("sent", fmt.Sprintf("%d packets, %d bytes; dropped %d packets, %d bytes",
			c.SentPackets, c.SentBytes, c.SentDroppedPackets, c.SentDroppedBytes))
		row("received", fmt.Sprintf("%d packets, %d bytes; dropped %d packets, %d bytes",
			c.ReceivedPackets, c.ReceivedBytes, c.ReceivedDroppedPackets, c.ReceivedDroppedBytes))
	}
	for i, o := range d.Overrides {
		row(fmt.Sprintf("override %d", i+1), overrideText(o))
	}
	return flushTable(t)
}

// printTransparency shows where the device's SBOMs and vulnerability
// information are (RFC 9472), as the MUD file says.
func printTransparency(row func(k, v string), t *api.Transparency) {
	if t == nil {
		return
	}
	for _, b := range t.SBOMs {
		row("sbom", fmt.Sprintf("version %s: %s", shown(b.VersionInfo), dash(shown(b.URL))))
	}
	if p := t.SBOMLocalWellKnown; p != "" {
		row("sbom", "from the device itself: "+shown(p)+" /.well-known/sbom")
	}
	row("sbom contact", shown(t.SBOMContactURI))
	row("sbom archive", shown(t.SBOMArchiveList))
	for _, u := range t.VulnURLs {
		row("vulnerabilities", shown(u))
	}
	row("vulnerability contact", shown(t.VulnContactURI))
}

// shown is s as the terminal may print it: quoted and escaped when it
// holds a control or other non-graphic character (a MUD file's strings
// come from the network).
func shown(s string) string {
	for _, r := range s {
		if !unicode.IsGraphic(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

func overrideText(o api.Override) string {
	s := string(o.Direction) + ": " + o.Text
	if o.Comment != "" {
		s += "  # " + o.Comment
	}
	return s
}

// orNone makes a nil list encode as [] rather than null.
func orNone[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func printOverrides(w io.Writer, o api.Overrides) error {
	if len(o.Rules) == 0 {
		_, err := fmt.Fprintf(w, "%s has no overrides\n", o.MAC)
		return err
	}
	t := newTable(w)
	fmt.Fprintln(t, "#\tDIRECTION\tVERDICT\tRULE\tBY")
	for i, o := range o.Rules {
		fmt.Fprintf(t, "%d\t%s\t%s\t%s\t%s\n", i+1, o.Direction, o.Verdict, o.Text, dash(o.By))
	}
	return flushTable(t)
}

// printDeviceChange reports a device after a change.
func printDeviceChange(w io.Writer, d api.Device) error {
	s := fmt.Sprintf("%s: %s", d.MAC, d.State)
	if d.Reason != "" {
		s += " (" + d.Reason + ")"
	}
	_, err := fmt.Fprintln(w, s)
	return err
}

func printPolicy(w io.Writer, p api.PolicyView) error {
	fmt.Fprintf(w, "device %s  policy %s  %s\n", p.MAC, dash(p.PolicyID), dash(p.MUDURL))
	if p.CountersAt.IsZero() {
		fmt.Fprintln(w, "(counters unavailable)")
	}
	t := newTable(w)
	for _, dir := range []struct {
		name string
		v    api.DirectionView
	}{{"from-device", p.FromDevice}, {"to-device", p.ToDevice}} {
		fmt.Fprintf(t, "\n%s:\n", dir.name)
		fmt.Fprintln(t, "#\tVERDICT\tPACKETS\tBYTES\tRULE")
		for i, r := range dir.v.Rules {
			text := r.Text
			switch {
			case r.Override:
				text += "  [override]"
			case r.Default:
				text += "  [default]"
			}
			fmt.Fprintf(t, "%d\t%s\t%d\t%d\t%s\n", i+1, r.Verdict, r.Packets, r.Bytes, text)
		}
		fmt.Fprintf(t, "-\tdrop\t%d\t%d\teverything else\n", dir.v.Dropped.Packets, dir.v.Dropped.Bytes)
	}
	if err := flushTable(t); err != nil {
		return err
	}
	for _, n := range p.NeedsApproval {
		fmt.Fprintln(w, "needs approval:", n)
	}
	for _, n := range p.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	if p.NFT != "" {
		fmt.Fprintf(w, "\nnft:\n%s", p.NFT)
	}
	return nil
}

const eventHeader = "SEQ\tTIME\tMAC\tKIND\tCHANGE\tMESSAGE"

func eventRow(e api.Event) string {
	change := "-"
	if e.From != "" || e.To != "" {
		change = string(e.From) + "->" + string(e.To)
	}
	return fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s", e.Seq, when(e.Time), dash(e.MAC), e.Kind, change, dash(e.Message))
}

func printEvents(w io.Writer, es []api.Event) error {
	t := newTable(w)
	fmt.Fprintln(t, eventHeader)
	for _, e := range es {
		fmt.Fprintln(t, eventRow(e))
	}
	return flushTable(t)
}

// Followed events cannot wait for a tabwriter to see every row: they use
// fixed column widths instead.
func printEventHeader(w io.Writer) error {
	return printEventFields(w, strings.Split(eventHeader, "\t"))
}

func printEventLine(w io.Writer, e api.Event) error {
	return printEventFields(w, strings.Split(eventRow(e), "\t"))
}

func printEventFields(w io.Writer, f []string) error {
	_, err := fmt.Fprintf(w, "%-6s  %-25s  %-17s  %-12s  %-34s  %s\n", f[0], f[1], f[2], f[3], f[4], f[5])
	if err != nil {
		return cli.IOError(fmt.Errorf("write: %w", err))
	}
	return nil
}

func printControllers(w io.Writer, cs []api.Controller) error {
	t := newTable(w)
	fmt.Fprintln(t, "URI\tKIND\tPREFIXES\tSOURCE")
	for _, c := range cs {
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\n", c.URI, c.Kind, joinAddrs(c.Prefixes), dash(c.Source))
	}
	return flushTable(t)
}

func printRefresh(w io.Writer, r api.RefreshResult) error {
	_, err := fmt.Fprintf(w, "refresh queued: %d device(s), %d MUD URL(s)\n", r.Devices, r.URLs)
	return err
}

func printImport(w io.Writer, r api.ImportResult) error {
	t := newTable(w)
	fmt.Fprintf(t, "mud url\t%s\n", r.MUDURL)
	fmt.Fprintf(t, "digest\t%s\n", r.Digest)
	sig := string(r.Signature)
	if r.Signer != "" {
		sig += " (" + r.Signer + ")"
	}
	if r.Reason != "" {
		sig += ": " + r.Reason
	}
	fmt.Fprintf(t, "signature\t%s\n", sig)
	fmt.Fprintf(t, "devices updated\t%d\n", r.DevicesUpdated)
	return flushTable(t)
}

// printViolations lists violation records, most recently seen first.
func printViolations(w io.Writer, vs []api.Violation) error {
	t := newTable(w)
	fmt.Fprintln(t, "MAC\tDEVICE\tDIRECTION\tKIND\tPEER\tPROTOCOL\tPORT\tCOUNT\tFIRST\tLAST")
	for _, v := range vs {
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", dash(v.MAC), addrText(v.DeviceAddress), v.Direction, v.Kind,
			peerText(v), v.Protocol, portText(v.Port), v.Count, when(v.FirstSeen), when(v.LastSeen))
	}
	return flushTable(t)
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return "-"
	}
	return a.String()
}

// peerText is the peer's address, with the DNS name it was an answer for.
func peerText(v api.Violation) string {
	if v.PeerName == "" {
		return addrText(v.Peer)
	}
	return addrText(v.Peer) + " (" + v.PeerName + ")"
}

func portText(p uint16) string {
	if p == 0 {
		return "-"
	}
	return strconv.Itoa(int(p))
}
