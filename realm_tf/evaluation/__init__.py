"""Evaluation: QA data files, retrieval recall (dense and BM25)."""
