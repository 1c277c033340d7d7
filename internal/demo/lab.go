package demo

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/openmud/mud/internal/labpki"
	"github.com/openmud/mud/internal/netlab"
)

// Names and addresses of the lab's internet (all documentation ranges).
// netlab gives server j the address 203.0.113.<10+j>.
const (
	mudHost   = "mud.example.com"   // the manufacturer's MUD server (server 1)
	cloudHost = "cloud.example.com" // the service the MUD file permits (server 2)
	otherHost = "other.example.net" // a host the MUD file does not name (server 3)

	mudPath = "/lightbulb2000.json"
	sigPath = "/lightbulb2000.p7s"

	permittedPort = 443  // the port the MUD file permits to cloud.example.com
	otherPort     = 8080 // a port it does not
)

var mudURL = "https://" + mudHost + mudPath

// mudFile is the example of RFC 8520 §9, made IPv4: the light bulb may open
// TCP connections to port 443 of its cloud service, and receive the answers,
// and nothing else. The cloud service is a host of the lab.
var mudFile = fmt.Sprintf(`{
  "ietf-mud:mud": {
    "mud-version": 1,
    "mud-url": %q,
    "mud-signature": %q,
    "last-update": "2026-01-28T11:20:51+01:00",
    "cache-validity": 48,
    "is-supported": true,
    "systeminfo": "The BMS Example Light Bulb",
    "mfg-name": "Example",
    "model-name": "lightbulb2000",
    "from-device-policy": {"access-lists": {"access-list": [{"name": "mud-76100-v4fr"}]}},
    "to-device-policy": {"access-lists": {"access-list": [{"name": "mud-76100-v4to"}]}}
  },
  "ietf-access-control-list:acls": {
    "acl": [
      {
        "name": "mud-76100-v4to",
        "type": "ipv4-acl-type",
        "aces": {"ace": [{
          "name": "cl0-todev",
          "matches": {
            "ipv4": {"ietf-acldns:src-dnsname": %q, "protocol": 6},
            "tcp": {"ietf-mud:direction-initiated": "from-device",
                    "source-port": {"operator": "eq", "port": %d}}
          },
          "actions": {"forwarding": "accept"}
        }]}
      },
      {
        "name": "mud-76100-v4fr",
        "type": "ipv4-acl-type",
        "aces": {"ace": [{
          "name": "cl0-frdev",
          "matches": {
            "ipv4": {"ietf-acldns:dst-dnsname": %q, "protocol": 6},
            "tcp": {"ietf-mud:direction-initiated": "from-device",
                    "destination-port": {"operator": "eq", "port": %d}}
          },
          "actions": {"forwarding": "accept"}
        }]}
      }
    ]
  }
}
`, mudURL, "https://"+mudHost+sigPath, cloudHost, permittedPort, cloudHost, permittedPort)

// udhcpcScript is the devices' DHCP client script. It sets only the leased
// address and the default route inside the device's namespace; it never
// writes resolv.conf: each lab namespace has its own
// /etc/netns/<ns>/resolv.conf pointing at the gateway, so the machine's DNS
// configuration is never touched. (udhcpc can only run a script, so this is
// the one shell script of the demo; Go never runs a shell.)
const udhcpcScript = `#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
case "$1" in
deconfig)
	ip -4 addr flush dev "$interface" ;;
bound)
	ip -4 addr flush dev "$interface"
	ip -4 addr add "$ip/${mask:-24}" dev "$interface"
	[ -n "$router" ] && ip -4 route replace default via "${router%% *}" dev "$interface" ;;
renew)
	ip -4 addr replace "$ip/${mask:-24}" dev "$interface"
	[ -n "$router" ] && ip -4 route replace default via "${router%% *}" dev "$interface" ;;
esac
exit 0
`

// pki is the lab's certificates: one CA that the gateway trusts both for
// the MUD server's HTTPS certificate and as a MUD-file signer.
type pki struct {
	caPEM  string // path of the root certificate
	server tls.Certificate
	sig    []byte // detached CMS signature over mudFile
}

func newPKI(dir string) (*pki, error) {
	ca, err := labpki.NewCA("Example Lab")
	if err != nil {
		return nil, fmt.Errorf("creating the lab CA: %w", err)
	}
	p := &pki{caPEM: filepath.Join(dir, "lab-ca.pem")}
	if err := ca.WriteRootPEM(p.caPEM); err != nil {
		return nil, fmt.Errorf("writing the lab CA certificate: %w", err)
	}
	leaf, err := ca.Server([]string{mudHost}, nil)
	if err != nil {
		return nil, fmt.Errorf("issuing the MUD server's certificate: %w", err)
	}
	p.server = leaf.TLSCertificate()
	signer, err := ca.Signer(pkix.Name{CommonName: "Example MUD signer", Organization: []string{"Example"}})
	if err != nil {
		return nil, fmt.Errorf("issuing the MUD signer's certificate: %w", err)
	}
	if p.sig, err = signer.SignDetached([]byte(mudFile)); err != nil {
		return nil, fmt.Errorf("signing the MUD file: %w", err)
	}
	return p, nil
}

// mudServer is the manufacturer's HTTPS server, in a server namespace.
type mudServer struct {
	srv  *http.Server
	mu   sync.Mutex
	hits []string
}

func startMUDServer(ns string, addr netip.Addr, p *pki) (*mudServer, error) {
	ln, err := netlab.Listen(ns, "tcp", netip.AddrPortFrom(addr, 443).String())
	if err != nil {
		return nil, fmt.Errorf("opening the MUD server's port in %s: %w", ns, err)
	}
	s := &mudServer{}
	mux := http.NewServeMux()
	serve := func(path, mediaType string, body []byte) {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			s.mu.Lock()
			s.hits = append(s.hits, r.URL.Path)
			s.mu.Unlock()
			w.Header().Set("Content-Type", mediaType)
			_, _ = w.Write(body)
		})
	}
	serve(mudPath, "application/mud+json", []byte(mudFile))
	serve(sigPath, "application/pkcs7-signature", p.sig)
	s.srv = &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = s.srv.ServeTLS(ln, "", "") }()
	return s, nil
}

func (s *mudServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.hits...)
}

func (s *mudServer) close() { _ = s.srv.Close() }

// startDNSMasq runs dnsmasq in the gateway namespace as the LAN's DHCP and
// DNS server, with no system configuration and no upstream: the lab's names
// are answered from host records, anything else is refused, so no query
// leaves the lab.
func startDNSMasq(ctx context.Context, lab *netlab.Lab, dir string, hosts map[string]netip.Addr) (*netlab.SyncBuffer, error) {
	args := []string{
		"--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--interface=" + netlab.LANBridge, "--bind-interfaces",
		"--dhcp-range=192.0.2.100,192.0.2.199,255.255.255.0,1h",
		// Without --no-ping dnsmasq checks with ICMP that an address is
		// unused before it really offers it, which holds every device's
		// lease back by seconds; the lab's LAN has no other hosts.
		"--dhcp-authoritative", "--no-ping",
		"--dhcp-leasefile=" + filepath.Join(dir, "dnsmasq.leases"),
		"--pid-file=" + filepath.Join(dir, "dnsmasq.pid"),
		"--log-dhcp", "--log-queries", "--log-facility=-",
		"--user=root", "--group=root",
	}
	for name, a := range hosts {
		args = append(args, "--host-record="+name+","+a.String())
	}
	_, out, err := lab.Start(lab.GW.NS, "dnsmasq", args...)
	if err != nil {
		return nil, err
	}
	// dnsmasq accepts TCP on port 53 once its sockets are open.
	addr := netip.AddrPortFrom(netlab.GatewayLAN4, 53).String()
	err = poll(ctx, 5*time.Second, func() error {
		c, err := netlab.Dial(lab.GW.NS, "tcp", addr, 200*time.Millisecond)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		return out, fmt.Errorf("waiting for dnsmasq on %s: %w; its log:\n%s", addr, err, out)
	}
	return out, nil
}

// writeConfig writes mudd's configuration for the gateway.
func writeConfig(dir, caPEM string, mudServer netip.Addr) (cfgPath, sock string, err error) {
	cfgPath, sock = filepath.Join(dir, "mudd.yaml"), filepath.Join(dir, "mudd.sock")
	cfg := fmt.Sprintf(`# mudd configuration of the demo gateway.
interfaces: [%s]
state_dir: %s
socket: %s
socket_group: ""
log:
  level: info
# No metrics listener: the demo must not open ports beyond the lab.
metrics:
  listen: ""
trust:
  anchors: [%s]
  server_cas: [%s]
fetch:
  # The MUD server is on a documentation range, which mudd refuses by default.
  allow_prefixes: [%s]
  hosts:
    %s: %s
dns:
  # dnsmasq listens on the LAN bridge only.
  resolver: "%s"
`, netlab.LANBridge, filepath.Join(dir, "state"), sock, caPEM, caPEM,
		netlab.WANPrefix4, mudHost, mudServer, netip.AddrPortFrom(netlab.GatewayLAN4, 53))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return "", "", fmt.Errorf("writing mudd's configuration: %w", err)
	}
	return cfgPath, sock, nil
}

// leasedAddr is the IPv4 address DHCP gave the host's interface, once it
// has one.
func leasedAddr(h *netlab.Host) (netip.Addr, error) {
	var got netip.Addr
	err := netlab.Do(h.NS, func() error {
		ifi, err := net.InterfaceByName(h.Iface)
		if err != nil {
			return err
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(ipn.IP.To4()); ok && ipn.IP.To4() != nil {
					got = ip
					return nil
				}
			}
		}
		return errors.New("no IPv4 address yet")
	})
	return got, err
}

// resolve asks the gateway's DNS server from inside the device's namespace,
// as the device itself would.
func resolve(ctx context.Context, ns, name string) (netip.Addr, error) {
	r := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return netlab.Dial(ns, network, netip.AddrPortFrom(netlab.GatewayLAN4, 53).String(), 2*time.Second)
		},
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip4", name)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("resolving %s from %s: %w", name, ns, err)
	}
	return addrs[0].Unmap(), nil
}

// poll calls fn until it succeeds, ctx ends or timeout passes.
func poll(ctx context.Context, timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// indent prefixes every line of s, for output nested under a step.
func indent(w io.Writer, s string) {
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		fmt.Fprintln(w, "    "+line)
	}
}
