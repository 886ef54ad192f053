"""Peak memory of the command line (``tkshm put`` and ``tkshm get``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import suppress
from typing import Final

from PIL import Image

from common import DEADLINE, MB, Results

# -- peak memory of the command line ------------------------------------------------------
# ``ru_maxrss`` from ``wait4`` is no good here: Linux carries the parent's resident set over
# the fork-and-exec into the child's figure. ``VmHWM`` in ``/proc/<pid>/status`` belongs to the
# new program's own address space, so each command reports it from an ``atexit`` hook.
_REPORT_HWM: Final = (
    "import atexit, sys\n"
    "def _report():\n"
    "    with open('/proc/self/status') as status:\n"
    "        hwm = [line for line in status if line.startswith('VmHWM:')][0]\n"
    "    sys.stderr.write('@@' + hwm.split()[1] + '\\n')\n"
    "atexit.register(_report)\n"
)
_RUN_CLI: Final = _REPORT_HWM + "from tkshm.cli import main\nsys.exit(main(sys.argv[1:]))\n"
_BASELINE: Final = _REPORT_HWM + "import tkshm.ipc, PIL.Image\n"


def _peak_mb(stderr: str) -> float:
    """The ``VmHWM`` (KiB) a command reported through ``_REPORT_HWM``, in MB."""
    for line in stderr.splitlines():
        if line.startswith("@@"):
            return int(line[2:]) * 1024 / MB
    raise RuntimeError(f"the command reported no peak memory: {stderr.strip()!r}")


def bench_memory(label: str, image: Image.Image, workdir: str, key: str, results: Results) -> None:
    """Peak resident memory of ``tkshm put`` and ``tkshm get`` against a bare
    ``import tkshm.ipc, PIL.Image``.

    The peak includes the pages of the mapping that the command touched (tmpfs pages count
    in the resident set once mapped), so "the decoded image plus the segment" is 2 images.
    """
    nbytes = image.width * image.height * 4
    source = os.path.join(workdir, f"put-{label}.png")
    output = os.path.join(workdir, f"get-{label}.bmp")
    image.save(source, compress_level=1)  # quick to write; decoding it costs the same memory
    run = {"capture_output": True, "text": True, "timeout": DEADLINE}
    baseline = _peak_mb(subprocess.run([sys.executable, "-c", _BASELINE], check=True, **run).stderr)
    put = subprocess.Popen(
        [sys.executable, "-c", _RUN_CLI, "put", "--key", key, source],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert put.stdout is not None
        line = put.stdout.readline()
        if not line.startswith("Published"):
            raise RuntimeError(f"tkshm put did not publish: {line!r}")
        get = subprocess.run([sys.executable, "-c", _RUN_CLI, "get", "--key", key, "-o", output], **run)
        if get.returncode != 0:
            raise RuntimeError(f"tkshm get failed: {get.stderr.strip()}")
        get_peak = _peak_mb(get.stderr)
    finally:
        put.send_signal(signal.SIGTERM)
        _, put_err = put.communicate(timeout=DEADLINE)
        for path in (source, output):
            with suppress(FileNotFoundError):
                os.unlink(path)
    put_peak = _peak_mb(put_err)
    image_mb = nbytes / MB
    for command_name, peak in (("put", put_peak), ("get", get_peak)):
        extra = peak - baseline - image_mb
        results.memory.append(
            {
                "command": f"tkshm {command_name}",
                "size": label,
                "image_mb": image_mb,
                "baseline_mb": baseline,
                "peak_mb": peak,
                "extra_images": extra / image_mb,
            }
        )
