"""Builds Model Garden BERT encoders from `BertConfig`."""

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf
import tf_keras
from official.modeling import tf_utils
from official.nlp.modeling import networks

from realm_tf.configs import BertConfig


@tf_keras.utils.register_keras_serializable(package="realm_tf")
def gelu_exact(x: tf.Tensor) -> tf.Tensor:
    """GELU with the erf, as Hugging Face's BERT computes "gelu"."""
    return tf.nn.gelu(x, approximate=False)


def activation(name: str):
    """`BertConfig.hidden_activation` -> a function.

    "gelu" is Model Garden's, the tanh approximation the released BERT and REALM
    checkpoints were trained with (tf_keras' own "gelu" is the exact form); "gelu_exact"
    is the erf form (Hugging Face's "gelu"); anything else goes to Model Garden's lookup.
    """
    return gelu_exact if name == "gelu_exact" else tf_utils.get_activation(name)


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
        inner_activation=activation(config.hidden_activation),
        output_dropout=config.dropout_rate,
        attention_dropout=config.attention_dropout_rate,
        initializer=tf_keras.initializers.TruncatedNormal(stddev=config.initializer_range),
        name=name,
    )


def freeze_lower_layers(encoder: networks.BertEncoderV2, num_trainable_layers: int) -> None:
    """Leaves only the top `num_trainable_layers` transformer layers of a built or unbuilt
    `encoder` trainable (and the pooler); the embeddings and the layers below are frozen.

    Gradients then stop at the lowest trainable layer, so a step costs the forward pass
    plus the backward pass of the top layers only. 0 keeps every layer trainable.
    """
    layers = encoder.transformer_layers
    if not 0 <= num_trainable_layers <= len(layers):
        raise ValueError(f"num_trainable_layers must be in [0, {len(layers)}], got {num_trainable_layers}")
    if num_trainable_layers == 0:
        return
    frozen = [encoder._embedding_layer, encoder._position_embedding_layer,  # No public accessors.
              encoder._type_embedding_layer, encoder._embedding_norm_layer]
    for layer in frozen + list(layers[: len(layers) - num_trainable_layers]):
        layer.trainable = False
