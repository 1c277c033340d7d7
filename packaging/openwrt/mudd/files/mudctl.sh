# mudctl finds mudd's control socket where OpenWrt's mudd puts it.
export MUDCTL_SOCKET=/var/run/mud/mudd.sock
