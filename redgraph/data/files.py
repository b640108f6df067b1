"""Reading and writing a file the user named, safely: only a regular file, never more than a cap
read, and every write atomic.

A path to ``/dev/zero`` would otherwise be read without end, and a named pipe would block the
reader until someone writes to it; both are refused before the file is opened. A write goes to a
temporary file beside the target and is renamed over it, so a crash leaves the old file or the new
one; a target that is a folder, a device, a pipe or a socket is refused by name (a rename would
replace a device with a regular file), and no temporary file is left behind on any failure.
"""

from __future__ import annotations

import os
import stat
import tempfile

from redgraph.errors import InputError, RedgraphError


def _shown(location: str) -> str:
    return location if len(location) <= 200 else location[:200] + "..."


def _stat(location: str, shown: str, doing: str, advice: str, error: type[RedgraphError]) -> os.stat_result | None:
    """``os.stat`` of ``location``; None where nothing is there; ``error`` naming it for any other failure
    (a file in the way of its folder, a name too long, a NUL byte in it, no permission)."""
    try:
        return os.stat(location)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise error(f"cannot {doing} {shown!r}: {reason}; {advice}") from None


def check_regular_file(path: str | os.PathLike[str], *, max_bytes: int, what: str = "file",
                       error: type[RedgraphError] = InputError) -> int:
    """The size of ``path`` when it is a regular file of at most ``max_bytes``; else ``error`` naming it."""
    location = os.fspath(path)
    shown = _shown(location)
    info = _stat(location, shown, f"read {what}", "check the path", error)
    if info is None:
        raise error(f"{what} {shown!r} does not exist; check the path")
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


def check_writable(path: str | os.PathLike[str], *, what: str = "file", exclusive: bool = False,
                   error: type[RedgraphError] = InputError) -> str:
    """Refuse, before any work, a path :func:`write_file` would refuse by its kind: a folder, a
    device, pipe or socket, or (``exclusive``) one that exists. Returns the path as messages show it."""
    shown = _shown(os.fspath(path))
    info = _stat(os.fspath(path), shown, f"write {what}", "choose another path", error)
    if info is None:
        return shown
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{what} path {shown!r} is a folder; give a file path inside it")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what} path {shown!r} is not a regular file (a device, pipe or socket); redgraph writes "
                    "only regular files, so choose another path")
    if exclusive:
        raise error(f"{what} {shown!r} exists; choose another path (it is never overwritten)")
    return shown


def write_file(path: str | os.PathLike[str], data: str | bytes, *, what: str = "file", mode: int = 0o644,
               exclusive: bool = False, error: type[RedgraphError] = InputError) -> str:
    """Write ``data`` to ``path`` atomically, as a regular file; its folder is made when missing.

    Args:
        path: the file to write; it must be a regular file or not exist.
        data: text (written as UTF-8) or bytes.
        what: what the file is, for messages ("trace", "report", ...).
        mode: the new file's permissions (0o600 for a private key).
        exclusive: refuse a path that exists (a key is never overwritten).

    Returns:
        The path written.

    Raises:
        ``error`` naming the path and what to do: it is a folder, device, pipe or socket, it exists
        and ``exclusive`` is set, its folder cannot be made (a file stands in the way), or the write
        failed (no permission, the disk is full).
    """
    location = os.fspath(path)
    shown = check_writable(location, what=what, exclusive=exclusive, error=error)
    folder = os.path.dirname(os.path.abspath(location))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise error(f"cannot make the folder of {what} {shown!r}: {exc.strerror or exc} (is part of the path a "
                    "file?); choose another path") from None
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    temporary = None
    try:
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".redgraph-", suffix=".tmp")
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(payload)
        os.chmod(temporary, mode)
        if exclusive:
            os.link(temporary, location)  # fails if the path appeared meanwhile: never overwritten
            os.unlink(temporary)
        else:
            os.replace(temporary, location)
        temporary = None
    except FileExistsError:
        raise error(f"{what} {shown!r} exists; choose another path (it is never overwritten)") from None
    except OSError as exc:
        raise error(f"cannot write {what} {shown!r}: {exc.strerror or exc}; choose another path") from None
    finally:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)
    return location
