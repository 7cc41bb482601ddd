"""Writing an export beside its target and renaming it into place, so no reader sees half of one.

Watchers (the refresher, TF Serving) poll for new export directories; a directory that
appears by rename is complete the moment it is seen.
"""

import contextlib
import json
import os
import shutil
import uuid
from typing import Any, Dict, Iterator


@contextlib.contextmanager
def staged_directory(target: str) -> Iterator[str]:
    """Yields a hidden directory path beside `target` to write into; on success it is
    renamed to `target`, on failure removed. `target` must not exist."""
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, f".tmp-{os.path.basename(target)}-{uuid.uuid4().hex[:8]}")
    try:
        yield staging
        os.rename(staging, target)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)


def write_json(path: str, data: Dict[str, Any]) -> None:
    """Writes `data` as indented, key-sorted JSON, making the parent directory if needed."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
