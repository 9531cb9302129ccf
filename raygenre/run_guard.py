"""One run stays one run: ``--resume`` only with the settings that started it, one sweep at a time.

Trial keys name the model, split, seed and fractions but not every setting (params, ``train``, the
profile, the data source), so resuming a run with other settings would count old records as done.
:func:`check_resume` compares each experiment's config stored under ``<run>/config/`` with the new one
before Ray starts and names the keys that differ.

:class:`RunLock` keeps a second sweep out of a run directory while one writes it. Locally it is a file,
``<run>/.lock``, made atomically (a hard link of a finished temp file, so no reader sees it half
written) and naming the holder's pid, host and start time; a lock whose pid is dead on this host is
taken over with a notice. Object stores have no exclusive create, so there it is a lease object,
``<run>/.lease.json``, with an expiry the holder pushes forward from a background thread; an expired lease
(or one whose holder's pid is dead on this host) may be taken. Two sweeps starting within the same
second on one bucket could both write a lease: each reads it back after :data:`LEASE_SETTLE_SECONDS` and
only the last writer goes on. Lease expiry compares clocks, so hosts should keep theirs in sync.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from raygenre.errors import RunLockedError, RunMismatchError
from raygenre.storage import RunPath

LOCK_NAME = ".lock"
LEASE_NAME = ".lease.json"
LEASE_SECONDS = 120.0  # a lease not refreshed for this long is free to take
LEASE_SETTLE_SECONDS = 1.0  # wait before reading a written lease back (two sweeps starting together)


# -- the same settings ------------------------------------------------------------------------------
def config_changes(old, new, prefix: str = "") -> list[str]:
    """``key.path: old -> new`` for every leaf that differs (list items by index when lengths agree)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                out.append(f"{where}: (absent) -> {_short(new[key])}")
            elif key not in new:
                out.append(f"{where}: {_short(old[key])} -> (absent)")
            else:
                out += config_changes(old[key], new[key], where)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [c for i, (a, b) in enumerate(zip(old, new)) for c in config_changes(a, b, f"{prefix}[{i}]")]
    return [] if old == new else [f"{prefix or '(config)'}: {_short(old)} -> {_short(new)}"]


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= 40 else text[:39] + "…"


def _stored_config(path: RunPath, cfg) -> dict:
    """The stored config, with settings added to raygenre since filled with their defaults."""
    experiment = cfg.experiment
    try:
        stored = path.read_json()
    except (OSError, ValueError) as exc:
        raise RunMismatchError(f"--resume cannot compare settings: {path} cannot be read ({exc}).") from None
    if not isinstance(stored, dict) or stored.get("experiment") != experiment:
        raise RunMismatchError(f"--resume cannot compare settings: {path} is not a stored {experiment} config.")
    try:
        return type(cfg).model_validate(stored).model_dump(mode="json")
    except ValueError:
        return stored  # keys this version no longer knows: the comparison names them


def check_resume(run_dir: RunPath, configs: list, *, resume: bool) -> None:
    """With ``--resume``, refuse (one sentence, before Ray) settings that differ from the run's own.

    Also says how many records the run holds and how many bad record lines were skipped.
    """
    from raygenre.records import read_records_checked

    if not resume:
        return
    read = read_records_checked(run_dir, require=False)
    print(f"[sweep] resume: {len(read.records)} records found, {len(read.skipped)} bad record lines skipped",
          flush=True)
    if read.skipped:
        print(f"warning: {read.skipped_summary()}", file=sys.stderr, flush=True)
    for cfg in configs:
        stored = run_dir / "config" / f"{cfg.experiment}.json"
        if stored.is_file():
            changes = config_changes(_stored_config(stored, cfg), cfg.model_dump(mode="json"))
        else:  # a run from before config files were stored: its records carry the config hash
            hashes = {(r.get("run") or {}).get("experiment_config_hash") for r in read.records
                      if r["experiment"] == cfg.experiment} - {None}
            changes = [f"config hash: {', '.join(sorted(hashes))} -> {cfg.hash()}"] if hashes - {cfg.hash()} else []
        if changes:
            more = f"; and {len(changes) - 6} more" if len(changes) > 6 else ""
            raise RunMismatchError(f"--resume refused: {run_dir} ran {cfg.experiment} with other settings "
                                   f"({'; '.join(changes[:6])}{more}); resume with the same settings, "
                                   f"or pass a new --name.")


# -- one sweep at a time ----------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _describe(holder: dict) -> str:
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"


def _holder_is_gone(holder: dict) -> bool:
    """True when the holder ran on this host and its pid no longer exists."""
    pid = holder.get("pid")
    return holder.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid)


def _parse(blob: bytes) -> dict | None:
    try:
        holder = json.loads(blob)
    except (ValueError, RecursionError):
        return None
    return holder if isinstance(holder, dict) else None


def _create_exclusive(source: Path, path: Path, body: bytes) -> None:
    """Make ``path`` holding ``body`` only if it does not exist (else FileExistsError): a hard link of the
    finished ``source`` (whole the moment it exists), or an exclusive create where links are not supported."""
    try:
        os.link(source, path)
        return
    except FileExistsError:
        raise
    except OSError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


class RunLock:
    """The right to write one run directory; ``with RunLock.acquire(run_dir): ...`` or call :meth:`release`."""

    def __init__(self, run_dir: RunPath, lease_seconds: float = LEASE_SECONDS):
        self.run_dir = run_dir
        self.lease_seconds = lease_seconds
        self.holder = {"pid": os.getpid(), "host": socket.gethostname(),
                       "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "token": uuid.uuid4().hex}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sigterm = None
        self.held = False

    @classmethod
    def acquire(cls, run_dir: str | os.PathLike | RunPath, lease_seconds: float = LEASE_SECONDS) -> RunLock:
        """Lock ``run_dir`` or raise RunLockedError naming the holder."""
        lock = cls(RunPath.of(run_dir), lease_seconds)
        if lock.run_dir.remote:
            lock._take_lease()
        else:
            lock._take_file()
        lock.held = True
        lock._exit_on_sigterm()
        return lock

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # -- a local file ----------------------------------------------------------------------------
    @property
    def _file(self) -> Path:
        return Path(self.run_dir.uri) / LOCK_NAME

    def _take_file(self) -> None:
        path = self._file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{LOCK_NAME}.{self.holder['token']}")
        body = (json.dumps(self.holder) + "\n").encode()
        tmp.write_bytes(body)
        try:
            for _ in range(5):
                try:
                    _create_exclusive(tmp, path, body)
                    return
                except FileExistsError:
                    pass
                try:
                    holder = _parse(path.read_bytes())
                except FileNotFoundError:
                    continue  # released meanwhile
                if holder is not None and not _holder_is_gone(holder):
                    raise RunLockedError(f"{self.run_dir} is in use by another sweep ({_describe(holder)}); wait "
                                         f"for it to finish, or delete {path} if that sweep is gone.")
                self._take_over_file(path, holder)
            raise RunLockedError(f"{self.run_dir}: could not take {path}; other sweeps keep taking it.")
        finally:
            tmp.unlink(missing_ok=True)

    def _take_over_file(self, path: Path, holder: dict | None) -> None:
        """Move a stale lock aside; if another sweep's fresh lock was moved instead, put it back."""
        aside = path.with_name(f"{LOCK_NAME}.stale-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return
        if _parse(aside.read_bytes()) != holder:  # another sweep's fresh lock was moved: it goes back
            try:
                _create_exclusive(aside, path, aside.read_bytes())
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            return
        aside.unlink(missing_ok=True)
        what = f"its holder ({_describe(holder)}) is gone" if holder else "it could not be read"
        print(f"[sweep] notice: taking over the lock of {self.run_dir}: {what}.", file=sys.stderr, flush=True)

    # -- a lease object --------------------------------------------------------------------------
    @property
    def _lease(self) -> RunPath:
        return self.run_dir / LEASE_NAME

    def _read_lease(self) -> dict | None:
        try:
            return _parse(self._lease.read_bytes()) if self._lease.is_file() else None
        except FileNotFoundError:
            return None

    def _write_lease(self) -> None:
        self._lease.write_json({**self.holder, "expires": time.time() + self.lease_seconds})

    def _take_lease(self) -> None:
        holder = self._read_lease()
        if holder is not None:
            expires = holder.get("expires")
            live = isinstance(expires, (int, float)) and expires > time.time()
            if live and not _holder_is_gone(holder):
                until = datetime.fromtimestamp(expires, timezone.utc).isoformat(timespec="seconds")
                raise RunLockedError(f"{self.run_dir} is in use by another sweep ({_describe(holder)}, lease until "
                                     f"{until}); wait for it to finish or for its lease to expire.")
            why = f"its holder ({_describe(holder)}) is gone" if live else "its lease has expired"
            print(f"[sweep] notice: taking over the lease of {self.run_dir}: {why}.", file=sys.stderr, flush=True)
        self._write_lease()
        time.sleep(LEASE_SETTLE_SECONDS)
        now = self._read_lease()
        if (now or {}).get("token") != self.holder["token"]:
            raise RunLockedError(f"{self.run_dir} was taken by another sweep starting at the same time "
                                 f"({_describe(now or {})}); wait for it to finish.")
        self._thread = threading.Thread(target=self._refresh, name="raygenre-run-lease", daemon=True)
        self._thread.start()

    def _refresh(self) -> None:
        """Push the lease's expiry forward every quarter lease until released (or taken by another)."""
        while not self._stop.wait(self.lease_seconds / 4):
            try:
                now = self._read_lease()
                if (now or {}).get("token") != self.holder["token"]:
                    print(f"warning: the lease of {self.run_dir} was taken by another sweep "
                          f"({_describe(now or {})}); this sweep no longer holds the run.", file=sys.stderr, flush=True)
                    return
                self._write_lease()
            except OSError as exc:  # a network hiccup: try again at the next tick, well before expiry
                print(f"warning: could not refresh the lease of {self.run_dir}: {exc}", file=sys.stderr, flush=True)

    # -- both ------------------------------------------------------------------------------------
    def _exit_on_sigterm(self) -> None:
        """``ray job stop`` and ``kill`` send SIGTERM: exit through ``finally`` blocks so the lock is released."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self._sigterm = lambda *_: sys.exit(128 + signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._sigterm)

    def release(self) -> None:
        """Give the run back (only if this sweep still holds it); safe to call more than once."""
        if not self.held:
            return
        self.held = False
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is self._sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # only if nobody (Ray) replaced ours since
        try:
            if self.run_dir.remote:
                self._stop.set()
                if self._thread is not None:
                    self._thread.join(timeout=10)
                if (self._read_lease() or {}).get("token") == self.holder["token"]:
                    self._lease.delete()
            elif (_parse(self._file.read_bytes()) or {}).get("token") == self.holder["token"]:
                self._file.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:  # never hide the error the sweep is exiting with
            print(f"warning: could not release the lock of {self.run_dir}: {exc}", file=sys.stderr, flush=True)
