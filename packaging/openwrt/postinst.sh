#!/bin/sh
# mudd .ipk: after install, enable and start mudd as OpenWrt packages do
# (not when building an image: then IPKG_INSTROOT is set).
[ "${IPKG_NO_SCRIPT}" = 1 ] && exit 0
[ -s "${IPKG_INSTROOT}/lib/functions.sh" ] || exit 0
. "${IPKG_INSTROOT}/lib/functions.sh"
default_postinst "$0" "$@"
