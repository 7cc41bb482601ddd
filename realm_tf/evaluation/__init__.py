"""Evaluation: QA data files, answer metrics (exact match, F1, regex match), and retrieval recall
(dense, BM25, lexical and hybrid)."""
