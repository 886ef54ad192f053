"""How Qt turns a ``QSharedMemory`` key into the names of operating-system objects.

Qt 5 (and Qt 6's *legacy* keys, ``QSharedMemory("QSharedMemoryExample")``) never use the key
as a name. ``QSharedMemoryPrivate::makePlatformSafeKey`` keeps the key's ASCII letters and
appends the SHA-1 of the whole key in hex, after a prefix that says what the name is for::

    qipc_sharedmemory_QSharedMemoryExampleff77196351dd7c1c8f79461ad32f21726fe31f5b
    qipc_systemsem_QSharedMemoryExampleff77196351dd7c1c8f79461ad32f21726fe31f5b

On Windows those strings name a file mapping and a semaphore. On Unix, System V objects are
found by a number, not a name, so Qt makes an empty file with that name in its temporary
directory and asks ``ftok(file, 'Q')`` for the number: the file's inode and device become
the segment's and the semaphore's IPC keys.

Qt 6's *native* keys (``QNativeIpcKey("K")``) are the name itself. On Unix that is a POSIX
shared memory object and a POSIX named semaphore, both ``/K``. On Windows a file mapping and
a semaphore share one namespace of kernel object names, so the mapping is ``K`` and the
semaphore ``K_sem``.
"""

from __future__ import annotations

import hashlib
import os
from typing import Final, Literal

from .. import ipc
from ..errors import InvalidKeyError

Version = Literal[5, 6]
Kind = Literal["sharedmemory", "systemsem"]

#: The key Qt's example uses (``QSharedMemory sharedMemory("QSharedMemoryExample")``).
DEFAULT_KEY: Final = "QSharedMemoryExample"
#: ``ftok``'s project id: Qt passes the character 'Q'.
FTOK_ID: Final = ord("Q")
# POSIX names are files in /dev/shm: NAME_MAX is 255, and a semaphore's file is "sem." + name.
_POSIX_NAME_MAX: Final = 251
# Windows' MAX_PATH: Qt cuts a native key to MAX_PATH - 5 UTF-16 units before adding "_sem".
_WINDOWS_MAX_PATH: Final = 260
_WINDOWS_SEMAPHORE_SUFFIX: Final = "_sem"
# The kernel object namespaces a Windows name may start with (the session's, or every session's).
_WINDOWS_NAMESPACES: Final = ("Local\\", "Global\\")


def check_key(key: str) -> None:
    """Refuse a key no Qt object can be named by, in one sentence."""
    ipc.check_key(key, DEFAULT_KEY)


def legacy_name(key: str, kind: Kind) -> str:
    """Qt's ``makePlatformSafeKey``: prefix, the key's ASCII letters, the SHA-1 of the key."""
    check_key(key)
    letters = "".join(c for c in key if "a" <= c <= "z" or "A" <= c <= "Z")
    digest = hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()  # Qt's choice, not for security
    return f"qipc_{kind}_{letters}{digest}"


def qt_temp_dir() -> str:
    """Qt's ``QDir::tempPath()`` on Unix: ``$TMPDIR`` if set, else ``/tmp``, cleaned.

    Not :func:`tempfile.gettempdir`, which also tries ``$TEMP`` and ``$TMP`` and checks that the
    directory is writable: both programs must land on the same file, or their ``ftok`` numbers
    differ and they never meet.
    """
    return os.path.normpath(os.environ.get("TMPDIR") or "/tmp")


def legacy_key_file(key: str, kind: Kind) -> str:
    """The empty file whose inode ``ftok`` turns into the System V key (Qt 5 on Unix)."""
    return os.path.join(qt_temp_dir(), legacy_name(key, kind))


def native_posix_name(key: str) -> str:
    """A Qt 6 native key as a POSIX object name: ``/K`` (the file ``/dev/shm/K``)."""
    check_key(key)
    name = key[1:] if key.startswith("/") else key
    if not name or "/" in name:
        raise InvalidKeyError(
            f"A Qt 6 native key names one POSIX object in /dev/shm, so it cannot contain '/' "
            f"(the key was {key!r}); use a plain name such as 'QSharedMemoryExample'."
        )
    if len(name.encode("utf-8", "surrogatepass")) > _POSIX_NAME_MAX:
        raise InvalidKeyError(f"A Qt 6 native key can be at most {_POSIX_NAME_MAX} bytes long.")
    if name in (".", ".."):
        raise InvalidKeyError(f"{key!r} cannot name a POSIX object; use a plain name.")
    return "/" + name


def native_windows_names(key: str) -> tuple[str, str]:
    """A Qt 6 native key on Windows: the file mapping's name and the semaphore's.

    The mapping is named by the key as it is. Qt's ``QSharedMemoryPrivate::semaphoreNativeKey``
    cuts the key to ``MAX_PATH - 5`` UTF-16 code units and appends ``_sem``, because a
    semaphore may not take a name a file mapping already has. A backslash separates a
    namespace (``Local\\``, ``Global\\``) from the name, and appears nowhere else.
    """
    check_key(key)
    name = key
    for namespace in _WINDOWS_NAMESPACES:
        if key.startswith(namespace):
            name = key[len(namespace) :]
            break
    if not name or "\\" in name:
        raise InvalidKeyError(
            f"A Qt 6 native key names one Windows kernel object, so it cannot contain a backslash "
            f"except after Local or Global (the key was {key!r}); use a plain name such as "
            f"{DEFAULT_KEY!r}."
        )
    units = key.encode("utf-16-le", "surrogatepass")
    if len(units) // 2 >= _WINDOWS_MAX_PATH:
        most = _WINDOWS_MAX_PATH - 1
        raise InvalidKeyError(f"A Qt 6 native key can be at most {most} characters long on Windows.")
    keep = (_WINDOWS_MAX_PATH - len(_WINDOWS_SEMAPHORE_SUFFIX) - 1) * 2
    stem = units[:keep].decode("utf-16-le", "surrogatepass")
    return key, stem + _WINDOWS_SEMAPHORE_SUFFIX
