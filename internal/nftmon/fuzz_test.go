package nftmon

import (
	"strings"
	"testing"
)

// FuzzDatagram feeds arbitrary datagrams to the decoder, twice in a row (so
// that generations carry over), seeded with the captured notifications.
// Whatever the bytes, it reports either a resync with a reason or changes of
// watched tables only, never of an ignored port, described on one line.
func FuzzDatagram(f *testing.F) {
	var all []byte
	for _, tc := range captured {
		b := readCaptured(f, tc.file)
		f.Add(b)
		all = append(all, b...)
	}
	f.Add(all)
	f.Fuzz(func(t *testing.T, data []byte) {
		c := watchMud()
		c.ignored = func(port uint32) bool { return port == 9130 }
		out := c.datagram(data, nil)
		out = c.datagram(data, out)
		for _, e := range out {
			s := e.String()
			if s == "" || strings.ContainsAny(s, "\n\r") {
				t.Fatalf("description %q is not one line", s)
			}
			if e.Resync {
				if e.Reason == "" || len(e.Changes) != 0 || e.Gen != 0 {
					t.Fatalf("resync %+v", e)
				}
				continue
			}
			if len(e.Changes) == 0 || len(e.Changes) > MaxChanges || e.Omitted < 0 {
				t.Fatalf("event with %d changes, %d omitted", len(e.Changes), e.Omitted)
			}
			if e.PortID == 9130 {
				t.Fatalf("ignored port reported: %s", s)
			}
			for _, ch := range e.Changes {
				if !c.watch[ch.Table] {
					t.Fatalf("unwatched table %s reported", ch.Table)
				}
				if ch.Kind < KindTable || ch.Kind > KindFlowtable || (ch.Op != OpNew && ch.Op != OpDelete) || ch.Count < 1 {
					t.Fatalf("change %+v", ch)
				}
				if ch.Kind != KindElement && ch.Elements != 0 {
					t.Fatalf("%s change with %d elements", ch.Kind, ch.Elements)
				}
			}
		}
	})
}
