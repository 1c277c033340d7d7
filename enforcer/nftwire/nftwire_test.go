package nftwire

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/openmud/mud/enforcer/plan"
	"golang.org/x/sys/unix"
)

var (
	a4 = netip.MustParseAddr("192.0.2.10")
	a6 = netip.MustParseAddr("2001:db8::10")
	m1 = plan.MACKey{0x02, 0, 0x5e, 0, 0x53, 1}
	m2 = plan.MACKey{0x02, 0, 0x5e, 0, 0x53, 2}
)

// Every key type round-trips through its codec, at the length nft's
// registers give it.
func TestKeyCodecs(t *testing.T) {
	for _, c := range []struct {
		typ  plan.KeyType
		key  plan.Key
		size int
	}{
		{plan.KeyMark, plan.MarkKey(0x10), 4},
		{plan.KeyMAC, m1, 6},
		{plan.KeyIPv4, plan.AddrKey(a4), 4},
		{plan.KeyIPv6, plan.AddrKey(a6), 16},
		{plan.KeyMACIPv4, plan.GuardKey{MAC: m1, Addr: a4}, 12},
		{plan.KeyMACIPv6, plan.GuardKey{MAC: m1, Addr: a6}, 24},
		{plan.KeyMarkIPv4, plan.NetKey{First: netip.MustParseAddr("192.0.2.0"), Last: netip.MustParseAddr("192.0.2.63")}, 8},
		{plan.KeyMarkIPv6, plan.NetKey{ID: 3, First: netip.MustParseAddr("2001:db8::"), Last: netip.MustParseAddr("2001:db8::ffff")}, 20},
		{plan.KeyMarkMark, plan.PeerGroupKey{Peer: 7, Group: 0x80000001}, 8},
		{plan.KeyACL, plan.ACLKey{Dispatch: 0x10, Group: 7, Family: unix.NFPROTO_IPV6 | 0x80, Proto: 6, Port: 443}, 20},
		{plan.KeyFlow4, plan.FlowKey{SrcMAC: m1, DstMAC: m2, Src: a4, Dst: netip.MustParseAddr("192.0.2.11"), Proto: 17, A: 5353, B: 53}, 36},
		{plan.KeyFlow6, plan.FlowKey{SrcMAC: m2, DstMAC: m1, Src: a6, Dst: netip.MustParseAddr("2001:db8::11"), Proto: 58, A: 77, B: 128 << 8}, 60},
	} {
		t.Run(c.key.String(), func(t *testing.T) {
			if !c.key.Fits(c.typ) {
				t.Errorf("the key does not fit its type")
			}
			b := AppendKey(nil, c.key)
			if len(b) != c.size {
				t.Errorf("%d bytes, want %d", len(b), c.size)
			}
			got, err := DecodeKey(c.typ, b, AppendKeyEnd(nil, c.key))
			if err != nil || got != c.key {
				t.Errorf("decoded %v (%v), want %v", got, err, c.key)
			}
			if _, err := DecodeKey(c.typ, append(b, 0, 0, 0, 0), nil); err == nil {
				t.Error("a key 4 bytes too long decoded")
			}
		})
	}
	// The fields sit where the acl lookup's concatenation puts them: ids
	// in host byte order, the port in network byte order, each field in a
	// 32-bit register.
	acl := AppendKey(nil, plan.ACLKey{Dispatch: 0x10, Group: 7, Family: 10, Proto: 6, Port: 443})
	want := append(binary.NativeEndian.AppendUint32(binary.NativeEndian.AppendUint32(nil, 0x10), 7), 10, 0, 0, 0, 6, 0, 0, 0, 0x01, 0xbb, 0, 0)
	if !bytes.Equal(acl, want) {
		t.Errorf("acl key % x, want % x", acl, want)
	}
	if _, err := DecodeKey(plan.KeyACL, append(want[:9:9], append([]byte{1}, want[10:]...)...), nil); err == nil {
		t.Error("an acl key with padding set decoded")
	}
}

// attrs decodes a netlink attribute list into a map of type → payload
// (the last one of a type wins) and the order of the types.
func attrs(t *testing.T, b []byte) (map[uint16][]byte, []uint16) {
	t.Helper()
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		t.Fatal(err)
	}
	m := map[uint16][]byte{}
	var order []uint16
	for ad.Next() {
		m[ad.Type()] = ad.Bytes()
		order = append(order, ad.Type())
	}
	if err := ad.Err(); err != nil {
		t.Fatal(err)
	}
	return m, order
}

// Element messages carry keys, range ends, timeouts (at least 1 ms) and
// values, and stay under the 16-bit length of the element list.
func TestElemMsgs(t *testing.T) {
	now := time.Now()
	net := plan.NetKey{First: netip.MustParseAddr("192.0.2.0"), Last: netip.MustParseAddr("192.0.2.63")}
	elems := []*plan.Elem{
		{Key: net, Mark: 5, Expires: now.Add(time.Minute)},
		{Key: plan.MarkKey(0x10), Verdict: plan.Verdict{Kind: plan.VerdictJump, Chain: "allow_out"}},
		{Key: plan.AddrKey(a4), Mark: 1, Expires: now.Add(-time.Second)}, // already due: 1 ms
	}
	msgs := ElemMsgs(plan.SetRef{Family: plan.Bridge, Name: "net4"}, elems, ElemAdd, now)
	if len(msgs) != 1 || msgs[0].Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWSETELEM) {
		t.Fatalf("messages: %+v", msgs)
	}
	if msgs[0].Data[0] != unix.NFPROTO_BRIDGE {
		t.Errorf("family %d", msgs[0].Data[0])
	}
	top, _ := attrs(t, msgs[0].Data[4:])
	if string(top[unix.NFTA_SET_ELEM_LIST_TABLE]) != "mud\x00" || string(top[unix.NFTA_SET_ELEM_LIST_SET]) != "net4\x00" {
		t.Errorf("table %q set %q", top[unix.NFTA_SET_ELEM_LIST_TABLE], top[unix.NFTA_SET_ELEM_LIST_SET])
	}
	list, order := attrs(t, top[unix.NFTA_SET_ELEM_LIST_ELEMENTS])
	if len(order) != 3 {
		t.Fatalf("%d elements", len(order))
	}
	value := func(b []byte) []byte { m, _ := attrs(t, b); return m[unix.NFTA_DATA_VALUE] }
	e1, _ := attrs(t, list[1])
	if !bytes.Equal(value(e1[unix.NFTA_SET_ELEM_KEY]), AppendKey(nil, net)) || !bytes.Equal(value(e1[nftaSetElemKeyEnd]), AppendKeyEnd(nil, net)) {
		t.Errorf("range key % x end % x", e1[unix.NFTA_SET_ELEM_KEY], e1[nftaSetElemKeyEnd])
	}
	if ms := binary.BigEndian.Uint64(e1[unix.NFTA_SET_ELEM_TIMEOUT]); ms != 60000 {
		t.Errorf("timeout %d ms, want 60000", ms)
	}
	if v := value(e1[unix.NFTA_SET_ELEM_DATA]); binary.NativeEndian.Uint32(v) != 5 {
		t.Errorf("mark % x", v)
	}
	e2, _ := attrs(t, list[2])
	d2, _ := attrs(t, e2[unix.NFTA_SET_ELEM_DATA])
	if v, err := DecodeVerdict(d2[unix.NFTA_DATA_VERDICT]); err != nil || v != elems[1].Verdict {
		t.Errorf("verdict %v (%v)", v, err)
	}
	e3, _ := attrs(t, list[3])
	if ms := binary.BigEndian.Uint64(e3[unix.NFTA_SET_ELEM_TIMEOUT]); ms != 1 {
		t.Errorf("a due element's timeout is %d ms, want 1 (0 would make it permanent)", ms)
	}
	// deletes carry keys only; destroy has its own message type
	del := ElemMsgs(plan.SetRef{Family: plan.Inet, Name: "net4"}, elems[:1], ElemDestroy, now)
	if del[0].Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|nftMsgDestroySetElem) || bytes.Contains(del[0].Data, binary.BigEndian.AppendUint64(nil, 60000)) {
		t.Errorf("destroy message: %+v", del[0])
	}
	// Many elements: several messages, each element list under 64 KiB.
	var many []*plan.Elem
	for i := range 20000 {
		many = append(many, &plan.Elem{Key: plan.GuardKey{MAC: m1, Addr: netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, 14: byte(i >> 8), 15: byte(i)})}})
	}
	msgs = ElemMsgs(plan.SetRef{Family: plan.Inet, Name: "guard6"}, many, ElemAdd, now)
	n := 0
	for _, m := range msgs {
		top, _ := attrs(t, m.Data[4:])
		if l := len(top[unix.NFTA_SET_ELEM_LIST_ELEMENTS]); l > 0xffff-4 {
			t.Errorf("an element list of %d bytes", l)
		}
		_, order := attrs(t, top[unix.NFTA_SET_ELEM_LIST_ELEMENTS])
		n += len(order)
	}
	if len(msgs) < 2 || n != len(many) {
		t.Errorf("%d messages with %d elements, want several with %d", len(msgs), n, len(many))
	}
}

func msgTypes(msgs []netlink.Message) string {
	names := map[uint16]string{unix.NFT_MSG_NEWTABLE: "NEWTABLE", unix.NFT_MSG_DELTABLE: "DELTABLE", unix.NFT_MSG_NEWSET: "NEWSET",
		unix.NFT_MSG_NEWCHAIN: "NEWCHAIN", unix.NFT_MSG_DELCHAIN: "DELCHAIN", unix.NFT_MSG_NEWRULE: "NEWRULE", unix.NFT_MSG_DELRULE: "DELRULE",
		unix.NFT_MSG_NEWSETELEM: "NEWSETELEM", unix.NFT_MSG_DELSETELEM: "DELSETELEM", nftMsgDestroySetElem: "DESTROYSETELEM"}
	var out []string
	for _, m := range msgs {
		switch typ := uint16(m.Header.Type); typ {
		case unix.NFNL_MSG_BATCH_BEGIN:
			out = append(out, "BEGIN")
		case unix.NFNL_MSG_BATCH_END:
			out = append(out, "END")
		default:
			n := names[typ&0xff]
			if len(out) > 0 && strings.TrimSuffix(out[len(out)-1], "+") == n {
				out[len(out)-1] = n + "+"
				continue
			}
			out = append(out, n)
		}
	}
	return strings.Join(out, " ")
}

// A plan is one batch in the order the kernel needs: tables and sets,
// element deletions, chains added, flushed and deleted, rules, element
// additions.
func TestEncodeOrder(t *testing.T) {
	en, err := NewEncoder()
	if err != nil {
		t.Fatal(err)
	}
	pl := plan.New(plan.Config{Priority: -5, BridgePriority: -205, BridgeFlows: 64, Destroy: true})
	rebuild, err := pl.Replace(plan.Desired{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := en.Encode(rebuild, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := msgTypes(msgs), "BEGIN NEWTABLE DELTABLE NEWTABLE NEWSET+ NEWTABLE DELTABLE NEWTABLE NEWSET+ NEWCHAIN+ NEWRULE+ NEWSETELEM+ END"; got != want {
		t.Errorf("rebuild batch:\n%s\nwant\n%s", got, want)
	}
	chain := &plan.Chain{ID: plan.ChainRef{Family: plan.Inet, Name: "forward"}, Hook: &plan.Hook{Num: plan.HookForward, Priority: -5},
		Rules: []plan.Rule{plan.ConntrackProbeRule()}}
	p := &plan.Plan{
		DelElems: []plan.SetElems{{Set: plan.SetRef{Family: plan.Inet, Name: "guard4"}, Elems: []*plan.Elem{{Key: plan.GuardKey{MAC: m1, Addr: a4}}}},
			{Set: plan.SetRef{Family: plan.Inet, Name: "addr4"}, Elems: []*plan.Elem{{Key: plan.AddrKey(a4)}}, Destroy: true}},
		AddChains:   []*plan.Chain{{ID: plan.ChainRef{Family: plan.Bridge, Name: "new"}, Rules: []plan.Rule{plan.SecmarkProbeRule()}}},
		FlushChains: []*plan.Chain{chain},
		DelChains:   []plan.ChainRef{{Family: plan.Inet, Name: "old"}},
		AddElems:    []plan.SetElems{{Set: plan.SetRef{Family: plan.Inet, Name: "caged"}, Elems: []*plan.Elem{{Key: m1}}}},
	}
	// a fault goes after the rules, before the elements added
	fault := func(m []netlink.Message) []netlink.Message {
		return append(m, ElemMsgs(plan.SetRef{Family: plan.Inet, Name: "nosuch"}, []*plan.Elem{{Key: m2}}, ElemDestroy, time.Now())...)
	}
	msgs, err = en.Encode(p, time.Now(), fault)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := msgTypes(msgs), "BEGIN DELSETELEM DESTROYSETELEM NEWCHAIN DELRULE DELCHAIN NEWRULE+ DESTROYSETELEM NEWSETELEM END"; got != want {
		t.Errorf("incremental batch:\n%s\nwant\n%s", got, want)
	}
}

// The google/nftables objects of our sets have the plan's key types.
func TestSetObject(t *testing.T) {
	for _, s := range plan.New(plan.Config{BridgeFlows: 64, RuleCounters: true}).Sets(plan.Bridge) {
		o := SetObject(plan.Bridge, s)
		if o.Table.Family != nftables.TableFamilyBridge || o.Name != s.Name || o.KeyType.Bytes == 0 ||
			o.IsMap != (s.Value != plan.ValueNone) || o.Interval != s.Interval || o.HasTimeout != s.Timeout || o.Counter != s.Counter {
			t.Errorf("%s: %+v", s.Name, o)
		}
		if want := map[plan.KeyType]uint32{plan.KeyACL: 20, plan.KeyFlow4: 36, plan.KeyFlow6: 60, plan.KeyMACIPv4: 12}[s.Key]; want != 0 && o.KeyType.Bytes != want {
			t.Errorf("%s: key of %d bytes, want %d", s.Name, o.KeyType.Bytes, want)
		}
	}
}

// What the kernel lists decodes into the plan's values.
func TestDecodeElem(t *testing.T) {
	verdict := func(code int32, chain string) []byte {
		ae := netlink.NewAttributeEncoder()
		ae.ByteOrder = binary.BigEndian
		ae.Uint32(unix.NFTA_VERDICT_CODE, uint32(code))
		if chain != "" {
			ae.String(unix.NFTA_VERDICT_CHAIN, chain)
		}
		b, _ := ae.Encode()
		return b
	}
	vmap := plan.Set{Name: "out_chain", Key: plan.KeyMark, Value: plan.ValueVerdict}
	e, err := DecodeElem(vmap, nftables.SetElement{Key: AppendKey(nil, plan.MarkKey(16)), Val: verdict(-3, "allow_out")})
	if err != nil || e.Key != plan.MarkKey(16) || e.Verdict != (plan.Verdict{Kind: plan.VerdictJump, Chain: "allow_out"}) {
		t.Errorf("%+v %v", e, err)
	}
	if _, err := DecodeElem(vmap, nftables.SetElement{Key: AppendKey(nil, plan.MarkKey(16)), Val: verdict(42, "")}); err == nil {
		t.Error("an unknown verdict decoded")
	}
	dmap := plan.Set{Name: "from_dev", Key: plan.KeyMAC, Value: plan.ValueMark}
	e, err = DecodeElem(dmap, nftables.SetElement{Key: m1[:], Val: binary.NativeEndian.AppendUint32(nil, 17)})
	if err != nil || e.Key != m1 || e.Mark != 17 {
		t.Errorf("%+v %v", e, err)
	}
	// another layout's element (a verdict where a mark is wanted)
	if _, err := DecodeElem(dmap, nftables.SetElement{Key: m1[:], Val: verdict(-3, "pol_x_out")}); err == nil {
		t.Error("a verdict decoded as a mark")
	}
	for _, k := range []plan.VerdictKind{plan.VerdictAccept, plan.VerdictDrop, plan.VerdictReturn, plan.VerdictJump, plan.VerdictGoto} {
		if got := verdictKind(verdictCode(k)); got != k {
			t.Errorf("%v → %d → %v", k, verdictCode(k), got)
		}
	}
}

// A probe creates a table and deletes it in the same batch: nothing of it
// remains whether the kernel accepts it or not.
func TestProbes(t *testing.T) {
	en, err := NewEncoder()
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := en.Probe(plan.Bridge, "mud_ct_probe", &plan.Hook{Num: plan.HookForward}, plan.ConntrackProbeRule())
	if err != nil {
		t.Fatal(err)
	}
	if got := msgTypes(msgs); got != "BEGIN NEWTABLE NEWCHAIN NEWRULE DELTABLE END" {
		t.Errorf("probe: %s", got)
	}
	msgs, err = en.ProbeDestroy("mud_destroy_probe")
	if err != nil {
		t.Fatal(err)
	}
	if got := msgTypes(msgs); got != "BEGIN NEWTABLE NEWSET DESTROYSETELEM DELTABLE END" {
		t.Errorf("destroy probe: %s", got)
	}
	top, _ := attrs(t, msgs[3].Data[4:])
	if string(top[unix.NFTA_SET_ELEM_LIST_TABLE]) != "mud_destroy_probe\x00" {
		t.Errorf("the destroy names table %q", top[unix.NFTA_SET_ELEM_LIST_TABLE])
	}
}

// Many elements are encoded in two halves at once: the messages are those
// of the sets encoded one after the other, in order.
func TestAddElemsInHalves(t *testing.T) {
	now := time.Now()
	var sets []plan.SetElems
	for s, n := range []int{3, 15000, 1, 9000, 12000, 2} {
		var els []*plan.Elem
		for i := range n {
			els = append(els, &plan.Elem{Key: plan.ACLKey{Dispatch: uint32(s), Group: uint32(i), Proto: 6, Port: 443}})
		}
		sets = append(sets, plan.SetElems{Set: plan.SetRef{Family: plan.Family(s % 2), Name: "acl_out"}, Elems: els})
	}
	var want []netlink.Message
	for _, se := range sets {
		want = append(want, ElemMsgs(se.Set, se.Elems, ElemAdd, now)...)
	}
	got := addElems(nil, sets, now)
	if len(got) != len(want) {
		t.Fatalf("%d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Header != want[i].Header || !bytes.Equal(got[i].Data, want[i].Data) {
			t.Fatalf("message %d differs", i)
		}
	}
}
