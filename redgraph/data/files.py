"""Reading a file the user named, safely: only a regular file, and never more than a cap.

A path to ``/dev/zero`` would otherwise be read without end, and a named pipe would block the
reader until someone writes to it; both are refused before the file is opened.
"""

from __future__ import annotations

import os
import stat

from redgraph.errors import InputError, RedgraphError


def check_regular_file(path: str | os.PathLike[str], *, max_bytes: int, what: str = "file",
                       error: type[RedgraphError] = InputError) -> int:
    """The size of ``path`` when it is a regular file of at most ``max_bytes``; else ``error`` naming it."""
    location = os.fspath(path)
    shown = location if len(location) <= 200 else location[:200] + "..."
    try:
        info = os.stat(location)
    except FileNotFoundError:
        raise error(f"{what} {shown!r} does not exist; check the path") from None
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte in it, no permission
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise error(f"cannot read {what} {shown!r}: {reason}; check the path") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{what} path {shown!r} is a folder; pass a file")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what} {shown!r} is not a regular file (a pipe, device or socket); save it to a file and "
                    "pass that")
    if info.st_size > max_bytes:
        raise error(f"{what} {shown!r} is {info.st_size} bytes, above the limit of {max_bytes}; pass a smaller file")
    return info.st_size


def read_regular_file(path: str | os.PathLike[str], *, max_bytes: int, what: str = "file",
                      error: type[RedgraphError] = InputError) -> bytes:
    """The bytes of ``path``, a regular file of at most ``max_bytes`` (checked before it is opened, and
    again while reading, in case it grows)."""
    check_regular_file(path, max_bytes=max_bytes, what=what, error=error)
    location = os.fspath(path)
    try:
        with open(location, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"cannot read {what} {location[:200]!r}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise error(f"{what} {location[:200]!r} grew beyond the limit of {max_bytes} bytes while being read")
    return data
