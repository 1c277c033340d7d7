package capture

import (
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"
)

// CheckInterfaces checks a configured list of interfaces to capture on:
// at least one, each a possible Linux interface name (1 to 15 octets),
// none twice.
func CheckInterfaces(names []string) error {
	if len(names) == 0 {
		return errors.New("no interfaces configured")
	}
	for i, name := range names {
		if name == "" || len(name) >= unix.IFNAMSIZ {
			return fmt.Errorf("invalid interface name %q", name)
		}
		if slices.Contains(names[:i], name) {
			return fmt.Errorf("interface %q listed twice", name)
		}
	}
	return nil
}
