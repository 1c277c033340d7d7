package capture

import (
	"strings"
	"testing"
)

func TestCheckInterfaces(t *testing.T) {
	if err := CheckInterfaces([]string{"br-lan", "wlan0"}); err != nil {
		t.Error(err)
	}
	for _, names := range [][]string{nil, {""}, {"br-lan", "br-lan"}, {strings.Repeat("x", 16)}} {
		if err := CheckInterfaces(names); err == nil {
			t.Errorf("%q accepted", names)
		}
	}
}
