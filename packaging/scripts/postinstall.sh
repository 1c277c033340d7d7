#!/bin/sh
# mudd package: after install or upgrade (.deb: configure [OLD-VERSION];
# .rpm: 1 on install, 2 on upgrade). Creates the mudd user and the mud
# group, and tells a running systemd about the unit. mudd is not enabled
# here: set `interfaces` in /etc/mud/mudd.yaml, then
# `systemctl enable --now mudd`.
set -e

case "${1:-}" in
abort-*) exit 0 ;;
esac

if command -v systemd-sysusers >/dev/null 2>&1; then
	systemd-sysusers /usr/lib/sysusers.d/mudd.conf
else
	# The same as mudd.conf, for systems without systemd-sysusers.
	getent group mud >/dev/null 2>&1 || groupadd --system mud
	getent group mudd >/dev/null 2>&1 || groupadd --system mudd
	getent passwd mudd >/dev/null 2>&1 ||
		useradd --system --gid mudd --groups mud --home-dir /var/lib/mud \
			--no-create-home --shell /usr/sbin/nologin \
			--comment "MUD enforcement daemon" mudd
fi

upgrade=false
if [ "${1:-}" = configure ] && [ -n "${2:-}" ]; then
	upgrade=true
elif [ "${1:-0}" = 2 ]; then
	upgrade=true
fi

# Only when systemd is the running init (sd_booted(3)).
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	if [ "$upgrade" = true ]; then
		# Run the new binary; the rules stay in the kernel meanwhile.
		systemctl try-restart mudd.service
	fi
fi
exit 0
