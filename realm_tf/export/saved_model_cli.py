"""TensorFlow's `saved_model_cli` with the TF Text ops registered: `python -m realm_tf.export.saved_model_cli`.

    python -m realm_tf.export.saved_model_cli run --dir saved_models/realm_qa/1 --tag_set serve \\
        --signature_def serving_default --input_exprs 'questions=["who won super bowl 50?"]'

The QA export tokenizes in its graph with tensorflow-text ops, which TF Serving links
in but the stock `saved_model_cli` does not register, so its `run` fails there with
"Op type not registered 'CaseFoldUTF8'" (`show` works as is). This is the same tool,
in a process that imported tensorflow_text first. Arguments are saved_model_cli's.
"""

import sys

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow_text  # noqa: F401  (registers the TF Text ops before the graph is loaded)
from tensorflow.python.tools import saved_model_cli


def main() -> int:
    sys.argv[0] = "saved_model_cli"
    return saved_model_cli.main()


if __name__ == "__main__":
    sys.exit(main())
