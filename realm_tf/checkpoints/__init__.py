"""Pretrained checkpoints: Hugging Face BERT, Model Garden BERT, the REALM/ORQA TF1 releases.

  formats.open_checkpoint(path)            recognise and open one (`PretrainedCheckpoint`)
  initialize.initialize_from_checkpoints   fill a model's parts (`*.init_checkpoint` options)
  block_embeddings                         a release's `block_emb` -> an index version
  python -m realm_tf.checkpoints           inspect, config, import-index
"""
