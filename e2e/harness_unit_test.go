package e2e

import (
	"testing"
	"time"
)

// normalizeRuleset makes two listings of the same ruleset equal (timeouts,
// element order, declaration order) and keeps any real difference.
func TestNormalizeRuleset(t *testing.T) {
	a := "table inet mud {\n\tset s {\n\t\ttype ipv4_addr\n\t\tflags timeout\n\t\telements = { 192.0.2.1 timeout 30s expires 29s500ms,\n\t\t\t     192.0.2.2 }\n\t}\n\n" +
		"\tchain a {\n\t\tcounter drop\n\t}\n\n\tchain b {\n\t\tjump a\n\t}\n}\n"
	same := "table inet mud {\n\tchain b {\n\t\tjump a\n\t}\n\n\tchain a {\n\t\tcounter drop\n\t}\n\n" +
		"\tset s {\n\t\ttype ipv4_addr\n\t\tflags timeout\n\t\telements = { 192.0.2.2, 192.0.2.1 timeout 30s expires 12s }\n\t}\n}\n"
	changed := "table inet mud {\n\tchain b {\n\t\tjump a\n\t}\n\n\tchain a {\n\t\tcounter accept\n\t}\n\n" +
		"\tset s {\n\t\ttype ipv4_addr\n\t\tflags timeout\n\t\telements = { 192.0.2.2, 192.0.2.1 }\n\t}\n}\n"
	if na, ns := normalizeRuleset(a), normalizeRuleset(same); na != ns {
		t.Errorf("same ruleset differs:\n%s", diffLines(na, ns))
	}
	if normalizeRuleset(a) == normalizeRuleset(changed) {
		t.Error("a changed rule is normalised away")
	}
	if normalizeRuleset(a) == normalizeRuleset(a[:len(a)-len("\tchain b {\n\t\tjump a\n\t}\n}\n")]+"}\n") {
		t.Error("a missing chain is normalised away")
	}
	// Packets fill a dynamic set (a default-deny counter); mudd does not.
	dyn := "table inet mud {\n\tset d {\n\t\ttype mark\n\t\tflags dynamic\n\t\tcounter\n\t}\n}\n"
	hit := "table inet mud {\n\tset d {\n\t\ttype mark\n\t\tflags dynamic\n\t\tcounter\n\t\telements = { 0x10000000 counter packets 3 bytes 180 }\n\t}\n}\n"
	if nd, nh := normalizeRuleset(dyn), normalizeRuleset(hit); nd != nh {
		t.Errorf("a dynamic set's packet-added elements count as a difference:\n%s", diffLines(nd, nh))
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if p := percentile(ds, 50); p != 50*time.Millisecond {
		t.Errorf("p50 = %v", p)
	}
	if p := percentile(ds, 99); p != 99*time.Millisecond {
		t.Errorf("p99 = %v", p)
	}
	if p := percentile(ds[:1], 99); p != 100*time.Millisecond {
		t.Errorf("p99 of one = %v", p)
	}
}
