#!/bin/sh
# mudd package: after removal (.deb: remove | purge | upgrade ...;
# .rpm: 0 on removal, 1 on upgrade). A purge also deletes mudd's database.
set -e

case "${1:-}" in
remove | purge | 0)
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
	;;
esac
if [ "${1:-}" = purge ]; then
	rm -rf /var/lib/mud
fi
exit 0
