"""The training runs, as functions: ICT warm start, REALM pre-training, open-QA fine-tuning.

Each builds its task (realm_tf.tasks), a resumable `Trainer` in `model_dir`, trains, and
writes what the next stage reads (an embedder export, the run info); `python -m
realm_tf.train` is the command line over them. A run that starts fresh (no checkpoint in
`model_dir`) first loads the pretrained checkpoints the config names
(`retriever.init_checkpoint`, `reader.init_checkpoint`), except the parts `init_from`
restores afterwards. Every run returns a dict: {"step", "train": the last step's
metrics, ...}.
"""

import logging
import os
import subprocess
from typing import Callable, Dict, Optional, Sequence

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from realm_tf.artifacts.model_dir import ModelDir, RunInfo
from realm_tf.configs import ExperimentConfig, TrainingConfig, save_config
from realm_tf.training.trainer import Trainer


def _seed(seed: int) -> None:
    """Seeds the weight initialization and the task's sampling (Python, NumPy and TF), so
    runs are repeatable; first thing in every run, before its task is built."""
    import tf_keras

    tf_keras.utils.set_random_seed(seed)


def _build_trainer(task, training: TrainingConfig, config: ExperimentConfig, model_dir: str,
                   strategy: Optional[tf.distribute.Strategy], seed: int, jit_compile: bool,
                   init_from_parts: Sequence[str] = ()) -> Trainer:
    """The task's `Trainer`; fresh runs start from the config's pretrained checkpoints."""
    from realm_tf.checkpoints.initialize import initialize_from_checkpoints

    trainer = Trainer(task, training, model_dir, strategy=strategy, seed=seed, jit_compile=jit_compile)
    if not trainer.restored_from:
        initialize_from_checkpoints(trainer.model, config, skip=init_from_parts)
    return trainer


def write_eval(model_dir: str, step: int, metrics: Dict) -> None:
    """An evaluation's numeric metrics as TensorBoard scalars (`<model_dir>/eval`) and all of
    them in `eval.json`."""
    layout = ModelDir(model_dir)
    writer = tf.summary.create_file_writer(layout.summaries_dir("eval"))
    with writer.as_default():
        for name, value in metrics.items():
            if isinstance(value, (int, float)):  # Not the paths some evaluations report.
                tf.summary.scalar(name, value, step=step)
    writer.flush()
    layout.write_eval_results(step, metrics)


def train_ict(config: ExperimentConfig, blocks_dir: str, model_dir: str, heldout_eval: bool = True,
              strategy: Optional[tf.distribute.Strategy] = None, seed: int = 0, jit_compile: bool = False,
              progress: bool = True) -> Dict:
    """ICT warm start of the retriever; then, with `heldout_eval`, recall@k on held-out
    sentences (it embeds every block once), and the embedder exported for the
    embed-and-index pipeline. Returns {"step", "train", "eval", "export"}."""
    from realm_tf.retrieval.embedder_export import export_embedder
    from realm_tf.tasks.ict import IctTask

    _seed(seed)
    task = IctTask(config, blocks_dir)
    trainer = _build_trainer(task, config.ict.training, config, model_dir, strategy, seed, jit_compile)
    train_metrics = trainer.train(progress=progress)
    eval_metrics = {}
    if heldout_eval:
        eval_metrics = task.evaluate(trainer.model)
        write_eval(model_dir, trainer.step, eval_metrics)
    export_dir = ModelDir(model_dir).export_dir(trainer.step)
    if not os.path.exists(export_dir):
        export_embedder(trainer.model, task.featurizer, export_dir, step=trainer.step)
    return {"step": trainer.step, "train": train_metrics, "eval": eval_metrics, "export": export_dir}


def train_pretrain(config: ExperimentConfig, blocks_dir: str, model_dir: str, examples_dir: str, index_root: str,
                   init_from: Optional[str] = None,
                   start_refresher: Optional[Callable[[], subprocess.Popen]] = None,
                   strategy: Optional[tf.distribute.Strategy] = None, seed: int = 0, jit_compile: bool = False,
                   progress: bool = True, refresher_timeout: float = 600.0) -> Dict:
    """REALM pre-training on `examples_dir`, retrieving from the newest index version under
    `index_root` and swapping in new ones as they are published.

    Args:
      init_from: an ICT model_dir whose retriever starts a fresh run.
      start_refresher: starts the index refresher beside training (e.g.
        `beam_pipelines.refresh.start_background_refresher`) and returns its process; it
        is waited for (at most `refresher_timeout` seconds) once training has written
        its last export and `TRAINING_DONE`.

    Returns:
      {"step", "train", "export", "index_versions_used", "steps_per_second"}.
    """
    from realm_tf.tasks.pretrain import PretrainTask

    _seed(seed)
    task = PretrainTask(config, examples_dir, blocks_dir, index_root, model_dir)
    refresher = None
    try:
        trainer = _build_trainer(task, config.pretrain.training, config, model_dir, strategy, seed, jit_compile,
                                 init_from_parts=("retriever",) if init_from else ())
        if init_from and not trainer.restored_from:
            logging.info("retriever restored from %s", task.restore_retriever(trainer.model, init_from))
        if start_refresher is not None:
            refresher = start_refresher()
        train_metrics = trainer.train(progress=progress)
        export = task.export_embedder(trainer.model, trainer.step)
    finally:
        task.finish()
        if refresher is not None:
            _wait_for(refresher, refresher_timeout)
    return {"step": trainer.step, "train": train_metrics, "export": export,
            "index_versions_used": task.index_versions_used,
            "steps_per_second": getattr(trainer, "steps_per_second", 0.0)}


def _wait_for(process: subprocess.Popen, timeout: float) -> None:
    """The refresher indexes the last export and exits after TRAINING_DONE; don't wait forever."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        logging.warning("the background refresher did not finish within %.0fs; stopping it", timeout)
        process.kill()


def train_finetune(config: ExperimentConfig, blocks_dir: str, model_dir: str, qa_train: str, index: str,
                   qa_format: str = "auto", init_from: Optional[str] = None, eval_qa: Optional[str] = None,
                   strategy: Optional[tf.distribute.Strategy] = None, seed: int = 0, jit_compile: bool = False,
                   progress: bool = True) -> Dict:
    """Open-domain QA fine-tuning on `qa_train`, reading the top `finetune.top_k` blocks of
    a fixed index version (`index`: a version, or a root whose newest version is taken
    and kept across resumptions).

    Args:
      init_from: a pretrain (or ICT) model_dir whose query tower and reader start a fresh run.
      eval_qa: questions to evaluate on at the end (`evaluate_model_dir`).

    Returns:
      {"step", "train", "index_version", "steps_per_second"} and, with `eval_qa`, "eval".
    """
    from realm_tf.artifacts.index_version import resolve_version
    from realm_tf.tasks.finetune import FinetuneTask, initial_weight_parts, restore_initial_weights

    _seed(seed)
    layout = ModelDir(model_dir)
    # Resuming: keep the index it started with.
    index_version = layout.read_run_info().index_version if layout.has_run_info() else resolve_version(index)
    task = FinetuneTask(config, qa_train, blocks_dir, index_version, qa_format=qa_format)
    init_from_parts = initial_weight_parts(init_from)[1] if init_from else ()
    trainer = _build_trainer(task, config.finetune.training, config, model_dir, strategy, seed, jit_compile,
                             init_from_parts)
    if not trainer.restored_from:
        os.makedirs(layout.path, exist_ok=True)
        save_config(config, layout.config_path)
        layout.write_run_info(RunInfo(config=layout.config_path, blocks_dir=blocks_dir, index_version=index_version))
        if init_from:
            logging.info("%s restored from %s", " and ".join(init_from_parts),
                         restore_initial_weights(trainer.model, init_from))
    train_metrics = trainer.train(progress=progress)
    result = {"step": trainer.step, "train": train_metrics, "index_version": index_version,
              "steps_per_second": getattr(trainer, "steps_per_second", 0.0)}
    if eval_qa:
        from realm_tf.inference.open_qa_evaluation import evaluate_model_dir, read_questions

        result["eval"] = evaluate_model_dir(model_dir, read_questions(eval_qa, qa_format), progress=progress).metrics
        write_eval(model_dir, trainer.step, result["eval"])
    return result
