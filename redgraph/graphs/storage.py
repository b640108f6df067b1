"""Where runs are kept: redgraph's home folder (images stored by content, traces) and the
checkpointer of a run: in memory, a SQLite file (the default) or PostgreSQL, each LangGraph's own
saver."""

from __future__ import annotations

import atexit
import os
import sqlite3
import threading
from pathlib import Path

from redgraph.errors import ConfigError


def redgraph_home() -> Path:
    """Where checkpoints and stored images go: ``$REDGRAPH_HOME``, else the user's cache folder."""
    if os.environ.get("REDGRAPH_HOME"):
        return Path(os.environ["REDGRAPH_HOME"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "redgraph"


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_checkpointer(checkpoint: str | os.PathLike[str] | None):
    """``"memory"`` for an in-memory saver; a ``postgresql://`` URL for LangGraph's PostgreSQL saver
    (runs shared between processes and machines; ``pip install 'redgraph[postgres]'``); a file path
    (default: ``redgraph_home()/checkpoints.sqlite``) for LangGraph's SQLite saver.

    A SQLite file's saver stays open for the process and is shared by every run on that file
    (:func:`close_checkpointer` is then a no-op): opening and closing the database per run cost
    about 7 ms of each ask, most of it SQLite folding its write-ahead log back at the last close.
    A file replaced or removed since is opened afresh."""
    if checkpoint == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        return InMemorySaver()
    if isinstance(checkpoint, str) and checkpoint.startswith(POSTGRES_SCHEMES):
        return _postgres_saver(checkpoint)
    from redgraph.data.files import check_writable

    path = Path(checkpoint) if checkpoint is not None else redgraph_home() / "checkpoints.sqlite"
    check_writable(path, what="checkpoint file", error=ConfigError)  # not a folder, device (/dev/null), pipe, socket
    key = os.path.abspath(path)
    with _OPEN_LOCK:
        held = _OPEN.get(key)
        if held is not None and _identity(key) == held[1] and _is_open(held[0].conn):
            return held[0]
        if held is not None:  # replaced, removed or closed since: its old connection writes nowhere useful
            held[0].conn.close()
        saver = _sqlite_saver(path)
        _OPEN[key] = (saver, _identity(key))
        return saver


def close_checkpointer(saver) -> None:
    """Release a saver :func:`open_checkpointer` gave: its connection is closed (PostgreSQL), except
    a SQLite file's, which stays open for the next run (closed when the process exits)."""
    connection = getattr(saver, "conn", None)
    with _OPEN_LOCK:
        held = any(saver is kept for kept, _ in _OPEN.values())
    if connection is not None and not held:
        connection.close()


_OPEN: dict[str, tuple] = {}  # absolute path -> (SqliteSaver, the file's (device, inode))
_OPEN_LOCK = threading.Lock()


def _identity(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _is_open(connection: sqlite3.Connection) -> bool:
    try:
        connection.total_changes  # noqa: B018 - raises on a closed connection
    except sqlite3.ProgrammingError:
        return False
    return True


@atexit.register
def _close_all() -> None:
    with _OPEN_LOCK:
        for saver, _ in _OPEN.values():
            saver.conn.close()
        _OPEN.clear()


def _sqlite_saver(path: Path):
    from langgraph.checkpoint.sqlite import SqliteSaver

    connection = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(str(path), check_same_thread=False)
        # The saver keeps the file in WAL mode. Without an fsync per commit, every committed
        # checkpoint still survives the process being killed (SQLite's guarantee for WAL with
        # synchronous=NORMAL); only a power cut or OS crash can lose the last few.
        connection.execute("PRAGMA synchronous=NORMAL")
        saver = SqliteSaver(connection)
        saver.setup()  # now, not at the first step: a file that is not a writable database fails here
    except (OSError, sqlite3.Error) as exc:
        if connection is not None:
            connection.close()
        raise ConfigError(f"cannot open the checkpoint file {str(path)[:200]!r} as a SQLite database: {exc}; pass "
                          "another path or 'memory'") from exc
    return saver


def _postgres_saver(url: str):
    try:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row
    except ImportError:
        raise ConfigError("a postgresql:// checkpoint needs LangGraph's PostgreSQL saver: "
                          "pip install 'redgraph[postgres]'") from None
    shown = _without_password(url)
    try:
        # The saver's own requirements: autocommit, no server-side prepared statements, rows as dicts.
        connection = psycopg.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row, connect_timeout=10)
    except psycopg.Error as exc:
        raise ConfigError(f"cannot connect to the checkpoint database {shown}: {str(exc).strip()}; check the URL and "
                          "that the server is running, or pass a file path or 'memory'") from exc
    saver = PostgresSaver(connection)
    try:
        saver.setup()  # creates or migrates LangGraph's tables; nothing when they are current
    except psycopg.Error as exc:
        connection.close()
        raise ConfigError(f"cannot set up LangGraph's checkpoint tables in {shown}: {str(exc).strip()}") from exc
    return saver


def _without_password(url: str) -> str:
    """``url`` as it can be shown in a message: any password replaced by ``***``."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
