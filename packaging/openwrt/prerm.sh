#!/bin/sh
# mudd .ipk: before removal, stop and disable mudd as OpenWrt packages do.
# Its nftables tables stay until reboot or `nft delete table inet mud;
# nft delete table bridge mud`.
[ -s "${IPKG_INSTROOT}/lib/functions.sh" ] || exit 0
. "${IPKG_INSTROOT}/lib/functions.sh"
default_prerm "$0" "$@"
