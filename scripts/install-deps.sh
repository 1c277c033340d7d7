#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need. Idempotent: does
# nothing when everything is already there. Go modules, including the
# development tools pinned in tools/go.mod, come from the Go module proxy when
# the go command first needs them.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have nft       || need+=(nftables)
have dnsmasq   || need+=(dnsmasq-base)
have udhcpc    || need+=(udhcpc)
have dhclient  || need+=(isc-dhcp-client)
have yanglint  || need+=(libyang2-tools)
have iperf3    || need+=(iperf3)
have conntrack || need+=(conntrack)
have busybox   || need+=(busybox)
have ip        || need+=(iproute2)
have openssl   || need+=(openssl)
have make      || need+=(make)
have git       || need+=(git)
have gcc       || need+=(gcc libc6-dev)  # cgo, for go test -race
have systemd-analyze || need+=(systemd)  # packaging tests: systemd-analyze verify, systemd-sysusers
have dpkg-deb  || need+=(dpkg)
have rpm       || need+=(rpm)      # packaging tests: reading the .rpm
have setpriv   || need+=(util-linux)
have dot       || need+=(graphviz)  # policy/graph and the dashboard: policies drawn as SVG
have chromium  || need+=(chromium)  # the dashboard's browser test (headless)
have etcd      || need+=(etcd-server)  # fleet: the etcd lab cluster (internal/lab/etcdlab)
have etcdctl   || need+=(etcd-client)  # fleet: scripts/fleet-roles.sh and the lab
have keepalived || need+=(keepalived)  # fleet: the HA pair lab (VRRP moves the virtual gateway address, e2e/fleet)
have kea-dhcp6 || need+=(kea-dhcp6-server)  # e2e/scale: the DHCPv6 server answering a thousand clients a second

if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: need root to install: ${need[*]}" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

