package nftwire

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/openmud/mud/enforcer/plan"
	"golang.org/x/sys/unix"
)

// DecodeElem reads an element of set s as google/nftables lists it: its
// typed key, and its mark or verdict. Expiries are not read (the kernel
// lists the time left, not the time set).
func DecodeElem(s plan.Set, el nftables.SetElement) (*plan.Elem, error) {
	k, err := DecodeKey(s.Key, el.Key, el.KeyEnd)
	if err != nil {
		return nil, fmt.Errorf("set %s: %w", s.Name, err)
	}
	e := &plan.Elem{Key: k}
	switch s.Value {
	case plan.ValueMark:
		if len(el.Val) != 4 {
			return nil, fmt.Errorf("set %s: a value of %d bytes is not a mark", s.Name, len(el.Val))
		}
		e.Mark = native.Uint32(el.Val)
	case plan.ValueVerdict:
		if e.Verdict, err = DecodeVerdict(el.Val); err != nil {
			return nil, fmt.Errorf("set %s: %w", s.Name, err)
		}
	}
	return e, nil
}

// DecodeVerdict reads a verdict map element's data as google/nftables
// lists it (the nested NFTA_VERDICT_* attributes).
func DecodeVerdict(data []byte) (plan.Verdict, error) {
	ad, err := netlink.NewAttributeDecoder(data)
	if err != nil {
		return plan.Verdict{}, fmt.Errorf("decoding a verdict: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	var v plan.Verdict
	code := int32(-1)
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_VERDICT_CODE:
			code = int32(ad.Uint32())
		case unix.NFTA_VERDICT_CHAIN:
			v.Chain = ad.String()
		}
	}
	if err := ad.Err(); err != nil {
		return plan.Verdict{}, fmt.Errorf("decoding a verdict: %w", err)
	}
	if v.Kind = verdictKind(code); v.Kind == plan.VerdictNone {
		return plan.Verdict{}, fmt.Errorf("decoding a verdict: unknown code %d", code)
	}
	return v, nil
}
