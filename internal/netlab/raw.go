package netlab

import (
	"net"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// RawConn opens a packet socket on h's interface, inside h's namespace,
// to send frames as the host — or as whatever the frames claim (spoofed
// MACs, a DHCP flood). The caller closes it.
func RawConn(h *Host) (*packet.Conn, error) {
	var c *packet.Conn
	err := Do(h.NS, func() error {
		ifi, err := net.InterfaceByName(h.Iface)
		if err != nil {
			return err
		}
		c, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, nil)
		return err
	})
	return c, err
}
