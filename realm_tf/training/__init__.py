"""The training loop shared by every task, and the choice of tf.distribute strategy."""
