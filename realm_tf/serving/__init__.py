"""Clients of a served QA export (`python -m realm_tf.export`): `python -m realm_tf.serving.client`."""
