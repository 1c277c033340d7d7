package scale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/openmud/mud/internal/lab/netlab"
)

// kea is ISC Kea's DHCPv6 server on the lab gateway's LAN bridge: the
// DHCPv6 server of the scale lab. dnsmasq, the lab's usual server, walks
// its whole lease list for every message (about 0.7 ms each with 1,000
// leases on this machine), so it cannot answer a thousand clients a
// second; Kea, with in-memory leases, can, and the burst then measures
// mudd rather than the DHCP server.
type kea struct {
	cmd  *exec.Cmd
	out  *netlab.SyncBuffer
	done chan struct{}
}

// keaPool is the range Kea leases from (2001:db8:1::/64, the lab's LAN).
const keaPool = "2001:db8:1::1000-2001:db8:1::ffff"

func startKea(ctx context.Context, lab *netlab.Lab, dir string) (*kea, error) {
	if _, err := exec.LookPath("kea-dhcp6"); err != nil {
		return nil, fmt.Errorf("kea-dhcp6 (Debian kea-dhcp6-server) not found: %w", err)
	}
	cfg := map[string]any{"Dhcp6": map[string]any{
		"interfaces-config":  map[string]any{"interfaces": []string{netlab.LANBridge}},
		"lease-database":     map[string]any{"type": "memfile", "persist": false, "lfc-interval": 0},
		"server-id":          map[string]any{"type": "LL", "persist": false},
		"preferred-lifetime": 3000, "valid-lifetime": 3600, "renew-timer": 1000, "rebind-timer": 2000,
		"subnet6": []any{map[string]any{
			"id": 1, "subnet": netlab.LANPrefix6.String(), "interface": netlab.LANBridge,
			"pools": []any{map[string]any{"pool": keaPool}},
		}},
		// One thread answers the messages in the order they came, as the
		// generator's release of a given-up exchange relies on (see
		// framegen's phases).
		"multi-threading": map[string]any{"enable-multi-threading": false},
		"loggers": []any{map[string]any{"name": "kea-dhcp6", "severity": "WARN",
			"output_options": []any{map[string]any{"output": "stdout"}}}},
	}}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "kea-dhcp6.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return nil, fmt.Errorf("writing Kea's configuration: %w", err)
	}
	// Kea binds the bridge's link-local address, which the kernel gives
	// out only once duplicate address detection is done.
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		out, err := lab.Run(ctx, lab.GW.NS, "ip", "-6", "addr", "show", "dev", netlab.LANBridge, "scope", "link", "tentative")
		if err != nil {
			return nil, err
		}
		if strings.TrimSpace(out) == "" {
			break
		}
		if time.Since(start) > 10*time.Second {
			return nil, fmt.Errorf("the link-local address of %s is still tentative after 10s", netlab.LANBridge)
		}
	}
	k := &kea{out: &netlab.SyncBuffer{}, done: make(chan struct{})}
	k.cmd = lab.Command(context.WithoutCancel(ctx), lab.GW.NS, "kea-dhcp6", "-c", path)
	k.cmd.Env = append(os.Environ(), "KEA_PIDFILE_DIR="+dir, "KEA_LOCKFILE_DIR="+dir)
	k.cmd.Stdout, k.cmd.Stderr = k.out, k.out
	if err := k.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting kea-dhcp6: %w", err)
	}
	go func() { _ = k.cmd.Wait(); close(k.done) }()
	// Kea is ready once its socket on the bridge is bound.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := lab.Run(ctx, lab.GW.NS, "ss", "-Hlun", "sport", "= :547")
		if strings.TrimSpace(out) != "" {
			return k, nil
		}
		select {
		case <-k.done:
			return nil, fmt.Errorf("kea-dhcp6 exited: %s", k.out.String())
		default:
		}
		if time.Now().After(deadline) {
			k.Close()
			return nil, errors.New("kea-dhcp6 did not bind port 547 within 10s: " + k.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Close stops Kea.
func (k *kea) Close() {
	if k.cmd.Process == nil {
		return
	}
	_ = k.cmd.Process.Signal(os.Interrupt)
	select {
	case <-k.done:
	case <-time.After(5 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.done
	}
}
