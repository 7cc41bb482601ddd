"""A custom training loop under any tf.distribute strategy, driven by a task.

A task provides:
  build_model() -> tf_keras.Model (built, so checkpoints restore into it at once)
  build_train_dataset(global_batch_size: int, seed: int, start_step: int) -> tf.data.Dataset
      endless; `start_step` is where a resumed run picks up the data
  compute_loss(model, batch, training: bool) -> (loss: float32 [], metrics: {name: float32 []})
and optionally
  after_step(trainer, step: int, metrics: {name: float}) -> {name: float}
      host-side work after each step (e.g. exporting for the index refresh); what it
      returns is logged with the step's metrics.

The trainer owns the optimizer (Model Garden's AdamW with linear warm-up and decay),
checkpoints (model, optimizer, step), TensorBoard summaries and a progress bar, and
resumes from the newest checkpoint in `model_dir`.
"""

import logging
import time
from typing import Dict, Optional

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf
from official.nlp import optimization
from tqdm.auto import tqdm

from realm_tf.artifacts.model_dir import ModelDir
from realm_tf.configs import TrainingConfig

logger = logging.getLogger(__name__)


class Trainer:
    """Trains `task`'s model for `training.train_steps` steps, resumably.

    Attributes:
      model, optimizer: built under the strategy's scope.
      step: the global step (the optimizer's iteration count), int64.
      steps_per_second: of the last `train()` call, everything in the loop included.
    """

    def __init__(self, task, training: TrainingConfig, model_dir: str,
                 strategy: Optional[tf.distribute.Strategy] = None, seed: int = 0, max_checkpoints: int = 3,
                 jit_compile: bool = False):
        self.task = task
        self.jit_compile = jit_compile
        self.training = training
        self.model_dir = ModelDir(model_dir)
        self.strategy = strategy or tf.distribute.get_strategy()
        self.seed = seed
        with self.strategy.scope():
            self.model = task.build_model()
            self.optimizer = optimization.create_optimizer(
                init_lr=training.learning_rate,
                # A zero-step run (evaluate and export the start) still needs a schedule.
                num_train_steps=max(training.train_steps, 1),
                num_warmup_steps=min(training.warmup_steps, training.train_steps),
            )
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer)
        unfinished = self.model_dir.remove_unfinished_checkpoints()
        if unfinished:
            logger.info("removed %s, left by a checkpoint save that was killed", ", ".join(unfinished))
        self.checkpoints = tf.train.CheckpointManager(
            self.checkpoint, self.model_dir.checkpoints_dir, max_to_keep=max_checkpoints,
            step_counter=self.optimizer.iterations, checkpoint_interval=training.checkpoint_every_steps,
        )
        self.restored_from = self.checkpoints.latest_checkpoint
        self._restored = self.checkpoint.restore(self.restored_from) if self.restored_from else None
        if self.restored_from:
            logger.info("resumed from %s at step %d", self.restored_from, self.step)
        self._summaries = tf.summary.create_file_writer(self.model_dir.summaries_dir("train"))

    @property
    def step(self) -> int:
        return int(self.optimizer.iterations.numpy())

    def train(self, progress: bool = True) -> Dict[str, float]:
        """Runs until `train_steps`; returns the last step's metrics (empty if already done)."""
        start = self.step
        if start >= self.training.train_steps:
            if self._restored is not None:
                # The optimizer's slots and hyperparameters are made by its first update, which
                # no step will run: not a warning a variable each that they were not restored.
                self._restored.expect_partial()
            if self.checkpoints.latest_checkpoint is None:
                # A zero-step run still leaves its starting weights for the next stage's --init_from.
                self.checkpoints.save(checkpoint_number=start, check_interval=False)
            return {}
        dataset = self.task.build_train_dataset(self.training.batch_size, seed=self.seed, start_step=start)
        after_step = getattr(self.task, "after_step", None)
        iterator = iter(self.strategy.experimental_distribute_dataset(dataset))
        train_step = self.build_train_step()
        metrics: Dict[str, float] = {}
        started = time.monotonic()
        bar = tqdm(total=self.training.train_steps, initial=start, desc=type(self.task).__name__,
                   unit="step", disable=not progress, mininterval=1.0)
        try:
            with self._summaries.as_default():
                while self.step < self.training.train_steps:
                    metrics = {k: float(v) for k, v in train_step(next(iterator)).items()}
                    step = self.step
                    if after_step is not None:
                        metrics.update(after_step(self, step, metrics))
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.3f}" for k, v in metrics.items()}, refresh=False)
                    if step % self.training.summary_every_steps == 0 or step == self.training.train_steps:
                        for name, value in metrics.items():
                            tf.summary.scalar(name, value, step=step)
                        tf.summary.scalar("learning_rate", self._learning_rate(), step=step)
                    self.checkpoints.save(checkpoint_number=step, check_interval=True)
        finally:
            bar.close()
            # Of the whole loop, host-side work (input, exports) included.
            self.steps_per_second = (self.step - start) / max(time.monotonic() - started, 1e-9)
            # Interrupted or finished: keep the last step's weights.
            if self.checkpoints.latest_checkpoint is None or self.checkpoints.latest_checkpoint.split("-")[-1] != str(self.step):
                self.checkpoints.save(checkpoint_number=self.step, check_interval=False)
            self._summaries.flush()
        return metrics

    def _learning_rate(self) -> float:
        schedule = self.optimizer.learning_rate
        return float(schedule(self.optimizer.iterations) if callable(schedule) else schedule)

    def build_train_step(self):
        """The compiled step: `step(distributed batch)` applies one update under the strategy
        and returns {"loss", the task's metrics}, each the mean over replicas. `train` runs
        it; benchmarks time it alone."""
        model, optimizer, task, strategy = self.model, self.optimizer, self.task, self.strategy

        def loss_and_gradients(batch):
            with tf.GradientTape() as tape:
                loss, metrics = task.compute_loss(model, batch, training=True)
                # Gradients are summed over replicas: scale each replica's mean loss.
                scaled = loss / strategy.num_replicas_in_sync
            return loss, metrics, tape.gradient(scaled, model.trainable_variables)

        if self.jit_compile:
            # XLA compiles the forward and backward passes; the optimizer update, with
            # its cross-replica sum, stays outside.
            loss_and_gradients = tf.function(loss_and_gradients, jit_compile=True)

        def replica_step(batch):
            loss, metrics, gradients = loss_and_gradients(batch)
            # Variables the loss does not reach (e.g. the pooler of a reader that reads
            # token states) have no gradient: leave them out rather than warn every trace.
            optimizer.apply_gradients([(g, v) for g, v in zip(gradients, model.trainable_variables) if g is not None])
            return {"loss": loss, **metrics}

        @tf.function
        def train_step(batch):
            per_replica = strategy.run(replica_step, args=(batch,))
            return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in per_replica.items()}

        return train_step
