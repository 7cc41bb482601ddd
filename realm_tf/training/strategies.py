"""`--strategy`: TPUs (TPUStrategy), GPUs or several CPUs (MirroredStrategy), or the default."""

from typing import Optional

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

STRATEGIES = ("default", "mirrored", "tpu")


def build_strategy(name: str, tpu: Optional[str] = None, cpu_devices: int = 0) -> tf.distribute.Strategy:
    """The strategy to train under.

    Args:
      name: "default" (one device), "mirrored" (all local GPUs; CPUs when there are
        none), or "tpu".
      tpu: for "tpu", the TPU name or grpc address given to TPUClusterResolver ("" on a
        TPU VM; "local" for a local TPU).
      cpu_devices: for "mirrored" without GPUs, split the CPU into this many logical
        devices and mirror over them (tests use 2). Must be called before TensorFlow
        initializes its devices.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if tf.config.list_physical_devices("GPU") or cpu_devices <= 1:
            return tf.distribute.MirroredStrategy()
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices)
        except RuntimeError:  # TensorFlow already set up its devices: use them if there are enough.
            if len(tf.config.list_logical_devices("CPU")) < cpu_devices:
                raise RuntimeError(
                    f"--cpu_devices={cpu_devices}: TensorFlow initialized its devices before the strategy was "
                    "built; build the strategy first thing in the process"
                ) from None
        return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(cpu_devices)])
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {name!r}; expected one of {STRATEGIES}")
