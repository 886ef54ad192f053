"""tkshm: two windows share one image through named shared memory (Qt's SharedMemory example).

``tkshm.ipc`` is the library; ``tkshm.cli`` the command line; ``tkshm.app`` the Tk window.
"""

__version__ = "1.0.0"
