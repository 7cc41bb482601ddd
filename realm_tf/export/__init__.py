"""SavedModel exports: the retriever's embedder (for indexing), and later the QA model."""
