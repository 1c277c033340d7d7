package api

import (
	"context"
	"testing"
)

// WithGatewayID names the gateway in every device an answer carries;
// without an id the backend is left as it is (a mudd in no fleet: the
// field stays absent).
func TestWithGatewayID(t *testing.T) {
	ctx := context.Background()
	vals := wireValues()
	dev := vals["device"].(Device)
	dev.Gateway = ""
	vals["device"] = dev
	fixed := &fixedBackend{got: map[string]any{}, vals: vals}
	if b := WithGatewayID(fixed, ""); b != Backend(fixed) {
		t.Errorf("WithGatewayID with no id wraps the backend: %T", b)
	}
	b := WithGatewayID(fixed, "gw7")
	ds, err := b.Devices(ctx)
	if err != nil || len(ds) != 1 || ds[0].Gateway != "gw7" {
		t.Errorf("devices: %+v %v", ds, err)
	}
	for name, call := range map[string]func() (Device, error){
		"device":     func() (Device, error) { return b.Device(ctx, mac1) },
		"approve":    func() (Device, error) { return b.Approve(ctx, Caller{}, mac1, ActionRequest{}) },
		"reject":     func() (Device, error) { return b.Reject(ctx, Caller{}, mac1, ActionRequest{}) },
		"quarantine": func() (Device, error) { return b.Quarantine(ctx, Caller{}, mac1, ActionRequest{}) },
		"release":    func() (Device, error) { return b.Release(ctx, Caller{}, mac1, ActionRequest{}) },
		"bind":       func() (Device, error) { return b.Bind(ctx, Caller{}, mac1, BindRequest{}) },
	} {
		if d, err := call(); err != nil || d.Gateway != "gw7" || d.MAC != dev.MAC {
			t.Errorf("%s: gateway %q, MAC %s, %v", name, d.Gateway, d.MAC, err)
		}
	}
	if d, _ := fixed.Device(ctx, mac1); d.Gateway != "" {
		t.Errorf("the wrapped backend's device was changed: %q", d.Gateway)
	}
}
