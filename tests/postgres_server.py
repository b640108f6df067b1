"""A throwaway PostgreSQL server for the tests: started from the machine's own PostgreSQL binaries
(Debian's ``postgresql`` package; ``.ci/run`` installs it where it is missing), listening on a Unix
socket in a temporary folder only, removed when the session ends.

``$REDGRAPH_TEST_POSTGRES`` (a URL) uses a server of yours instead. Without binaries the PostgreSQL
tests are skipped, unless ``$REDGRAPH_REQUIRE_POSTGRES`` is set (CI), which makes that a failure.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

PORT = 54329


def binaries() -> Path | None:
    """The folder holding initdb and pg_ctl, or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


class Server:
    """``start()`` returns the URL; ``stop()`` ends the server and removes its folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.bin = folder  # replaced in start()

    def _run(self, *args: str) -> None:
        command = list(args)
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the package's user
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)

    def start(self, bin_dir: Path) -> str:
        self.bin = bin_dir
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        data = self.folder / "data"
        self._run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = f"-c listen_addresses='' -k {self.folder} -p {PORT} -c fsync=off"
        self._run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(self.folder / "server.log"), "-o", options,
                  "-w", "start")
        return f"postgresql://postgres@/postgres?host={self.folder}&port={PORT}"

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def new_folder() -> Path:
    # A short path: a Unix socket's path is limited to about 100 characters.
    return Path(tempfile.mkdtemp(prefix="rg-pg-", dir="/tmp"))
