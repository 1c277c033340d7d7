package manager

import (
	"strings"
	"testing"

	"github.com/openmud/mud/lanwatch"
)

// The report's warnings and errors are the lateral gaps: Status lists
// them, each that appears is a lateral-unenforced event and each that
// goes a lateral-ended event; information is neither.
func TestLateralGapsInStatusAndEvents(t *testing.T) {
	srv, _ := camServer(t, "", false)
	h, _ := unitHarness(t, srv, Settings{})
	xdp := lanwatch.Finding{Severity: lanwatch.Warning, Text: "an XDP program is attached to lan1: it can forward frames", Fix: "detach it"}
	isolated := lanwatch.Finding{Severity: lanwatch.Info, Text: "lan2 is isolated"}
	notBridge := lanwatch.Finding{Severity: lanwatch.Error, Text: "lateral traffic on eth1 is not enforced: eth1 is not a bridge"}
	report := lanwatch.Report{LANs: []lanwatch.LAN{
		{Name: "br-lan", Exists: true, Bridge: true, Ports: []lanwatch.Port{
			{Name: "lan1", Findings: []lanwatch.Finding{xdp}}, {Name: "lan2", Findings: []lanwatch.Finding{isolated}}}},
		{Name: "eth1", Exists: true, Findings: []lanwatch.Finding{notBridge}},
	}}
	if err := h.m.SetLateral(bg, report); err != nil {
		t.Fatal(err)
	}
	st, err := h.m.Status(bg)
	if err != nil {
		t.Fatal(err)
	}
	want := []LateralGap{{LAN: "br-lan", Port: "lan1", Severity: "warning", Reason: xdp.Text, Fix: "detach it"},
		{LAN: "eth1", Severity: "error", Reason: notBridge.Text}}
	if len(st.LateralUnenforced) != 2 || st.LateralUnenforced[0] != want[0] || st.LateralUnenforced[1] != want[1] {
		t.Fatalf("status: %+v, want %+v", st.LateralUnenforced, want)
	}
	// The same report again changes nothing; the XDP program detached
	// ends its gap.
	if err := h.m.SetLateral(bg, report); err != nil {
		t.Fatal(err)
	}
	report.LANs[0].Ports[0].Findings = nil
	if err := h.m.SetLateral(bg, report); err != nil {
		t.Fatal(err)
	}
	if st, _ = h.m.Status(bg); len(st.LateralUnenforced) != 1 || st.LateralUnenforced[0] != want[1] {
		t.Fatalf("status after the fix: %+v", st.LateralUnenforced)
	}
	evs, err := h.m.Events(bg, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		if strings.HasPrefix(e.Kind, "lateral-") {
			got = append(got, e.Kind+" "+e.Message)
		}
	}
	wantEv := []string{
		"lateral-unenforced br-lan port lan1: " + xdp.Text + " (detach it)",
		"lateral-unenforced eth1: " + notBridge.Text,
		"lateral-ended br-lan port lan1: no longer: " + xdp.Text,
	}
	if strings.Join(got, "\n") != strings.Join(wantEv, "\n") {
		t.Errorf("events:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantEv, "\n"))
	}
}
