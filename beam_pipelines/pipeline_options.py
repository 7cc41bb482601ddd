"""The Beam options every pipeline here runs with.

Beam 2.77 picks PrismRunner when no `--runner` is given, and even its DirectRunner first
tries Prism, which downloads a runner binary from GitHub at run time (and falls back only
when that fails). Nothing here fetches anything behind the user's back, so:

  - a pipeline started without `--runner` runs on the DirectRunner;
  - on the DirectRunner, `update_compatibility_version` is set to the running Beam's own
    version (a no-op for the transforms: they expand as they would anyway), which is the
    one setting that makes the DirectRunner skip Prism and run on its in-process runner;
  - `--runner DataflowRunner` (or any other), and the user's own settings, pass as given.
"""

from typing import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, StreamingOptions

LOCAL_RUNNER = "DirectRunner"


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    """`PipelineOptions` of `beam_args`, on the DirectRunner unless they name a runner."""
    options = PipelineOptions(list(beam_args))
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = LOCAL_RUNNER
    compatibility = options.view_as(StreamingOptions)
    if standard.runner in (LOCAL_RUNNER, "direct") and not compatibility.update_compatibility_version:
        compatibility.update_compatibility_version = beam.__version__
    return options
