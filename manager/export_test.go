package manager

import "testing"

// EnforcedCamera starts a manager whose one device, CameraMAC, is enforced
// with a signed camera MUD file, for the tests of package manager_test.
// Its fake enforcer counts 3 packets (180 bytes) dropped from the device.
func EnforcedCamera(t *testing.T) *Manager {
	t.Helper()
	_, _, h, _, _ := enforcedCam(t, Settings{})
	return h.m
}

// CameraMAC is the MAC of EnforcedCamera's device.
var CameraMAC = mac(1).String()
