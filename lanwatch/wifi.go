package lanwatch

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Wi-Fi. Whether a bridge port is a Wi-Fi interface, and of which type,
// comes from nl80211 (generic netlink family "nl80211",
// NL80211_CMD_GET_INTERFACE → NL80211_ATTR_IFTYPE). Whether an access point
// forwards between its stations itself is not in nl80211's answers: hostapd
// sets it (ap_isolate, NL80211_CMD_SET_BSS) and nothing reads it back, and
// hostapd's control interface does not report it either (GET_CONFIG names
// the BSSID, SSID, WPS and key management; GET knows a few fixed names).
// It is read from the two places that hold it:
//
//   - mac80211's debugfs: ieee80211/PHY/netdev:IFACE/flags, whose bit 3
//     (IEEE80211_SDATA_DONT_BRIDGE_PACKETS) is client isolation as the
//     kernel applies it. Drivers that are not mac80211 (full-MAC ones) have
//     no such file; debugfs is readable by root only.
//   - hostapd's configuration file: the interface= or bss= section naming
//     the interface, and its ap_isolate (default 0). OpenWrt writes one per
//     radio (/var/run/hostapd-phy0.conf); Debian's is /etc/hostapd/.
//
// When neither says, the isolation is Unknown and the report says so.

// DefaultHostapdConfigs are the hostapd configuration files read for
// ap_isolate, in order; the first that names an interface is believed.
var DefaultHostapdConfigs = []string{"/var/run/hostapd-*.conf", "/run/hostapd-*.conf", "/etc/hostapd/*.conf", "/etc/hostapd.conf"}

// DefaultDebugFS is where debugfs is mounted.
const DefaultDebugFS = "/sys/kernel/debug"

const (
	sdataDontBridgePackets = 1 << 3     // mac80211 IEEE80211_SDATA_DONT_BRIDGE_PACKETS
	maxConfigFile          = 1 << 20    // a longer hostapd configuration is not read
	genlHeaderLen          = 4          // cmd, version, reserved
	ctrlVersion            = 1          // the generic netlink controller's version
	nl80211Absent          = ^uint16(0) // the family is not registered here
)

// nl80211 asks the kernel for Wi-Fi interface types over a generic netlink
// socket.
type nl80211 struct {
	c      *netlink.Conn
	family uint16 // 0 until resolved; nl80211Absent without cfg80211
}

// ifType is the nl80211 interface type of the interface with this index: 0
// when it is not a Wi-Fi interface, or the kernel has no nl80211.
func (n *nl80211) ifType(index int) (uint32, error) {
	if n.family == 0 {
		if err := n.resolve(); err != nil {
			return 0, err
		}
	}
	if n.family == nl80211Absent {
		return 0, nil
	}
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(unix.NL80211_ATTR_IFINDEX, uint32(index))
	attrs, err := ae.Encode()
	if err != nil {
		return 0, err
	}
	msgs, err := n.c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(n.family), Flags: netlink.Request},
		Data:   append([]byte{unix.NL80211_CMD_GET_INTERFACE, 0, 0, 0}, attrs...),
	})
	switch {
	case errors.Is(err, unix.ENODEV), errors.Is(err, unix.EINVAL), errors.Is(err, unix.EOPNOTSUPP):
		return 0, nil // not a wireless device
	case err != nil:
		return 0, fmt.Errorf("nl80211 interface %d: %w", index, err)
	}
	for _, m := range msgs {
		if len(m.Data) < genlHeaderLen {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[genlHeaderLen:])
		if err != nil {
			return 0, err
		}
		for ad.Next() {
			if ad.Type() == unix.NL80211_ATTR_IFTYPE {
				return ad.Uint32(), ad.Err()
			}
		}
		if err := ad.Err(); err != nil {
			return 0, err
		}
	}
	return 0, nil
}

// resolve looks up the nl80211 family id (CTRL_CMD_GETFAMILY).
func (n *nl80211) resolve() error {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.CTRL_ATTR_FAMILY_NAME, "nl80211")
	attrs, err := ae.Encode()
	if err != nil {
		return err
	}
	msgs, err := n.c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.GENL_ID_CTRL, Flags: netlink.Request},
		Data:   append([]byte{unix.CTRL_CMD_GETFAMILY, ctrlVersion, 0, 0}, attrs...),
	})
	if errors.Is(err, unix.ENOENT) {
		n.family = nl80211Absent
		return nil
	}
	if err != nil {
		return fmt.Errorf("resolving the nl80211 family: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < genlHeaderLen {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[genlHeaderLen:])
		if err != nil {
			return err
		}
		for ad.Next() {
			if ad.Type() == unix.CTRL_ATTR_FAMILY_ID {
				n.family = ad.Uint16()
			}
		}
		if err := ad.Err(); err != nil {
			return err
		}
	}
	if n.family == 0 {
		return errors.New("resolving the nl80211 family: no family id in the answer")
	}
	return nil
}

// isolationSource reads an access point's client isolation.
type isolationSource struct {
	debugFS string   // "" skips debugfs
	hostapd []string // configuration file globs
}

// isolation reports the client isolation of access point iface and where
// it was read.
func (s isolationSource) isolation(iface string) (Tristate, string) {
	if s.debugFS != "" {
		if t, src := debugfsIsolation(s.debugFS, iface); t != Unknown {
			return t, src
		}
	}
	for _, g := range s.hostapd {
		files, err := filepath.Glob(g)
		if err != nil {
			continue
		}
		for _, f := range files {
			if t := hostapdIsolation(f, iface); t != Unknown {
				return t, f
			}
		}
	}
	return Unknown, ""
}

// debugfsIsolation reads mac80211's flags of iface under debugfs.
func debugfsIsolation(debugFS, iface string) (Tristate, string) {
	if strings.ContainsAny(iface, "/*?[\\") {
		return Unknown, ""
	}
	files, err := filepath.Glob(filepath.Join(debugFS, "ieee80211", "*", "netdev:"+iface, "flags"))
	if err != nil || len(files) != 1 {
		return Unknown, "" // none, or the same name on two radios
	}
	b, err := readLimited(files[0], 64)
	if err != nil {
		return Unknown, ""
	}
	flags, err := strconv.ParseUint(strings.TrimSpace(string(b)), 0, 64)
	if err != nil {
		return Unknown, ""
	}
	if flags&sdataDontBridgePackets != 0 {
		return On, files[0]
	}
	return Off, files[0]
}

// hostapdIsolation reads ap_isolate of the BSS named iface from a hostapd
// configuration file: Unknown when the file names no such BSS.
func hostapdIsolation(path, iface string) Tristate {
	f, err := os.Open(path)
	if err != nil {
		return Unknown
	}
	defer f.Close()
	return parseHostapd(io.LimitReader(f, maxConfigFile), iface)
}

// parseHostapd finds the BSS named iface and returns its ap_isolate. The
// lines before the first bss= line are the first BSS, named by interface=;
// each bss= line starts another.
func parseHostapd(r io.Reader, iface string) Tristate {
	type bss struct {
		name    string
		isolate Tristate
	}
	sections := []bss{{isolate: Off}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		key, value, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || strings.HasPrefix(key, "#") {
			continue
		}
		cur := &sections[len(sections)-1]
		switch key {
		case "interface":
			if len(sections) == 1 {
				cur.name = value
			}
		case "bss":
			sections = append(sections, bss{name: value, isolate: Off})
		case "ap_isolate":
			cur.isolate = Off
			if value == "1" {
				cur.isolate = On
			}
		}
	}
	if sc.Err() != nil {
		return Unknown
	}
	for _, b := range sections {
		if b.name != "" && b.name == iface {
			return b.isolate
		}
	}
	return Unknown
}

func readLimited(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}
