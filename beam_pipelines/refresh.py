"""Keeps the MIPS index fresh during pre-training: REALM's asynchronous index refresh.

    python -m beam_pipelines.refresh --model_dir=... --blocks_dir=... --index_root=... \
        [--config=tiny] [--override KEY=VALUE ...] [--poll_seconds=5] [--max_seconds=0] [--once] \
        [--shared_dir=gs://...] [Beam options, e.g. --runner=DataflowRunner ...]

    trainer: <model_dir>/embedder/<step>/       an export every pretrain.refresh_every_steps
                                                  (renamed into place from a hidden .staging-* sibling)
             <model_dir>/embedder/TRAINING_DONE  written when training ends
    refresher (this job, beside the trainer):
      newest complete export newer than the latest index version
        -> beam_pipelines.embed_and_index -> <index_root>/<version>/   (the trainer swaps it in)

Only the newest export is indexed: when the refresher lags behind the trainer, the
exports in between are skipped (logged and counted), since a fresher index is what
the trainer wants (the paper re-embeds asynchronously, every several hundred steps).
A refresh that fails (a corrupt export, a Beam error) is logged and that export is not
tried again; the trainer keeps its last good index and the next, newer export gets its
turn. The job ends once TRAINING_DONE is there and the last export is indexed, after
--max_seconds, or when the process given by --watch_pid is gone. Options this script
does not know go to the embed_and_index pipeline's Beam options.

On Dataflow the workers cannot read the trainer's local exports: with --shared_dir (a
folder they share, gs://...), each export is first copied to <shared_dir>/embedder/<step>/
for them to load, their embedding shards go under <shared_dir>/embedding_shards/, and the
copy is removed once its refresh ends; the version still names the trainer's export.
"""

import argparse
import logging
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Set, Tuple

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from realm_tf.artifacts.index_version import IndexVersion, IndexVersionError, latest_version, list_versions
from realm_tf.artifacts.model_dir import TRAINING_DONE, ModelDir
from realm_tf.cli import add_verbose_flag, run_command
from realm_tf.configs import load_config

from beam_pipelines import embed_and_index


class Refresher:
    """Indexes the trainer's newest embedder export whenever one appears.

    Attributes:
      published: paths of the index versions this refresher published, oldest first.
      failed: export directories whose refresh raised; never tried again.
      skipped: export directories passed over for a newer one while lagging.
    """

    def __init__(self, model_dir: str, blocks_dir: str, index_root: str, config: str = "tiny",
                 overrides: Sequence[str] = (), beam_args: Sequence[str] = (), poll_seconds: float = 5.0,
                 watch_pid: Optional[int] = None, batch_size: int = 0, shared_dir: Optional[str] = None):
        """
        Args:
          model_dir: the trainer's model dir; exports are read from `<model_dir>/embedder/`.
          blocks_dir: output of beam_pipelines.chunk_corpus, re-embedded on every refresh.
          index_root: where index versions are published (and read by the trainer).
          config, overrides: the experiment config for the index build, as for embed_and_index.
          beam_args: Beam options for the embed-and-index pipeline.
          poll_seconds: the wait between looks for a new export in `run_until_done`.
          watch_pid: if set, `run_until_done` stops once this process (the trainer) is gone.
          batch_size: blocks per embedding call; 0 takes index.embed_batch_size from the config.
          shared_dir: storage the Beam workers share (gs:// on Dataflow), where each export
            is copied for them and their embedding shards are written; None: the exports
            are read where the trainer wrote them, and the shards stay on this machine.

        Raises:
          ConfigError: a bad config or override, found now rather than at every refresh.
        """
        self.config = load_config(config, overrides)
        self.model_dir = ModelDir(model_dir)
        self.blocks_dir = blocks_dir
        self.index_root = index_root
        self.beam_args = list(beam_args)
        self.poll_seconds = poll_seconds
        self.watch_pid = watch_pid
        self.batch_size = batch_size
        self.shared_dir = shared_dir
        self.published: List[str] = []
        self.failed: List[str] = []
        self.skipped: Set[str] = set()

    def indexed_step(self) -> Optional[int]:
        """The step of the newest index version built from one of this run's exports; None if none is.

        Versions built from other embedders (the initial index, from the ICT warm start)
        do not count: their steps belong to another run.
        """
        for version in reversed(list_versions(self.index_root)):
            metadata = IndexVersion.load(version, verify=False).metadata
            if not self.model_dir.holds_export(str(metadata.get("embedder_export", ""))):
                continue
            step = metadata.get("step")
            if not isinstance(step, int):
                raise IndexVersionError(f"{version}: manifest metadata has no integer 'step' ({step!r}); "
                                        "cannot tell which embedder export it indexes")
            return step
        return None

    def complete_exports(self) -> List[Tuple[int, str]]:
        """(step, path) of the complete exports under `<model_dir>/embedder/`, by step ascending.

        A complete export is a directory named by its integer step holding its record,
        which export_embedder writes last; hidden `.staging-*` exports in progress are ignored.
        """
        return self.model_dir.complete_exports()

    def _unindexed_exports(self) -> List[Tuple[int, str]]:
        indexed = self.indexed_step()
        return [(step, path) for step, path in self.complete_exports() if indexed is None or step > indexed]

    def newest_unindexed_export(self) -> Optional[str]:
        """The complete export with the highest step newer than the latest index version; None if none."""
        unindexed = self._unindexed_exports()
        return unindexed[-1][1] if unindexed else None

    def _has_work(self) -> bool:
        export = self.newest_unindexed_export()
        return export is not None and export not in self.failed

    def refresh_once(self) -> Optional[str]:
        """Indexes the newest unindexed export, unless it failed before.

        Returns:
          The published version's path; None when there was nothing new to index or
          the refresh failed (logged, and the export recorded in `failed`).
        """
        unindexed = self._unindexed_exports()
        if not unindexed or unindexed[-1][1] in self.failed:
            return None
        step, export = unindexed[-1]
        # An export that failed was tried, not skipped.
        passed_over = [path for _, path in unindexed[:-1] if path not in self.failed]
        if passed_over:
            logging.info("The refresher lags the trainer: skipping %d older export(s) %s for step %d",
                         len(passed_over), [os.path.basename(path) for path in passed_over], step)
        self.skipped.update(passed_over)
        started = time.monotonic()
        try:
            version = self._embed_and_index(export, step)
        except Exception as e:  # noqa: BLE001  Whatever broke this export, the next one may index fine.
            logging.warning("Index refresh from embedder export %s failed; it will not be retried, and the trainer "
                            "stays on index version %s: %s: %s", export, latest_version(self.index_root),
                            type(e).__name__, e, exc_info=True)
            self.failed.append(export)
            return None
        self.published.append(version)
        logging.info("Published index version %s for step %d in %.1fs (staleness: %d older export(s) skipped)",
                     version, step, time.monotonic() - started, len(passed_over))
        return version

    def _embed_and_index(self, export: str, step: int) -> str:
        if self.shared_dir is None:
            return embed_and_index.embed_and_index(self.blocks_dir, export, self.index_root, self.config,
                                                   self.batch_size, beam_args=self.beam_args)
        import tensorflow as tf  # tf.io.gfile: the shared folder is gs:// on Dataflow.

        copy = f"{self.shared_dir.rstrip('/')}/embedder/{step}"
        try:
            copy_tree(export, copy)
            return embed_and_index.embed_and_index(
                self.blocks_dir, copy, self.index_root, self.config, self.batch_size, beam_args=self.beam_args,
                shards_dir=f"{self.shared_dir.rstrip('/')}/embedding_shards", export_origin=export)
        finally:
            if tf.io.gfile.exists(copy):
                tf.io.gfile.rmtree(copy)

    def training_done(self) -> bool:
        return self.model_dir.training_done()

    def _trainer_gone(self) -> bool:
        if self.watch_pid is None:
            return False
        try:
            os.kill(self.watch_pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # It exists, under another user.
        return False

    def stats(self) -> Dict:
        """{"published": [version paths], "failed": [export dirs], "skipped": number of exports passed over}."""
        return {"published": list(self.published), "failed": list(self.failed), "skipped": len(self.skipped)}

    def run_until_done(self, max_seconds: float = 0) -> Dict:
        """Refreshes until training is done and its last export is indexed.

        Stops also when `max_seconds` > 0 have passed (checked between refreshes, so a
        refresh under way finishes) or when the watched process is gone.

        Returns:
          `stats()`.
        """
        deadline = time.monotonic() + max_seconds if max_seconds > 0 else None
        while True:
            version = self.refresh_once()
            # The trainer writes its last export before TRAINING_DONE, so once the marker
            # is seen, one more listing finds every export there will ever be.
            if self.training_done() and not self._has_work():
                logging.info("%s found and no export is left to index; the refresher stops",
                             self.model_dir.training_done_path)
                break
            if self._trainer_gone():
                logging.warning("The trainer (pid %d) is gone without %s; the refresher stops",
                                self.watch_pid, TRAINING_DONE)
                break
            if deadline is not None and time.monotonic() >= deadline:
                logging.warning("The refresher stops after --max_seconds=%s", max_seconds)
                break
            if version is None:  # After a publish, look again at once: the trainer may be ahead.
                wait = self.poll_seconds if deadline is None else min(self.poll_seconds, deadline - time.monotonic())
                time.sleep(max(0.0, wait))
        return self.stats()


def copy_tree(source: str, target: str) -> None:
    """Copies the folder `source` to `target` (replacing it), on any filesystem tf.io.gfile knows."""
    import tensorflow as tf

    if tf.io.gfile.exists(target):
        tf.io.gfile.rmtree(target)
    for folder, _, names in tf.io.gfile.walk(source):
        relative = os.path.relpath(folder, source)
        out = target if relative == "." else f"{target}/{relative}"
        tf.io.gfile.makedirs(out)
        for name in names:
            tf.io.gfile.copy(os.path.join(folder, name), f"{out}/{name}")


def start_background_refresher(model_dir: str, blocks_dir: str, index_root: str, config: str,
                               overrides: Sequence[str], log_path: str, poll_seconds: float = 5.0,
                               beam_args: Sequence[str] = ()) -> subprocess.Popen:
    """Starts `python -m beam_pipelines.refresh` as a child process of this one.

    The child's stdout and stderr are appended to `log_path`. It stops by itself once
    `<model_dir>/embedder/TRAINING_DONE` exists and the last export is indexed, or when
    this process is gone (--watch_pid), so a crashed trainer leaves no refresher behind.

    Returns:
      The child process; `wait()` on it after writing TRAINING_DONE.
    """
    command = [sys.executable, "-m", "beam_pipelines.refresh", f"--model_dir={model_dir}",
               f"--blocks_dir={blocks_dir}", f"--index_root={index_root}", f"--config={config}",
               *[f"--override={o}" for o in overrides], f"--poll_seconds={poll_seconds}",
               f"--watch_pid={os.getpid()}", *beam_args]
    # The child imports this same checkout, installed or not, with tf_keras (see realm_tf/__init__.py).
    source_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    python_path = os.pathsep.join(p for p in (source_root, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", PYTHONPATH=python_path)
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)


def build_arg_parser() -> argparse.ArgumentParser:
    # No abbreviations: an option meant for Beam must not be taken for a prefix of ours.
    parser = argparse.ArgumentParser(prog="python -m beam_pipelines.refresh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--model_dir", required=True, help="the trainer's model dir (exports under embedder/)")
    parser.add_argument("--blocks_dir", required=True, help="output of beam_pipelines.chunk_corpus")
    parser.add_argument("--index_root", required=True, help="folder of index versions the trainer reads")
    parser.add_argument("--config", default="tiny", help="config name in configs/ or a YAML path (default: %(default)s)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. index.keep_versions=3 (repeatable)")
    parser.add_argument("--poll_seconds", type=float, default=5.0,
                        help="seconds between looks for a new export (default: %(default)s)")
    parser.add_argument("--max_seconds", type=float, default=0.0,
                        help="stop after this many seconds; 0 runs until training is done (default: %(default)s)")
    parser.add_argument("--once", action="store_true", help="index the newest unindexed export, if any, and exit")
    parser.add_argument("--watch_pid", type=int, default=None, help="stop when this process (the trainer) is gone")
    parser.add_argument("--batch_size", type=int, default=0,
                        help="blocks per embedding call; 0 takes index.embed_batch_size from the config")
    parser.add_argument("--shared_dir", default=None,
                        help="a folder the Beam workers share (gs://... on Dataflow): each export is copied to "
                             "<shared_dir>/embedder/<step>/ for them, their embedding shards go to "
                             "<shared_dir>/embedding_shards/ (default: none; exports are read in --model_dir)")
    return add_verbose_flag(parser)


def run(argv: Optional[Sequence[str]] = None) -> Dict:
    """Refreshes once (--once) or until training is done; returns the refresher's stats."""
    args, beam_args = build_arg_parser().parse_known_args(argv)
    refresher = Refresher(args.model_dir, args.blocks_dir, args.index_root, args.config, args.override,
                          beam_args, args.poll_seconds, args.watch_pid, args.batch_size, args.shared_dir)
    if args.once:
        refresher.refresh_once()
        return refresher.stats()
    return refresher.run_until_done(args.max_seconds)


def summarize(stats: Dict) -> str:
    """The lines the command line prints for the stats `run` returned."""
    lines = [embed_and_index.summarize(version) for version in stats["published"]]
    lines.append(f"refresher: {len(stats['published'])} index version(s) published, {stats['skipped']} export(s) "
                 f"skipped while lagging, {len(stats['failed'])} failed"
                 + "".join(f"\n  failed: {path}" for path in stats["failed"]))
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    # force: importing Beam already logged a warning, which installed a WARNING-level root handler.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
    return run_command(run, summarize, argv)


if __name__ == "__main__":
    sys.exit(main())
