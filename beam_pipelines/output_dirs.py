"""The output folder of a pipeline that writes shards and then, last, `manifest.json`.

Readers trust a folder only once its manifest exists, so a run that died midway leaves
nothing a reader would use; the next run clears its leftovers.
"""

from typing import Callable, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from realm_tf.artifacts.manifests import MANIFEST_NAME

from beam_pipelines.document_sources import InputError


def prepare_output_dir(output_dir: str, overwrite: bool, shard_prefixes: Sequence[str], contents: str) -> None:
    """Refuses to replace finished output unless asked; deletes shards and Beam temporaries of unfinished runs.

    Args:
      shard_prefixes: names the pipeline's shards start with ("blocks", "dead_letters").
      contents: what the folder holds, for the error ("chunked blocks").
    """
    if FileSystems.exists(FileSystems.join(output_dir, MANIFEST_NAME)):
        if not overwrite:
            raise InputError(f"{output_dir} already holds {contents} (manifest.json); pass --overwrite to replace them")
        FileSystems.delete([FileSystems.join(output_dir, MANIFEST_NAME)])
    stale = [
        m.path
        for prefix in (*shard_prefixes, "beam-temp")
        for m in FileSystems.match([FileSystems.join(output_dir, f"{prefix}-*")])[0].metadata_list
    ]
    if stale:
        FileSystems.delete(stale)


def write_manifest_last(pipeline: beam.Pipeline, write: Callable[..., None], **side_inputs) -> None:
    """Adds a step that calls `write(**side_input_values)` once, after all its side inputs
    (counts, the lists of shards written) are complete, i.e. after every shard."""
    _ = (
        pipeline
        | "ManifestImpulse" >> beam.Create([None])
        | "WriteManifest" >> beam.Map(lambda _, **values: write(**values), **side_inputs)
    )


def basename(path: str) -> str:
    return FileSystems.split(path)[1]
