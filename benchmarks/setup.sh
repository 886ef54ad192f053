#!/bin/sh
# Installs what the stream benchmark's GStreamer row needs (Debian or Ubuntu, as root):
# gst-launch-1.0, shmsink/shmsrc (plugins-bad), qtdemux (plugins-good) and avdec_h264 (libav)
# for video.py, and the Python bindings that drive them.
# Idempotent: packages already present are left as they are. Not run by CI.
set -eu

PACKAGES="gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav python3-gi gir1.2-gstreamer-1.0"

missing=""
for package in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $package"
    fi
done

if [ -z "$missing" ]; then
    echo "setup.sh: all present:$(printf ' %s' $PACKAGES)"
else
    if [ "$(id -u)" -ne 0 ]; then
        SUDO=sudo
    else
        SUDO=
    fi
    echo "setup.sh: installing$missing"
    $SUDO apt-get update -q
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
fi

gst-inspect-1.0 shmsink >/dev/null && gst-inspect-1.0 shmsrc >/dev/null && echo "setup.sh: shmsink and shmsrc found"
echo "setup.sh: the venv needs PyGObject too: .venv/bin/pip install -e '.[bench]' (or create the venv with --system-site-packages)"
