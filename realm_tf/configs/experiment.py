"""The experiment config: every knob of realm-tf in one typed tree.

The defaults are the paper's sizes (Guu et al. 2020, §4 and its appendix),
so `configs/base.yaml` only names them and smaller configs override what they shrink.
Values not taken from the paper or the released code say so in a comment.
"""

import dataclasses
from typing import List

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from official.modeling.hyperparams import base_config


@dataclasses.dataclass
class BertConfig(base_config.Config):
    """Sizes of one Model Garden `BertEncoder` (defaults: BERT-base uncased)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    # "gelu": Model Garden's, the tanh approximation the released BERT and REALM checkpoints
    # use; "gelu_exact": the erf form of Hugging Face's BERT ("gelu" there).
    hidden_activation: str = "gelu"
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    # LayerNorm epsilon is 1e-12 throughout, as in BERT: Model Garden fixes it.


@dataclasses.dataclass
class FeaturesConfig(base_config.Config):
    """Tokenization and the three packings' static lengths (wordpieces, special tokens included).

    Attributes:
      vocab_file: WordPiece vocabulary; empty selects the bundled BERT uncased vocabulary.
      lower_case: lower-case and strip accents before WordPiece (uncased models).
      query_length: `[CLS] query [SEP]` for the query tower.
      block_length: `[CLS] title [SEP] body [SEP]` for the document tower; the chunker
        packs blocks so that this never truncates.
      reader_length: `[CLS] query [SEP] body [SEP]` for the knowledge-augmented encoder.
    """

    vocab_file: str = ""
    lower_case: bool = True
    query_length: int = 96
    block_length: int = 288
    reader_length: int = 384


@dataclasses.dataclass
class CorpusConfig(base_config.Config):
    """How documents are chunked into blocks.

    Attributes:
      max_title_tokens: titles longer than this many wordpieces are truncated in the
        block (counted in the manifest), so a title cannot crowd out the body. Ours.
      sentence_splitter: name of a registered splitter (`realm_tf.features.sentences`).
    """

    max_title_tokens: int = 64
    sentence_splitter: str = "rules"


@dataclasses.dataclass
class RetrieverConfig(base_config.Config):
    """Embed(x) = LayerNorm(Dense_projection(pool(BERT(x))))."""

    encoder: BertConfig = dataclasses.field(default_factory=BertConfig)
    # "cls": BERT's pooled output (tanh pooler over [CLS]), the paper's. "mean": the mean of
    # the sequence output over unpadded positions, for checkpoints trained that way
    # (sentence-transformers' all-MiniLM-L6-v2). Ours.
    pooling: str = "cls"
    projection_size: int = 128
    # How the projection's kernel starts where no checkpoint holds one: "truncated_normal"
    # (the paper's, with encoder.initializer_range), or "identity" (projection_size must be
    # encoder.hidden_size), which keeps the pooled output's geometry: the similarity a
    # sentence-embedding checkpoint was trained for, with no training. Measured on qa_dev with
    # all-MiniLM-L6-v2 and mean pooling, no training: dense recall@5 0.745 through a random
    # 384 -> 128 projection, 0.845 through the identity (configs/minilm.yaml). Ours.
    projection_initializer: str = "truncated_normal"
    # The released REALM embedder's LayerNorm uses eps 1e-12.
    projection_norm_epsilon: float = 1e-12
    # The projection LayerNorm's initial gain, where the projection starts fresh (a checkpoint
    # that has one restores its own). LayerNorm'd embeddings of width P score about
    # gain^2 x P x their correlation: at 1.0 (the paper's, Keras' default) 128-d embeddings
    # score up to about +-128, so p(z|x) over a few similar blocks is all but one-hot until
    # training learns the scale. A pretrained encoder with a fresh projection is better
    # started near the scale it was trained at (configs/minilm.yaml). Ours.
    projection_norm_gain: float = 1.0
    # The released code shares one tower between queries and documents.
    share_towers: bool = True
    # A pretrained checkpoint both towers start from when training starts fresh: a Hugging
    # Face BERT directory, a Model Garden BERT checkpoint, or a REALM/ORQA TF1 release
    # (see `realm_tf.checkpoints`). Empty: random initialization.
    init_checkpoint: str = ""


@dataclasses.dataclass
class ReaderConfig(base_config.Config):
    """The knowledge-augmented encoder over `[CLS] query [SEP] body [SEP]`."""

    encoder: BertConfig = dataclasses.field(default_factory=BertConfig)
    # Open-QA span head (ORQA's): answers of up to this many wordpieces, scored by an
    # MLP of this width over [h_start; h_end].
    max_span_length: int = 10
    span_hidden_size: int = 256
    # 0: every layer and the embeddings train, as in the paper. N > 0: only the top N
    # transformer layers (and the heads) train, the embeddings and the layers below stay as
    # loaded, and backpropagation stops there: a small compute budget's choice. Ours. (In
    # pre-training the masked-LM head's output matrix, tied to the word embeddings, trains.)
    trainable_layers: int = 0
    # A pretrained checkpoint the reader starts from when training starts fresh (as
    # `RetrieverConfig.init_checkpoint`): its BERT, and its masked-LM or span head if it has one.
    init_checkpoint: str = ""


@dataclasses.dataclass
class HybridConfig(base_config.Config):
    """Lexical retrieval beside the dense index, and how the two rankings are fused.

    With `lexical_index`, every index version also holds BM25 postings of its blocks by
    WordPiece id (`realm_tf.retrieval.lexical_index`), which `--retrieval hybrid` fuses with
    the dense ranking (`realm_tf.retrieval.fusion`): each retriever proposes `candidates`
    blocks, both score their union, and `fusion` ("rrf" or "interpolation") orders it.
    None of these values are the paper's (REALM retrieves densely only).
    """

    lexical_index: bool = False
    k1: float = 1.5  # bm25s's defaults.
    b: float = 0.75
    # Tuned on qa_dev (benchmarks/hybrid_retrieval.py, MiniLM towers with the identity projection):
    # interpolation at weights 0.1-0.9 and RRF at constants 10-100; the best recall@5 was
    # interpolation at 0.7 (0.942; 0.932 at 0.5, the best through the random 128-d projection).
    fusion: str = "interpolation"
    dense_weight: float = 0.7
    rrf_constant: float = 60.0  # Cormack et al. 2009.
    candidates: int = 100


@dataclasses.dataclass
class SentenceVectorsConfig(base_config.Config):
    """Vectors of each block's sentences beside the block's own (`realm_tf.retrieval.sentence_vectors`).

    With `enabled`, every index version also holds a vector of each sentence of each block
    (the block tower over the block's title and the sentence), and dense retrieval scores
    a block `block_weight * q.block + (1 - block_weight) * q.best sentence`, re-scoring the
    best `rescore_depth` blocks by block vector. Embedding costs about 3.7 times the rows
    on the embedded corpus (10,313 sentences beside 3,869 blocks). Ours: REALM has block
    vectors only.
    """

    enabled: bool = False
    # Compared on all of qa_dev with the quickstart's towers (benchmarks/sentence_vectors.py, exact
    # over every block): recall@5 0.845 at 1 (block vectors alone), 0.872 at 0.7, 0.888 at 0.5 and
    # 0.3, 0.878 at 0 (sentences alone); BM25 0.880.
    block_weight: float = 0.5
    rescore_depth: int = 100


# How ScaNN may store the embeddings it re-scores (`IndexConfig.reorder_dtype`).
REORDER_DTYPES = ("float32", "bfloat16", "int8")
# How a retriever projection the checkpoint lacks starts (RetrieverConfig.projection_initializer).
PROJECTION_INITIALIZERS = ("truncated_normal", "identity")


@dataclasses.dataclass
class IndexConfig(base_config.Config):
    """The MIPS index over block embeddings (ScaNN), and how index versions are kept.

    Below `exact_below` blocks the index scores every block (brute force); above, it
    is a ScaNN tree with asymmetric hashing and exact re-scoring of the best
    `reorder_num_neighbors`. Zeros mean "sized to the corpus" (see
    `realm_tf.retrieval.index_build`). None of these values are the paper's.
    """

    exact_below: int = 20_000
    num_leaves: int = 0
    num_leaves_to_search: int = 0
    training_sample_size: int = 250_000
    dims_per_block: int = 2
    anisotropic_quantization_threshold: float = 0.2
    # Measured at 1M blocks (benchmarks/retrieval_latency.py): re-scoring 100 gave recall@10
    # 0.66 of exact, 1,000 gave 0.98 at the same one-query latency.
    reorder_num_neighbors: int = 1000
    # How the re-scored copy of the embeddings is stored: "float32", "bfloat16" or "int8".
    # bfloat16 halves that copy (3.4 GB less at REALM's 13.35M). benchmarks/results/scale.json:
    # recall@10 of exact 0.996 at 1M and 0.970 at 13.35M in bfloat16 (an earlier run in float32:
    # 1.0 and 0.983).
    reorder_dtype: str = "bfloat16"
    keep_versions: int = 3
    embed_batch_size: int = 128
    hybrid: HybridConfig = dataclasses.field(default_factory=HybridConfig)
    sentence_vectors: SentenceVectorsConfig = dataclasses.field(default_factory=SentenceVectorsConfig)


@dataclasses.dataclass
class TrainingConfig(base_config.Config):
    """Optimisation schedule of one training task."""

    batch_size: int = 512
    train_steps: int = 200_000
    learning_rate: float = 3e-5
    warmup_steps: int = 10_000  # Ours: the paper does not state a warm-up.
    checkpoint_every_steps: int = 1_000  # Ours.
    summary_every_steps: int = 100  # Ours.


@dataclasses.dataclass
class IctConfig(base_config.Config):
    """Inverse Cloze Task warm start of the retriever (ORQA, Lee et al. 2019)."""

    # ORQA's ICT: batch 4096, 100k steps, learning rate 1e-4.
    training: TrainingConfig = dataclasses.field(
        default_factory=lambda: TrainingConfig(
            batch_size=4096, train_steps=100_000, learning_rate=1e-4
        )
    )
    # Probability that the query sentence is removed from its positive block.
    remove_sentence_probability: float = 0.9
    # Blocks whose id falls in this percentage are held out of training for recall@k. Ours.
    heldout_percent: int = 5


# The entity types of OntoNotes 5, as spaCy's English models label them.
ONTONOTES_ENTITY_TYPES = ("PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW",
                          "LANGUAGE", "DATE", "TIME", "PERCENT", "MONEY", "QUANTITY", "ORDINAL", "CARDINAL")
# Those that CoNLL-2003's PER, ORG, LOC and MISC cover (the tagger the paper used): no
# numbers, and no DATE or TIME, which hold phrases such as "each year".
CONLL_ENTITY_TYPES = ("PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW",
                      "LANGUAGE")


@dataclasses.dataclass
class PretrainConfig(base_config.Config):
    """REALM pre-training: salient span masking and asynchronous MIPS refresh."""

    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    # Candidates per query, the null document among them: top_k - 1 retrieved blocks.
    top_k: int = 8
    refresh_every_steps: int = 500
    max_masked_tokens: int = 10
    # "salient": mask one salient span (entity or date) per sentence, falling back to
    # random tokens where a sentence has none; "random": BERT-style random tokens only.
    masking: str = "salient"
    # "dates_and_entities" (rules), "spacy" (a trained NER tagger, the `ner` extra), or any
    # registered detector (`realm_tf.features.salient_spans`).
    salient_span_detector: str = "dates_and_entities"
    # The entity types the "spacy" detector masks, of ONTONOTES_ENTITY_TYPES; dates come
    # from the date regex.
    salient_entity_types: List[str] = dataclasses.field(default_factory=lambda: list(CONLL_ENTITY_TYPES))
    random_mask_probability: float = 0.15
    # Examples are streamed from their shards; this many are held and shuffled at a time
    # (`realm_tf.tasks.example_stream`).
    shuffle_window: int = 100_000


@dataclasses.dataclass
class FinetuneConfig(base_config.Config):
    """Open-domain QA fine-tuning with a fixed index."""

    training: TrainingConfig = dataclasses.field(
        default_factory=lambda: TrainingConfig(
            # Ours: the released code trains one question per step; we batch.
            batch_size=16,
            train_steps=10_000,
            learning_rate=1e-5,
            warmup_steps=1_000,
        )
    )
    # Blocks read per question, retrieved from an index built once and kept fixed.
    top_k: int = 5
    # ORQA's "early update", which REALM's fine-tuning keeps: the retriever's loss ranges
    # over this many top blocks (the reader reads the first top_k of them), so a question
    # whose answer is not in the top_k still teaches the query tower.
    retriever_beam_size: int = 5000
    # The host searches the index with a copy of the query tower, synced from the one
    # being trained every this many steps. Ours: the released code searches in-graph.
    query_sync_every_steps: int = 10
    # False: the query tower stays as it starts, running as at inference (no dropout; the
    # retriever's loss is still reported), and only the reader trains; for a pretrained
    # retriever that a reader's learning rate would spoil (configs/minilm.yaml). The paper trains it.
    train_query_tower: bool = True
    # Where the beam comes from: "index", the dense index (the paper's); "hybrid", its dense
    # and lexical rankings fused as index.hybrid says (the beam then at most 2 x
    # index.hybrid.candidates). Ours.
    retrieval: str = "index"


@dataclasses.dataclass
class ExperimentConfig(base_config.Config):
    """Everything one realm-tf experiment needs; load it with `realm_tf.configs.load_config`."""

    features: FeaturesConfig = dataclasses.field(default_factory=FeaturesConfig)
    corpus: CorpusConfig = dataclasses.field(default_factory=CorpusConfig)
    retriever: RetrieverConfig = dataclasses.field(default_factory=RetrieverConfig)
    reader: ReaderConfig = dataclasses.field(default_factory=ReaderConfig)
    index: IndexConfig = dataclasses.field(default_factory=IndexConfig)
    ict: IctConfig = dataclasses.field(default_factory=IctConfig)
    pretrain: PretrainConfig = dataclasses.field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = dataclasses.field(default_factory=FinetuneConfig)
