#!/bin/sh
# After removal. Debian's purge also deletes the state directory (queued
# messages) and the system user; a plain removal keeps both, as rpm's
# erase does (rpm has no purge: delete /var/lib/zrc-rendezvous and the
# user by hand).
# deb: $1 = remove, purge, upgrade, ...; rpm: $1 = 0 (erase), 1 (upgrade).
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = purge ]; then
	rm -rf /var/lib/zrc-rendezvous /var/lib/private/zrc-rendezvous
	if getent passwd zrc-rendezvous >/dev/null 2>&1; then
		userdel zrc-rendezvous >/dev/null 2>&1 || true
	fi
fi
exit 0
