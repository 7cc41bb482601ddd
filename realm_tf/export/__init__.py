"""SavedModel exports: the retriever's embedder (for indexing) and the QA model (`python -m realm_tf.export`)."""
