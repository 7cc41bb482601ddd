"""Training tasks: each owns its inputs, loss and metrics (Model Garden's task pattern)."""
