#!/usr/bin/env bash
# Render asterisk/conf templates from the environment (same variables as hotline-pbx), then run
# Asterisk in the foreground as PID 1's child-less replacement (exec) so signals reach it.
# The instance lives at /srv/hotline/$HOTLINE_INSTANCE exactly as in the hotline-pbx chroot, so the
# controller's prompt paths (/srv/hotline/NAME/prompts/<lang>/<id>) are the same in both setups.
set -euo pipefail
NAME="${HOTLINE_INSTANCE:-hotline}"
# HOTLINE_ASTERISK_ROOT=/ : render into /srv/hotline/NAME of this container instead of a chroot.
HOTLINE_ASTERISK_ROOT=/ /opt/hotline/asterisk/hotline-pbx render "$NAME"
exec asterisk -f -C "/srv/hotline/$NAME/etc/asterisk.conf" "$@"
