//go:build tools

// Package deps names the module's direct dependencies, so that go.mod keeps
// them whatever the build tags. It is never built.
package deps

import (
	_ "github.com/coreos/go-systemd/v22/daemon"
	_ "github.com/google/nftables"
	_ "github.com/goreleaser/nfpm/v2"
	_ "github.com/insomniacslk/dhcp/dhcpv4"
	_ "github.com/mdlayher/packet"
	_ "github.com/miekg/dns"
	_ "github.com/smallstep/pkcs7"
	_ "github.com/spf13/cobra"
	_ "github.com/vishvananda/netlink"
	_ "github.com/vishvananda/netns"
	_ "go.etcd.io/bbolt"
	_ "golang.org/x/net/bpf"
	_ "golang.org/x/sys/unix"
	_ "gopkg.in/yaml.v3"
)
