package enforcer

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/openmud/mud/enforcer/nftwire"
	"github.com/openmud/mud/enforcer/plan"
	"github.com/openmud/mud/internal/netns"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// BridgeReplies reports how replies of permitted bridged flows pass, per
// IP version, as the installed layout has it.
func (e *Enforcer) BridgeReplies() ReplyModes {
	e.mu.Lock()
	defer e.mu.Unlock()
	return plan.ReplyModesOf(e.bridgeCT, e.nf)
}

var bridgeNFPaths = [3]string{
	"/proc/sys/net/bridge/bridge-nf-call-iptables",
	"/proc/sys/net/bridge/bridge-nf-call-ip6tables",
	"/proc/sys/net/bridge/bridge-nf-filter-vlan-tagged",
}

// readBridgeNF reads br_netfilter's sysctls of the enforcer's namespace.
// The files are opened inside the namespace once (a /proc/sys/net file
// stays bound to the namespace it was opened in) and re-read each time;
// missing ones (br_netfilter not loaded) are looked for again.
func (e *Enforcer) readBridgeNF() plan.BridgeNF {
	missing := false
	for _, f := range e.nfFiles {
		missing = missing || f == nil
	}
	if missing {
		_ = netns.DoFd(e.nsFd, func() error {
			for i, p := range bridgeNFPaths {
				if e.nfFiles[i] == nil {
					if f, err := os.Open(p); err == nil {
						e.nfFiles[i] = f
					}
				}
			}
			return nil
		})
	}
	var on [3]bool
	buf := make([]byte, 16)
	for i, f := range e.nfFiles {
		if f == nil {
			continue
		}
		n, err := f.ReadAt(buf, 0)
		if err != nil && !errors.Is(err, io.EOF) {
			f.Close()
			e.nfFiles[i] = nil
			continue
		}
		v := strings.TrimSpace(string(buf[:n]))
		on[i] = v != "" && v != "0"
	}
	nf := plan.BridgeNF{Inet: [2]bool{on[0], on[1]}, VLAN: on[2]}
	if (on[0] || on[1]) && !on[2] {
		nf.VLANBridge = true
		if links, err := e.rt.LinkList(); err == nil {
			nf.VLANBridge = false
			for _, l := range links {
				if b, ok := l.(*vnl.Bridge); ok && b.VlanFiltering != nil && *b.VlanFiltering {
					nf.VLANBridge = true
				}
			}
		}
	}
	return nf
}

func (e *Enforcer) closeBridgeNF() {
	for i, f := range e.nfFiles {
		if f != nil {
			f.Close()
			e.nfFiles[i] = nil
		}
	}
}

// flowsOfDevices lists the remembered flows of the given MACs (either end),
// by set.
func (e *Enforcer) flowsOfDevices(macs []net.HardwareAddr) (map[plan.SetRef][]*plan.Elem, error) {
	want := make(map[plan.MACKey]bool, len(macs))
	for _, m := range macs {
		want[plan.MACOf(m)] = true
	}
	out := map[plan.SetRef][]*plan.Elem{}
	for _, name := range []string{plan.SetFlows4, plan.SetFlows6} {
		spec, ok := e.pl.Set(plan.Bridge, name)
		if !ok {
			continue
		}
		ref := plan.SetRef{Family: plan.Bridge, Name: name}
		els, err := e.rd.GetSetElements(nftwire.SetObject(plan.Bridge, spec))
		if err != nil {
			return out, fmt.Errorf("reading %s: %w", name, err)
		}
		for _, el := range els {
			k, err := nftwire.DecodeKey(spec.Key, el.Key, nil)
			if err != nil {
				return out, fmt.Errorf("reading %s: %w", name, err)
			}
			if fk := k.(plan.FlowKey); want[fk.SrcMAC] || want[fk.DstMAC] {
				out[ref] = append(out[ref], &plan.Elem{Key: fk})
			}
		}
	}
	return out, nil
}

// forgetFlows removes the remembered flows of devices (reflexive mode);
// first tells whether errors are worth reporting (a repeated removal finds
// what the first one removed already gone). e.mu is held.
func (e *Enforcer) forgetFlows(macs []net.HardwareAddr, first bool) error {
	if e.bridgeCT || len(macs) == 0 || !e.pl.Installed() {
		return nil
	}
	found, err := e.flowsOfDevices(macs)
	if err != nil {
		return err
	}
	send := func(set plan.SetRef, elems []*plan.Elem, op nftwire.ElemOp) error {
		return e.raw.Send(nftwire.Batch(nftwire.ElemMsgs(set, elems, op, time.Time{})...))
	}
	var errs []error
	for set, elems := range found {
		if e.destroy {
			if err := send(set, elems, nftwire.ElemDestroy); err != nil && first {
				errs = append(errs, err)
			}
			continue
		}
		// A kernel before 6.3: deletes, one batch per element (one that
		// expired meanwhile fails alone).
		for _, el := range elems {
			var be *BatchError
			if err := send(set, []*plan.Elem{el}, nftwire.ElemDelete); err != nil && first && (!errors.As(err, &be) || !be.Has(unix.ENOENT)) {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("removing remembered flows: %w", errors.Join(errs...))
	}
	return nil
}
