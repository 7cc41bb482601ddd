"""Staging directories: write beside the target, rename into place, clean up after the dead.

Every publisher here (index versions, embedder and QA exports, the embed-and-index
pipeline's embeddings) writes into a hidden `.staging-*` directory beside its target and
renames it into place, so that watchers (the refresher, TF Serving, a trainer swapping
indexes) see a directory whole or not at all. A publisher killed with SIGKILL cannot
remove its own staging directory, so each one records its owner in `OWNER_FILE`:

    {"host": "worker-3", "pid": 4242, "pid_started": 1234567, "created_at": "..."}

and every publisher, before it stages, removes the staging directories beside it whose
owner is dead: on this host, a pid that no longer runs (or now runs another process,
told apart by its start time); on another host, or with no readable owner, only once
older than `STALE_AFTER_SECONDS`. A live owner's directory is never touched.
"""

import contextlib
import datetime
import json
import logging
import os
import shutil
import socket
import time
import uuid
from typing import Any, Dict, Iterator, List, Optional

STAGING_PREFIX = ".staging-"
OWNER_FILE = ".owner.json"
# Whose owner cannot be checked (another host, or no owner file: it died before writing
# it): removed once this old. A day, far longer than any build here takes.
STALE_AFTER_SECONDS = 24 * 3600.0

logger = logging.getLogger(__name__)


def _process_start(pid: int) -> Optional[int]:
    """The start time of `pid` (clock ticks since boot, Linux /proc), None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            # Field 22; the command name (field 2) may hold spaces, so split after its ")".
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def process_alive(pid: int, started: Optional[int] = None) -> bool:
    """Whether process `pid` runs; with `started` (its `/proc` start time), whether it is
    still that process and not a later one given the same pid."""
    try:
        os.kill(pid, 0)  # Signal 0 only asks whether the process exists.
    except ProcessLookupError:
        return False
    except PermissionError:  # It exists, under another user.
        pass
    now_started = _process_start(pid)
    # The pid was reused by a later process: the owner is dead.
    return started is None or now_started is None or now_started == started


def make_staging_dir(parent: str, label: str = "") -> str:
    """Creates and returns `parent/.staging-<label>-<random>/`, its owner recorded in it."""
    os.makedirs(parent, exist_ok=True)
    path = os.path.join(parent, f"{STAGING_PREFIX}{label + '-' if label else ''}{uuid.uuid4().hex[:12]}")
    os.makedirs(path)
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "pid_started": _process_start(os.getpid()),
             "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    with open(os.path.join(path, OWNER_FILE), "w", encoding="utf-8") as f:
        json.dump(owner, f)
    return path


def _owner_is_dead(path: str, now: float, stale_after: float) -> bool:
    try:
        with open(os.path.join(path, OWNER_FILE), encoding="utf-8") as f:
            owner: Dict[str, Any] = json.load(f)
        host, pid = owner["host"], int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        owner = None
    if owner is not None and host == socket.gethostname():
        return not process_alive(pid, owner.get("pid_started"))
    try:
        age = now - os.stat(path).st_mtime
    except FileNotFoundError:
        return False  # Renamed into place or removed meanwhile.
    return age > stale_after


def remove_dead_staging(parent: str, stale_after: float = STALE_AFTER_SECONDS) -> List[str]:
    """Removes the staging directories in `parent` whose owner is dead; returns their paths."""
    try:
        entries = sorted(os.listdir(parent))
    except FileNotFoundError:
        return []
    now = time.time()
    removed = []
    for entry in entries:
        path = os.path.join(parent, entry)
        if entry.startswith(STAGING_PREFIX) and os.path.isdir(path) and _owner_is_dead(path, now, stale_after):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            logger.info("removed %s, the staging directory of a publisher that died", path)
    return removed


def stage_beside(target: str) -> str:
    """Removes the dead publishers' staging directories beside `target`, then makes one of
    this process's own there, named after `target`; returns its path."""
    parent = os.path.dirname(os.path.abspath(target))
    remove_dead_staging(parent)
    return make_staging_dir(parent, os.path.basename(target))


def publish(staging: str, target: str) -> None:
    """Renames a filled staging directory to `target`, its owner file dropped first."""
    owner = os.path.join(staging, OWNER_FILE)
    if os.path.exists(owner):
        os.remove(owner)
    os.rename(staging, target)


@contextlib.contextmanager
def staged_directory(target: str) -> Iterator[str]:
    """Yields a staging directory beside `target` to write into; on success it is renamed
    to `target`, on failure removed. `target` must not exist."""
    staging = stage_beside(target)
    try:
        yield staging
        publish(staging, target)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)


def read_json(path: str, error: type, missing: str) -> Any:
    """The JSON value in `path`; `error(message)` naming the path when it is missing (the
    message then ends with `missing`, a hint at what the path should have been) or not JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise error(f"{path}: missing; {missing}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{path}: not valid JSON: {e}") from None


def write_json(path: str, data: Dict[str, Any]) -> None:
    """Writes `data` as indented, key-sorted JSON, making the parent directory if needed."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
