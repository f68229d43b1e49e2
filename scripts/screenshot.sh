#!/usr/bin/env bash
# The README screenshot: the live viewer on `live-pssr demo`, drawn on a virtual X display (Xvfb),
# saved after 30 enhanced frames have been shown.
#
#   scripts/screenshot.sh [OUT.png] [more `live-pssr demo` options, e.g. --model PATH --size 256]
#
# OUT defaults to docs/viewer.png. Uses .venv/bin/live-pssr (make setup) if present, else
# `live-pssr` on PATH; set LIVE_PSSR to choose another.
# Qt's X11 plugin also needs a few xcb libraries (Debian/Ubuntu: libxcb-cursor0 libxcb-icccm4
# libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxkbcommon-x11-0); without them the viewer
# says which is missing and renders the screenshot offscreen instead.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-docs/viewer.png}"
[ $# -gt 0 ] && shift

if ! command -v xvfb-run >/dev/null 2>&1; then
  cat >&2 <<MSG
scripts/screenshot.sh needs Xvfb (a virtual X display) and its xvfb-run wrapper:
  Debian/Ubuntu:  sudo apt-get install -y xvfb
  Fedora/RHEL:    sudo dnf install -y xorg-x11-server-Xvfb
  macOS/Windows:  not needed; run  live-pssr demo --screenshot $out  on your desktop
(Without any display, 'live-pssr demo --screenshot $out' renders with Qt's offscreen platform.)
MSG
  exit 1
fi

repo="$(pwd)"
if [ -n "${LIVE_PSSR:-}" ]; then read -r -a cli <<< "$LIVE_PSSR"
elif [ -x .venv/bin/live-pssr ]; then cli=("$repo/.venv/bin/live-pssr")
elif command -v live-pssr >/dev/null 2>&1; then cli=(live-pssr)
else cli=(python3 -m live_pssr.cli)
fi

mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
run="$(mktemp -d)"
trap 'rm -rf "$run"' EXIT
# The run goes to a temporary folder (the status bar shows its name: demo.ome.zarr). The X11
# platform (xcb) is used, not any offscreen setting inherited from a test shell.
(cd "$run" && env -u QT_QPA_PLATFORM PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" \
  xvfb-run -a -s "-screen 0 1600x1000x24 -nolisten tcp" \
  "${cli[@]}" demo --frames 400 --out demo.ome.zarr --screenshot "$out" "$@")
echo "wrote $out"
