#!/bin/sh
# Before removal (not before an upgrade): stop and disable the service.
# deb: $1 = remove (upgrade: upgrade); rpm: $1 = 0 (removal), 1 (upgrade).
set -e
case "$1" in
remove | 0)
	if [ -d /run/systemd/system ]; then
		systemctl disable --now zrc-rendezvous.service >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
