"""The knowledge corpus: documents in, blocks out (records, chunking and the manifest)."""
