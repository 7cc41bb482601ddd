"""What realm_tf writes to disk: every on-disk layout, its names, and its typed reader and writer.

  manifests        block and pre-training-example directories (`BlocksManifest`, `PretrainingManifest`)
  model_dir        a training run's directory (`ModelDir`, the fine-tuning `RunInfo`)
  embedder_export  an embedder export's record (`EmbedderExportInfo`)
  index_version    index roots and their immutable versions (`IndexVersion`, `write_index_version`)
  qa_export        a QA export's record and warmup requests (`QaExportInfo`, `load_qa_export`)
  serving_root     TF Serving's model root (`next_version_dir`, `write_serving_files`)
  staging          writing beside a target and renaming into place, so no reader sees half of it

No other module spells a path inside these layouts. This package imports only
`realm_tf.errors` (and, lazily, the libraries that read what it points at).
"""
