package netlab

import "github.com/openmud/mud/internal/packet/capture"

// RawConn opens a packet socket on h's interface, inside h's namespace,
// to send frames as the host — or as whatever the frames claim (spoofed
// MACs, a DHCP flood) — with Send (or WriteTo). It queues nothing it
// receives. The caller closes it.
func RawConn(h *Host) (*capture.Conn, error) {
	return capture.Open(h.Iface, capture.Config{NetNS: h.NS, SendOnly: true})
}
