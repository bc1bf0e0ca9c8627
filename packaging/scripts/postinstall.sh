#!/bin/sh
# After install or upgrade: the system user the unit runs as (systemd uses
# a static user of the unit's name instead of a dynamic one), then enable
# the service without starting it: the operator reviews
# /etc/zrc-rendezvous/config.toml first. An upgrade restarts a running
# service (the state file keeps its queued messages).
# deb: $1 = configure; rpm: $1 = 1 (install) or 2 (upgrade).
set -e
if ! getent passwd zrc-rendezvous >/dev/null 2>&1; then
	useradd --system --no-create-home --home-dir /var/lib/zrc-rendezvous \
		--shell /usr/sbin/nologin --comment "zrc-rendezvous mailbox server" zrc-rendezvous
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	upgrade=false
	case "$1" in
	configure) [ -n "$2" ] && upgrade=true ;;
	2) upgrade=true ;;
	esac
	if $upgrade; then
		systemctl try-restart zrc-rendezvous.service >/dev/null 2>&1 || true
	else
		systemctl enable zrc-rendezvous.service >/dev/null 2>&1 || true
	fi
fi
exit 0
