//go:build !nofleet

package mudctl

// mudctl --fleet: status and devices of every gateway, read from the
// fleet's etcd cluster (package fleet's View) with the store.etcd settings
// of mudd's configuration. Exit codes: 0 ok, 1 some key could not be
// understood (shown as an error row), 2 usage (--fleet with another
// command, store.backend not etcd), an unreadable configuration or
// credential, or etcd not answering.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/openmud/mud/config"
	"github.com/openmud/mud/fleet"
	"github.com/openmud/mud/internal/cli"
	"github.com/spf13/cobra"
)

// fleetRequestTimeout bounds each etcd request of --fleet; an unreachable
// cluster is reported after it.
const fleetRequestTimeout = 5 * time.Second

// fleetTimeout bounds reading the whole fleet.
const fleetTimeout = 60 * time.Second

// runFleetStatus is mudctl --fleet status.
func runFleetStatus(cmd *cobra.Command) error {
	return fleetShow(cmd, printFleetStatus, fleetStatusJSON)
}

// runFleetDevices is mudctl --fleet devices.
func runFleetDevices(cmd *cobra.Command) error {
	return fleetShow(cmd, printFleetDevices, fleetDevicesJSON)
}

// fleetShow reads the fleet and prints it as a table (table) or as JSON
// (asJSON's value).
func fleetShow(cmd *cobra.Command, table func(io.Writer, fleet.Snapshot) error, asJSON func(fleet.Snapshot) any) error {
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	path := configPath(cmd)
	cfg, err := config.Load(path)
	if err != nil {
		return cli.IOError(fmt.Errorf("--fleet reads store.etcd from mudd's configuration: %w", err))
	}
	if cfg.Store.Backend != config.BackendEtcd {
		return cli.Usage("--fleet: %s has store.backend %q: this gateway is in no fleet (store.backend etcd shares decisions through etcd; README, Fleet)",
			path, cfg.Store.Backend)
	}
	e := cfg.Store.Etcd
	v, err := fleet.OpenView(fleet.ViewConfig{Endpoints: e.Endpoints, CACert: e.CACert, Cert: e.Cert, Key: e.Key,
		Prefix: e.Prefix, RequestTimeout: fleetRequestTimeout})
	if err != nil {
		return cli.IOError(fmt.Errorf("--fleet (store.etcd of %s): %w", path, err))
	}
	defer v.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), fleetTimeout)
	defer cancel()
	snap, err := v.Read(ctx)
	if err != nil {
		return cli.IOError(err)
	}
	out := cmd.OutOrStdout()
	if format == "json" {
		err = writeJSON(out, asJSON(snap))
	} else {
		err = table(out, snap)
	}
	if err != nil {
		return err
	}
	var problems []error
	if n := len(snap.Errors); n > 0 {
		problems = append(problems, fmt.Errorf("keys under %s/gateways/ that could not be understood: %d (the ERROR rows of mudctl --fleet devices)", e.Prefix, n))
	}
	if snap.Truncated {
		problems = append(problems, fmt.Errorf("more than %d keys under %s/gateways/: the rest were not read", fleet.DefaultViewMaxKeys, e.Prefix))
	}
	if len(problems) > 0 {
		return cli.Failure(errors.Join(problems...))
	}
	return nil
}

// fleetDevice is one row of mudctl --fleet devices -o json: a device
// summary of a gateway, or a key of it that could not be understood (Key
// and Error set, no summary).
type fleetDevice struct {
	Gateway      string `json:"gateway"`
	GatewayAlive bool   `json:"gateway_alive"`
	*fleet.DeviceSummary
	Key   string `json:"key,omitempty"`
	Error string `json:"error,omitempty"`
}

// fleetDeviceRows are the devices of every gateway, by gateway then MAC,
// each gateway's error rows after its devices (errors of keys under no
// valid gateway id last).
func fleetDeviceRows(snap fleet.Snapshot) []fleetDevice {
	errs := map[string][]fleet.KeyError{}
	for _, e := range snap.Errors {
		errs[e.Gateway] = append(errs[e.Gateway], e)
	}
	var rows []fleetDevice
	errRows := func(gw string, alive bool) {
		for _, e := range errs[gw] {
			rows = append(rows, fleetDevice{Gateway: gw, GatewayAlive: alive, Key: e.Key, Error: e.Err.Error()})
		}
		delete(errs, gw)
	}
	for _, g := range snap.Gateways {
		for i := range g.Devices {
			rows = append(rows, fleetDevice{Gateway: g.ID, GatewayAlive: g.Alive, DeviceSummary: &g.Devices[i]})
		}
		errRows(g.ID, g.Alive)
	}
	for _, gw := range slices.Sorted(maps.Keys(errs)) {
		errRows(gw, false)
	}
	return rows
}

func fleetDevicesJSON(snap fleet.Snapshot) any {
	rows := fleetDeviceRows(snap)
	if rows == nil {
		rows = []fleetDevice{}
	}
	return rows
}

// printFleetDevices lists every gateway's devices. Everything in a summary
// was written by some gateway and is escaped when it holds a control
// character.
func printFleetDevices(w io.Writer, snap fleet.Snapshot) error {
	rows := fleetDeviceRows(snap)
	withErrors := len(snap.Errors) > 0
	t := newTable(w)
	header := "GATEWAY\tMAC\tIPS\tSTATE\tENFORCEMENT\tMUD URL\tUPDATED"
	if withErrors {
		header += "\tERROR"
	}
	fmt.Fprintln(t, header)
	for _, r := range rows {
		gw := shown(r.Gateway)
		if !r.GatewayAlive {
			gw += " (down)"
		}
		if r.DeviceSummary == nil {
			fmt.Fprintf(t, "%s\t-\t-\tERROR\t-\t-\t-\tkey %s: %s\n", gw, shown(r.Key), shown(r.Error))
			continue
		}
		d := r.DeviceSummary
		ips := make([]string, len(d.IPs))
		for i, ip := range d.IPs {
			ips[i] = shown(ip)
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s", gw, shown(d.MAC), dash(strings.Join(ips, ",")), shown(d.State),
			dash(shown(d.Enforcement)), dash(shown(d.MUDURL)), when(d.UpdatedAt))
		if withErrors {
			fmt.Fprint(t, "\t")
		}
		fmt.Fprintln(t)
	}
	if len(rows) == 0 {
		fmt.Fprintln(t, "(no gateway has published devices)")
	}
	return flushTable(t)
}

// fleetGateway is one gateway in mudctl --fleet status -o json.
type fleetGateway struct {
	ID         string         `json:"id"`
	Alive      bool           `json:"alive"`
	AliveSince time.Time      `json:"alive_since,omitzero"`
	Devices    int            `json:"devices"`
	ByState    map[string]int `json:"devices_by_state"`
	ByEnforce  map[string]int `json:"devices_by_enforcement"`
	Errors     int            `json:"errors"`
}

// fleetStatus is mudctl --fleet status -o json.
type fleetStatus struct {
	Revision  int64          `json:"revision"`
	Gateways  []fleetGateway `json:"gateways"`
	Shared    map[string]int `json:"shared"`
	Errors    []fleetError   `json:"errors,omitempty"`
	Truncated bool           `json:"truncated,omitempty"`
}

type fleetError struct {
	Gateway string `json:"gateway"`
	Key     string `json:"key"`
	Error   string `json:"error"`
}

func fleetStatusOf(snap fleet.Snapshot) fleetStatus {
	st := fleetStatus{Revision: snap.Revision, Gateways: []fleetGateway{}, Shared: map[string]int{}, Truncated: snap.Truncated}
	for _, g := range snap.Gateways {
		fg := fleetGateway{ID: g.ID, Alive: g.Alive, AliveSince: g.AliveSince, Devices: len(g.Devices),
			ByState: map[string]int{}, ByEnforce: map[string]int{}, Errors: g.Errors}
		for _, d := range g.Devices {
			fg.ByState[d.State]++
			if d.Enforcement != "" {
				fg.ByEnforce[d.Enforcement]++
			}
		}
		st.Gateways = append(st.Gateways, fg)
	}
	for k, n := range snap.Shared {
		st.Shared[string(k)] = n
	}
	for _, e := range snap.Errors {
		st.Errors = append(st.Errors, fleetError{Gateway: e.Gateway, Key: e.Key, Error: e.Err.Error()})
	}
	return st
}

func fleetStatusJSON(snap fleet.Snapshot) any { return fleetStatusOf(snap) }

// counts is "a 2, b 1", by name.
func counts(m map[string]int) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", shown(k), m[k]))
	}
	return dash(strings.Join(parts, ", "))
}

// printFleetStatus shows the gateways, then the shared decisions by kind.
func printFleetStatus(w io.Writer, snap fleet.Snapshot) error {
	st := fleetStatusOf(snap)
	t := newTable(w)
	fmt.Fprintln(t, "GATEWAY\tSTATUS\tSINCE\tDEVICES\tBY STATE\tBY ENFORCEMENT\tERRORS")
	for _, g := range st.Gateways {
		status := "alive"
		if !g.Alive {
			status = "down"
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%d\t%s\t%s\t%d\n", g.ID, status, when(g.AliveSince), g.Devices, counts(g.ByState), counts(g.ByEnforce), g.Errors)
	}
	if len(st.Gateways) == 0 {
		fmt.Fprintln(t, "(no gateway has keys in etcd)")
	}
	if err := flushTable(t); err != nil {
		return err
	}
	fmt.Fprintln(w)
	t = newTable(w)
	fmt.Fprintln(t, "SHARED DECISIONS\tCOUNT")
	for _, k := range fleet.Kinds() {
		fmt.Fprintf(t, "%s\t%d\n", k, snap.Shared[k])
	}
	if n := len(snap.Errors); n > 0 {
		fmt.Fprintf(t, "\nkeys not understood\t%d (mudctl --fleet devices shows them)\n", n)
	}
	fmt.Fprintf(t, "\netcd revision\t%d\n", snap.Revision)
	return flushTable(t)
}
