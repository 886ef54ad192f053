"""tkshm: two windows share one image through named shared memory (Qt's SharedMemory example).

``tkshm.ipc`` is the library; ``tkshm.cli`` the command line; ``tkshm.window`` the Tk window.
"""

import os
from importlib import resources

__version__ = "1.0.0"


def asset(name: str) -> str:
    """The path of a file shipped in ``assets/`` (the icon, the sample images).

    Installed, ``assets/`` is the package ``tkshm.assets``. Run straight from a source
    checkout (``python -m tkshm`` in the clone) it is the folder beside the package.
    """
    try:
        return str(resources.files("tkshm.assets").joinpath(name))
    except ModuleNotFoundError:
        return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", name)
