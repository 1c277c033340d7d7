package gwlab

import (
	"testing"

	"github.com/openmud/mud/mudfile"
)

// The lab's MUD files are valid RFC 8520 files by mudd's own parser, with
// no warnings, for every kind of rule the labs use.
func TestFileJSONValid(t *testing.T) {
	f := File{URL: "https://mud.example.com/dir/thing.json", Mfg: "Example", Model: "thing",
		From: []Rule{
			{Remote: "cloud.example.com", RemotePort: 443, Initiated: "from-device"},
			{MUD: map[string]any{"same-manufacturer": []any{nil}}},
			{MUD: map[string]any{"controller": "urn:example:hub"}, RemotePort: 8081},
			{MUD: map[string]any{"my-controller": []any{nil}}, Protocol: 17, RemotePort: 5683},
			{MUD: map[string]any{"local-networks": []any{nil}}, LocalPort: 9000},
		},
		To: []Rule{
			{Remote: "cloud.example.com", RemotePort: 443, Initiated: "from-device"},
			{Remote: "cloud.example.com", LocalPort: 9000},
		},
	}
	if got, want := f.SignatureURL(), "https://mud.example.com/dir/thing.p7s"; got != want {
		t.Errorf("SignatureURL = %s, want %s", got, want)
	}
	res := mudfile.Parse(f.JSON())
	if !res.Valid() || len(res.Warnings()) > 0 {
		t.Fatalf("errors %v, warnings %v\n%s", res.Errors(), res.Warnings(), f.JSON())
	}
}
