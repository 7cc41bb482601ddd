"""Answering questions with a trained model, outside the training loop."""
