"""What each stage of a long benchmark run has cost, on disk, so that a run cut short resumes.

A run of `benchmarks.quality --size full` takes longer than a machine may stay up. The
ledger (`stages.json` in the run's workdir) records, per stage, the wall seconds spent over
every attempt, how many attempts there were, whether it finished and what it returned. A
resumed run skips the finished stages, reruns the unfinished one (whose training resumes
from its newest checkpoint) and reports the seconds of all attempts, so the budgets beside
its figures stay true. While a stage runs, a heartbeat thread writes its elapsed seconds
every `heartbeat_seconds`, so a killed attempt loses at most that much of its time.

The file:

    {"settings": {...what the run was asked; a resume must ask the same...},
     "stages": {name: {"seconds": float, "attempts": int, "done": bool, "result": JSON or null,
                       ...other fields, kept and reported as they are}}}
"""

import json
import os
import pathlib
import threading
import time
from typing import Any, Callable, Dict, Tuple

FILENAME = "stages.json"


class LedgerError(Exception):
    """A ledger that cannot serve this run: missing, unreadable, or made with other settings."""


class StageLedger:
    """The stages.json of one workdir; `run(name, work)` runs a stage or returns its recorded result."""

    def __init__(self, path: pathlib.Path, settings: Dict[str, Any], heartbeat_seconds: float = 30.0):
        self.path = pathlib.Path(path)
        self.settings = settings
        self.stages: Dict[str, Dict[str, Any]] = {}
        self.heartbeat_seconds = heartbeat_seconds
        self._lock = threading.Lock()

    @classmethod
    def start(cls, workdir: pathlib.Path, settings: Dict[str, Any], **kwargs) -> "StageLedger":
        """A new, empty ledger for a fresh run, written at once."""
        ledger = cls(pathlib.Path(workdir) / FILENAME, settings, **kwargs)
        ledger._write()
        return ledger

    @classmethod
    def resume(cls, workdir: pathlib.Path, settings: Dict[str, Any], **kwargs) -> "StageLedger":
        """The ledger of an earlier run in workdir; refused unless it was asked the same `settings`."""
        path = pathlib.Path(workdir) / FILENAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            recorded, stages = data["settings"], data["stages"]
        except FileNotFoundError:
            raise LedgerError(f"{path}: no such file, so there is no run to resume in {workdir}") from None
        except (ValueError, KeyError, TypeError) as e:
            raise LedgerError(f"{path}: not a stage ledger ({e.__class__.__name__}: {e})") from None
        # JSON turns tuples into lists: compare what was written with what would be.
        asked = json.loads(json.dumps(settings))
        differ = [key for key in sorted(set(recorded) | set(asked)) if recorded.get(key) != asked.get(key)]
        if differ:
            was = ", ".join(f"{key}={recorded.get(key)!r}" for key in differ)
            now = ", ".join(f"{key}={asked.get(key)!r}" for key in differ)
            raise LedgerError(f"{path}: the run there was started with {was}; this one asks {now}; resume with the "
                              "same arguments")
        ledger = cls(path, settings, **kwargs)
        ledger.stages = stages
        return ledger

    def done(self, name: str) -> bool:
        return bool(self.stages.get(name, {}).get("done"))

    def seconds(self, name: str) -> float:
        """Wall seconds of every attempt at the stage so far."""
        return float(self.stages.get(name, {}).get("seconds", 0.0))

    def attempts(self, name: str) -> int:
        return int(self.stages.get(name, {}).get("attempts", 0))

    def result(self, name: str) -> Any:
        return self.stages.get(name, {}).get("result")

    def run(self, name: str, work: Callable[[], Any]) -> Tuple[Any, float, bool]:
        """(work()'s result, the stage's seconds over all attempts, whether it ran now).

        A stage already done is not run again: its recorded result comes back. `work`'s
        result must be JSON-serializable (or None).
        """
        if self.done(name):
            return self.result(name), self.seconds(name), False
        with self._lock:
            entry = self.stages.setdefault(name, {"seconds": 0.0, "attempts": 0, "done": False, "result": None})
            entry["attempts"] = int(entry.get("attempts", 0)) + 1
            before = float(entry.get("seconds", 0.0))
            self._write()
        started = time.monotonic()
        stop = threading.Event()

        def beat():
            while not stop.wait(self.heartbeat_seconds):
                with self._lock:
                    entry["seconds"] = round(before + time.monotonic() - started, 1)
                    self._write()

        heartbeat = threading.Thread(target=beat, name=f"ledger-{name}", daemon=True)
        heartbeat.start()
        try:
            result = work()
        finally:
            stop.set()
            heartbeat.join()
            with self._lock:
                entry["seconds"] = round(before + time.monotonic() - started, 1)
                self._write()
        with self._lock:
            entry["done"], entry["result"] = True, result
            self._write()
        return result, entry["seconds"], True

    def summary(self) -> Dict[str, Dict[str, Any]]:
        """Every stage's entry without its result: what the report states of its attempts."""
        return {name: {k: v for k, v in entry.items() if k != "result"} for name, entry in self.stages.items()}

    def _write(self) -> None:
        # Written whole and renamed, so a kill mid-write leaves the previous ledger.
        staging = self.path.with_name(self.path.name + ".tmp")
        staging.write_text(json.dumps({"settings": self.settings, "stages": self.stages}, indent=2) + "\n",
                           encoding="utf-8")
        os.replace(staging, self.path)
