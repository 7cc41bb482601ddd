"""Builds Model Garden BERT encoders from `BertConfig`."""

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tf_keras
from official.modeling import tf_utils
from official.nlp.modeling import networks

from realm_tf.configs import BertConfig


def build_bert_encoder(config: BertConfig, name: str = "bert") -> networks.BertEncoderV2:
    """A `BertEncoderV2` sized by `config`.

    Inputs: {"input_word_ids", "input_mask", "input_type_ids"}, int32 [batch, length].
    Outputs: {"sequence_output": float32 [batch, length, hidden],
              "pooled_output": float32 [batch, hidden] (tanh pooler over [CLS]), ...}.
    """
    return networks.BertEncoderV2(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        num_attention_heads=config.num_attention_heads,
        max_sequence_length=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size,
        inner_dim=config.intermediate_size,
        # Model Garden's "gelu" is BERT's tanh approximation (tf_keras' own is exact erf).
        inner_activation=tf_utils.get_activation(config.hidden_activation),
        output_dropout=config.dropout_rate,
        attention_dropout=config.attention_dropout_rate,
        initializer=tf_keras.initializers.TruncatedNormal(stddev=config.initializer_range),
        name=name,
    )
