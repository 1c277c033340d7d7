#!/bin/sh
# mudd package: before removal (.deb: remove | upgrade NEW-VERSION;
# .rpm: 0 on removal, 1 on upgrade). On removal, stops and disables mudd.
set -e

case "${1:-}" in
remove | 0) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl disable --now mudd.service || true
fi
echo "mudd: its nftables tables stay in the kernel until the next boot;" \
	"remove them with: nft delete table inet mud; nft delete table bridge mud" >&2
exit 0
