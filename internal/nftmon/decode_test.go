package nftmon

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The files in testdata/ are notifications captured from Linux 6.18 on
// x86-64 (host byte order: little-endian) by the lab test with -capture, in
// this order: each nft step is a change to the unwatched table inet other,
// then the step. Capturing again changes the port and task ids below.
var captured = []struct {
	file string
	want string // the watched event's description
}{
	{"own_install", "table inet mud created or updated; set guard4 in table inet mud created or updated; " +
		"3 elements added to set guard4 in table inet mud; set dev in table inet mud created or updated; " +
		"2 elements added to set dev in table inet mud; chain pol_3_out in table inet mud created or updated; " +
		"and 8 more changes by port 9130 (nftmon.test, task 9130)"},
	{"other_delete_element", "element deleted from set guard4 in table inet mud by port 4053980033 (nftmon.test, task 9130)"},
	{"nft_flush_chain", "4 rules deleted from chain pol_3_out in table inet mud by port 9153 (nft, task 9153)"},
	{"nft_delete_rule", "rule 10 deleted from chain forward in table inet mud by port 9155 (nft, task 9155)"},
	{"nft_chain_policy", "chain forward in table inet mud created or updated by port 9161 (nft, task 9161)"},
	{"nft_flush_set", "2 elements deleted from set guard4 in table inet mud by port 9163 (nft, task 9163)"},
	{"nft_flush_map", "2 elements deleted from set dev in table inet mud by port 9165 (nft, task 9165)"},
	{"nft_add_element", "element added to set guard4 in table inet mud by port 9167 (nft, task 9167)"},
	{"nft_delete_element", "element deleted from set guard4 in table bridge mud by port 9169 (nft, task 9169)"},
	{"nft_delete_table", "table bridge mud deleted (1 chain, 1 set, 1 rule) by port 9171 (nft, task 9171)"},
}

func readCaptured(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".bin"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func watchMud() collector {
	return collector{watch: map[Table]bool{inetMud: true, bridgeMud: true}}
}

// Each captured transaction decodes to one event with the right words, and
// the changes to the unwatched table before it are left out.
func TestDecodeCaptured(t *testing.T) {
	c := watchMud()
	for _, tc := range captured {
		got := c.datagram(readCaptured(t, tc.file), nil)
		if len(got) != 1 {
			t.Fatalf("%s: %d events %v, want 1", tc.file, len(got), got)
		}
		if s := got[0].String(); s != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.file, s, tc.want)
		}
	}
}

// A skipped generation means a lost transaction: resync, then the event.
func TestDecodeGenerationGap(t *testing.T) {
	c := watchMud()
	c.datagram(readCaptured(t, "own_install"), nil)
	got := c.datagram(readCaptured(t, "nft_flush_chain"), nil) // skips generation 3
	if len(got) != 2 || !got[0].Resync || got[1].Resync {
		t.Fatalf("got %v, want a resync and the flush", got)
	}
	if want := "generation 4 followed 2"; !strings.Contains(got[0].Reason, want) {
		t.Errorf("reason %q, want it to contain %q", got[0].Reason, want)
	}
	if got[1].Changes[0].Count != 4 {
		t.Errorf("flush after the gap: %s", got[1])
	}
}

// Transactions of ignored ports are not reported, but their generations
// count (no resync for the next foreign transaction).
func TestDecodeIgnoredPort(t *testing.T) {
	c := watchMud()
	c.ignored = func(port uint32) bool { return port == 9130 }
	if got := c.datagram(readCaptured(t, "own_install"), nil); len(got) != 0 {
		t.Fatalf("ignored port's transaction reported: %v", got)
	}
	got := c.datagram(readCaptured(t, "other_delete_element"), nil)
	if len(got) != 1 || got[0].Resync || got[0].PortID != 4053980033 {
		t.Fatalf("got %v, want the other socket's change", got)
	}
}

// Truncated or corrupted datagrams give a resync, never a wrong change or a
// panic, and the collector recovers at the next transaction.
func TestDecodeMalformed(t *testing.T) {
	b := readCaptured(t, "nft_delete_element")
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"truncated header", b[:10]},
		{"length past the end", append(binary.NativeEndian.AppendUint32(nil, 4096), b[4:]...)},
		{"attribute length past the message", corruptFirstAttr(b)},
	} {
		c := watchMud()
		got := c.datagram(tc.data, nil)
		if len(got) != 1 || !got[0].Resync || !strings.Contains(got[0].Reason, "undecodable") {
			t.Errorf("%s: got %v, want one resync", tc.name, got)
		}
		if got := c.datagram(readCaptured(t, "nft_delete_table"), nil); len(got) != 1 || got[0].Resync {
			t.Errorf("%s: next transaction: %v", tc.name, got)
		}
	}
}

// corruptFirstAttr makes the first attribute of the first message claim
// more bytes than the message has.
func corruptFirstAttr(b []byte) []byte {
	b = bytes.Clone(b)
	binary.NativeEndian.PutUint16(b[unix.NLMSG_HDRLEN+4:], 0xfff0)
	return b
}

// A transaction with more distinct changes than MaxChanges keeps the first
// ones and counts the rest.
func TestDecodeBoundsChanges(t *testing.T) {
	var b []byte
	for i := range MaxChanges + 6 {
		b = append(b, notification(unix.NFT_MSG_DELCHAIN, 77, func(ae *netlink.AttributeEncoder) {
			ae.String(unix.NFTA_CHAIN_TABLE, "mud")
			ae.String(unix.NFTA_CHAIN_NAME, "pol_"+strconv.Itoa(i))
		})...)
	}
	b = append(b, notification(unix.NFT_MSG_NEWGEN, 77, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NFTA_GEN_ID, 5)
	})...)
	c := watchMud()
	got := c.datagram(b, nil)
	if len(got) != 1 {
		t.Fatalf("got %d events", len(got))
	}
	if e := got[0]; len(e.Changes) != MaxChanges || e.Omitted != 6 {
		t.Errorf("%d changes, %d omitted; want %d and 6", len(e.Changes), e.Omitted, MaxChanges)
	}
	if s := got[0].String(); !strings.HasSuffix(s, "; and 1024 more changes by port 77") {
		t.Errorf("description %q", s)
	}
}

// notification builds one nftables notification of family inet.
func notification(typ uint8, port uint32, attrs func(*netlink.AttributeEncoder)) []byte {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	attrs(ae)
	data, err := ae.Encode()
	if err != nil {
		panic(err)
	}
	m := netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | uint16(typ)), PID: port},
		Data:   append([]byte{byte(nftables.TableFamilyINet), unix.NFNETLINK_V0, 0, 0}, data...),
	}
	m.Header.Length = uint32(unix.NLMSG_HDRLEN + len(m.Data))
	b, err := m.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b
}

// The socket filter, run in x/net/bpf's VM (the kernel's semantics for
// classic BPF): it drops the object notifications of ignored ports and
// keeps generation notifications and everyone else's.
func TestIgnoreFilter(t *testing.T) {
	prog := ignoreProgram([]uint32{9130, 4053980033})
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	elem := func(ae *netlink.AttributeEncoder) {
		ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, "mud")
		ae.String(unix.NFTA_SET_ELEM_LIST_SET, "guard4")
	}
	genAttrs := func(ae *netlink.AttributeEncoder) { ae.Uint32(unix.NFTA_GEN_ID, 9) }
	for _, tc := range []struct {
		name string
		msg  []byte
		keep bool
	}{
		{"ignored port's element", notification(unix.NFT_MSG_DELSETELEM, 9130, elem), false},
		{"second ignored port's element", notification(unix.NFT_MSG_NEWSETELEM, 4053980033, elem), false},
		{"ignored port's generation", notification(unix.NFT_MSG_NEWGEN, 9130, genAttrs), true},
		{"foreign element", notification(unix.NFT_MSG_DELSETELEM, 9131, elem), true},
		{"foreign generation", notification(unix.NFT_MSG_NEWGEN, 12, genAttrs), true},
	} {
		n, err := vm.Run(tc.msg)
		if err != nil {
			t.Fatal(err)
		}
		if kept := n > 0; kept != tc.keep {
			t.Errorf("%s: kept %v, want %v", tc.name, kept, tc.keep)
		}
	}
}
