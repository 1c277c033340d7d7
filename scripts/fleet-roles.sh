#!/usr/bin/env bash
# Sets up etcd role-based access for mud gateways sharing decisions (README,
# "Fleet"): each gateway's client certificate (its common name is the etcd
# user name) may read and write the shared decisions under <prefix>/shared/,
# write only its own keys under <prefix>/gateways/<id>/, and read the other
# gateways' keys (their liveness). Then turns authentication on.
#
#   scripts/fleet-roles.sh --endpoints https://192.0.2.21:2379,https://192.0.2.22:2379 \
#       --cacert ca.pem --cert root.pem --key root.key [--prefix /mud] gw1 gw2 ...
#
# --cert/--key are the administrator's client certificate, common name
# "root". Run it again to add gateways: what exists already is kept. Every
# value goes to etcdctl as one argument; gateway ids and the prefix are
# checked against the characters mudd's configuration allows.
set -euo pipefail

usage() {
	echo "usage: $0 --endpoints URLS --cacert FILE --cert FILE --key FILE [--prefix /mud] GATEWAY-ID..." >&2
	exit 2
}

ETCDCTL=${ETCDCTL:-etcdctl}
prefix=/mud
endpoints= cacert= cert= key=
ids=()
while [ $# -gt 0 ]; do
	case "$1" in
	--endpoints) endpoints=${2-}; shift 2 ;;
	--cacert) cacert=${2-}; shift 2 ;;
	--cert) cert=${2-}; shift 2 ;;
	--key) key=${2-}; shift 2 ;;
	--prefix) prefix=${2-}; shift 2 ;;
	--help | -h) usage ;;
	-*) echo "fleet-roles: unknown option $1" >&2; usage ;;
	*) ids+=("$1"); shift ;;
	esac
done
[ -n "$endpoints" ] && [ -n "$cacert" ] && [ -n "$cert" ] && [ -n "$key" ] && [ ${#ids[@]} -gt 0 ] || usage

if ! [[ $prefix =~ ^(/[A-Za-z0-9._-]+)+$ ]]; then
	echo "fleet-roles: prefix \"$prefix\" must be /name[/name...] of A-Z a-z 0-9 . _ -" >&2
	exit 2
fi
for id in "${ids[@]}"; do
	if ! [[ $id =~ ^[A-Za-z0-9._-]{1,64}$ ]] || [ "$id" = . ] || [ "$id" = .. ] || [ "$id" = root ]; then
		echo "fleet-roles: gateway id \"$id\" must be 1-64 of A-Z a-z 0-9 . _ - (and not root)" >&2
		exit 2
	fi
done

ctl() { "$ETCDCTL" --endpoints "$endpoints" --cacert "$cacert" --cert "$cert" --key "$key" "$@"; }

# exists LIST NAME: whether `etcdctl LIST list` names NAME. The list is read
# whole first: grep -q in a pipe would stop reading at the first match, and
# etcdctl's SIGPIPE would fail the pipe under pipefail.
exists() {
	local out
	out=$(ctl "$1" list) || return 2
	grep -qxF -- "$2" <<<"$out"
}

if ! exists user root; then
	ctl user add root --no-password
fi
ctl user grant-role root root >/dev/null

shared=mud-shared
if ! exists role "$shared"; then
	ctl role add "$shared"
fi
ctl role grant-permission "$shared" readwrite "$prefix/shared/" --prefix=true
# Every gateway reads the others' keys (liveness, device summaries).
ctl role grant-permission "$shared" read "$prefix/gateways/" --prefix=true

for id in "${ids[@]}"; do
	role="mud-gw-$id"
	if ! exists role "$role"; then
		ctl role add "$role"
	fi
	ctl role grant-permission "$role" readwrite "$prefix/gateways/$id/" --prefix=true
	if ! exists user "$id"; then
		ctl user add "$id" --no-password
	fi
	ctl user grant-role "$id" "$shared"
	ctl user grant-role "$id" "$role"
done

ctl auth enable
