"""Apache Beam pipelines of realm-tf: corpus chunking (and, later, embedding and indexing).

Each pipeline is a module with a `main()` runnable as `python -m beam_pipelines.<name>`;
Beam/Dataflow pipeline options not known to a pipeline are passed to Beam untouched.
"""

import realm_tf  # noqa: F401  (selects tf_keras before TensorFlow is imported, also in Beam workers)
