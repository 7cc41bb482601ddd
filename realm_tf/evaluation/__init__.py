"""Evaluation: QA data files, answer metrics (exact match, F1, regex match), retrieval recall (dense and BM25)."""
