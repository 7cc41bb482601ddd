"""Import time of a BERT-base checkpoint in each released format, against restoring the
project's own checkpoint of the same tower.

    python -m benchmarks.checkpoint_import [--repeats 3] [--workdir runs/bench/checkpoint_import]

Writes one BERT-base (12 layers, hidden 768, 110M parameters) retriever tower's weights,
random, in each format:

  own           `tf.train.Checkpoint(model=embedder)`: the baseline, TensorFlow's own restore
  hugging_face  transformers' `BertModel.save_pretrained` (model.safetensors)
  model_garden  `tf.train.Checkpoint(encoder=BertEncoder)` of tfm's V1 encoder (bert_model.ckpt)
  realm_tf1     the REALM embedder release's TF1 names (`module/module/module/bert/...` and the
                projection), as TF1's Saver writes them

and times, in turns, opening each and filling an already built `ProjectedEmbedder`
(`realm_tf.checkpoints`), median over `--repeats`. Writes
benchmarks/results/checkpoint_import.json. Needs torch and transformers (the test extra)
for the Hugging Face file; about 2 GB of disk under --workdir.
"""

import argparse
import pathlib
import time
from typing import Dict, Optional, Sequence

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from realm_tf.features import FEATURE_KEYS

from benchmarks import common

RESULTS = common.RESULTS_DIR / "checkpoint_import.json"


def _embedder(config):
    import tensorflow as tf

    from realm_tf.modeling.embedder import ProjectedEmbedder

    embedder = ProjectedEmbedder(config.retriever)
    embedder({k: tf.zeros([1, 8], tf.int32) for k in FEATURE_KEYS})
    return embedder


def write_checkpoints(workdir: pathlib.Path, config, embedder) -> Dict[str, str]:
    """The four files, from `embedder`'s random weights (HF's are its own random ones)."""
    import tensorflow as tf
    import transformers
    from official.nlp.modeling import networks

    from realm_tf.checkpoints.bert_layout import dense_targets, encoder_targets, norm_targets

    bert = config.retriever.encoder
    paths = {"own": str(workdir / "own" / "ckpt"), "hugging_face": str(workdir / "hugging_face"),
             "model_garden": str(workdir / "model_garden" / "bert_model.ckpt"),
             "realm_tf1": str(workdir / "realm_tf1" / "model.ckpt")}
    tf.train.Checkpoint(model=embedder).write(paths["own"])

    hf = transformers.BertModel(transformers.BertConfig(
        vocab_size=bert.vocab_size, hidden_size=bert.hidden_size, num_hidden_layers=bert.num_layers,
        num_attention_heads=bert.num_attention_heads, intermediate_size=bert.intermediate_size,
        max_position_embeddings=bert.max_position_embeddings, hidden_act="gelu_new"))
    hf.save_pretrained(paths["hugging_face"])

    encoder = networks.BertEncoder(
        vocab_size=bert.vocab_size, hidden_size=bert.hidden_size, num_layers=bert.num_layers,
        num_attention_heads=bert.num_attention_heads, intermediate_size=bert.intermediate_size,
        max_sequence_length=bert.max_position_embeddings, type_vocab_size=bert.type_vocab_size)
    tf.train.Checkpoint(encoder=encoder).write(paths["model_garden"])

    tensors = {}
    for target in encoder_targets(embedder.encoder):
        tensors[f"module/module/module/bert/{target.name}"] = target.variable.numpy().reshape(target.canonical_shape)
    for target in dense_targets("dense", embedder.projection) + norm_targets("LayerNorm", embedder.layer_norm):
        tensors[f"module/module/{target.name}"] = target.variable.numpy()
    names = sorted(tensors)
    pathlib.Path(paths["realm_tf1"]).parent.mkdir(parents=True, exist_ok=True)
    tf.raw_ops.SaveV2(prefix=paths["realm_tf1"], tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[n]) for n in names])
    return paths


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed imports per format (default: %(default)s)")
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("runs/bench/checkpoint_import"))
    parser.add_argument("--config", default="base", help="the config whose retriever is imported (BERT-base)")
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)
    common.check_at_least(parser, args, {"repeats": 1})

    import tensorflow as tf

    from realm_tf.checkpoints.formats import open_checkpoint
    from realm_tf.checkpoints.initialize import load_embedder
    from realm_tf.configs import load_config

    config = load_config(args.config)
    machine = common.machine_info()
    source = _embedder(config)
    parameters = int(sum(np.prod(v.shape) for v in source.trainable_variables))
    print(f"writing a {parameters / 1e6:.0f}M-parameter tower in four formats under {args.workdir}", flush=True)
    paths = write_checkpoints(args.workdir, config, source)
    target = _embedder(config)

    def own(path):
        tf.train.Checkpoint(model=target).read(path).assert_existing_objects_matched()

    def released(path):
        checkpoint = open_checkpoint(path)
        # Model Garden's pooler-only encoder and HF's plain BertModel have no projection: 199
        # tensors; the REALM release adds the projection's four.
        return len(load_embedder(target, checkpoint).read)

    calls = {name: (own if name == "own" else released) for name in paths}
    seconds = {name: [] for name in paths}
    tensors_read = {}
    for _ in range(args.repeats):
        for name, call in calls.items():  # In turns: load from other work falls on all alike.
            start = time.perf_counter()
            result = call(paths[name])
            seconds[name].append(time.perf_counter() - start)
            tensors_read[name] = result
    baseline = float(np.median(seconds["own"]))
    runs = {}
    for name in paths:
        median = float(np.median(seconds[name]))
        runs[name] = {"median_seconds": round(median, 3), "seconds": [round(s, 3) for s in seconds[name]],
                      "ratio_to_own_restore": common.ratio(median, baseline)}
        if name != "own":
            runs[name]["tensors_read"] = tensors_read[name]
    results = {"benchmark": "checkpoint_import", "command": common.command_line("benchmarks.checkpoint_import", argv),
               "config": args.config, "parameters": parameters, "repeats": args.repeats, "machine": machine,
               "runs": runs}
    for name, run in runs.items():
        print(f"{name:>13}: {run['median_seconds']:.2f} s ({run['ratio_to_own_restore']}x the own restore)")
    return common.write_results(args.output, results)


if __name__ == "__main__":
    main()
