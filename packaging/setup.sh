#!/usr/bin/env bash
# Set up medvision on a fresh Debian/Ubuntu machine: system packages, a virtual environment in
# .venv, torch (pinned, installed first so pip never pulls a second build), then the project.
#   bash packaging/setup.sh        # the application
#   bash packaging/setup.sh --dev  # plus test tools, dcm2niix, dicom3tools, xvfb
# Re-running is cheap: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1
PYTHON=${PYTHON:-python3}
TORCH_PIN="torch==2.13.0"

say() { printf '[setup] %s\n' "$*" >&2; }

# --- system packages ---------------------------------------------------------------------
# Qt's xcb platform and VTK's OpenGL need these shared libraries; the dev tools are the field's
# reference programs the tests compare against.
debs=(libgl1 libegl1 libglib2.0-0 libfontconfig1 libxkbcommon0 libxkbcommon-x11-0 libdbus-1-3
      libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0
      libxcb-shape0 libxcb-xinerama0 libxcb-randr0 libxrender1 libxi6 libsm6 libice6
      libgl1-mesa-dri libglx-mesa0 libegl-mesa0 fonts-dejavu-core)  # Mesa: OpenGL without a GPU driver
if [[ $DEV == 1 ]]; then
    debs+=(xvfb xauth dcm2niix dicom3tools dcmtk)
fi
if command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    missing=()
    for d in "${debs[@]}"; do
        dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q "install ok installed" || missing+=("$d")
    done
    if (( ${#missing[@]} )); then
        SUDO=""
        [[ $(id -u) -ne 0 ]] && SUDO="sudo"
        say "installing Debian packages: ${missing[*]}"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
else
    say "not a Debian system: install Qt/OpenGL runtime libraries (and dcm2niix, xvfb for tests) yourself"
fi

# --- virtual environment -----------------------------------------------------------------
if [[ ! -x .venv/bin/python ]]; then
    say "creating .venv"
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
    say "installing $TORCH_PIN"
    "${PIP[@]}" install "$TORCH_PIN"
fi
extra=""
[[ $DEV == 1 ]] && extra="[dev]"
stamp=".venv/.medvision-installed${extra}"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    say "installing medvision${extra} and its dependencies"
    "${PIP[@]}" install -e ".${extra}"
    echo "$want" > "$stamp"
fi
say "ready: .venv/bin/medvision"
