"""Packing checked against hand-computed ids of the real BERT uncased vocabulary."""

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.configs import load_config
from realm_tf.features import Featurizer, Vocabulary, VocabularyError

CLS, SEP, PAD = 101, 102, 0
THE, QUICK, BROWN, FOX, JUMPS = 1996, 4248, 2829, 4419, 14523
SUPER, BOWL, FIFTY = 3565, 4605, 2753
WHERE, WAS, NIKOLA, TESLA, BORN, QMARK = 2073, 2001, 24794, 26060, 2141, 1029


@pytest.fixture(scope="module")
def featurizer():
    # Short lengths so that truncation is easy to see by hand.
    config = load_config(
        "tiny",
        ["features.query_length=6", "features.block_length=10", "features.reader_length=12",
         "corpus.max_title_tokens=3"],
    )
    return Featurizer(config.features)


def _rows(packed):
    return {key: value.numpy().tolist() for key, value in packed.items()}


def test_the_vocabulary_ids_used_here_are_the_real_ones(vocab_tokens):
    expected = {CLS: "[CLS]", SEP: "[SEP]", PAD: "[PAD]", THE: "the", QUICK: "quick", BROWN: "brown", FOX: "fox",
                JUMPS: "jumps", SUPER: "super", BOWL: "bowl", FIFTY: "50", WHERE: "where", WAS: "was",
                NIKOLA: "nikola", TESLA: "tesla", BORN: "born", QMARK: "?", 19204: "token", 3989: "##ization"}
    assert {i: vocab_tokens[i] for i in expected} == expected


def test_tokenize_lowercases_strips_accents_and_splits_wordpieces(featurizer):
    tokens = featurizer.tokenize(["Where was Nikola Tesla born?", "Tokenization", "Éléphant Café", ""])
    assert tokens.dtype == tf.int64
    assert tokens.to_list() == [[WHERE, WAS, NIKOLA, TESLA, BORN, QMARK], [19204, 3989], [10777, 7668], []]


def test_query_packing_pads_and_truncates(featurizer):
    packed = featurizer.query_features(["the quick", "the quick brown fox jumps"])
    assert _rows(packed) == {
        "input_word_ids": [[CLS, THE, QUICK, SEP, PAD, PAD], [CLS, THE, QUICK, BROWN, FOX, SEP]],
        "input_mask": [[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]],
        "input_type_ids": [[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]],
    }
    assert all(v.dtype == tf.int32 and v.shape == (2, 6) for v in packed.values())


def test_block_packing_segments_title_and_body_and_truncates_the_body(featurizer):
    packed = featurizer.block_features(["Super Bowl 50", "Super Bowl"], ["the fox", "the quick brown fox jumps"])
    assert _rows(packed) == {
        "input_word_ids": [
            [CLS, SUPER, BOWL, FIFTY, SEP, THE, FOX, SEP, PAD, PAD],
            # 10 - 3 special - 2 title = 5 body wordpieces fit: the title is kept whole.
            [CLS, SUPER, BOWL, SEP, THE, QUICK, BROWN, FOX, JUMPS, SEP],
        ],
        "input_mask": [[1, 1, 1, 1, 1, 1, 1, 1, 0, 0], [1] * 10],
        "input_type_ids": [[0, 0, 0, 0, 0, 1, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]],
    }
    truncated = featurizer.block_features(["Super Bowl"], ["the quick brown fox jumps the fox"])
    assert truncated["input_word_ids"].numpy().tolist() == [[CLS, SUPER, BOWL, SEP, THE, QUICK, BROWN, FOX, JUMPS, SEP]]


def test_null_document_is_cls_sep_sep(featurizer):
    packed = featurizer.block_features([""], [""])
    assert _rows(packed) == {
        "input_word_ids": [[CLS, SEP, SEP] + [PAD] * 7],
        "input_mask": [[1, 1, 1] + [0] * 7],
        "input_type_ids": [[0, 0, 1] + [0] * 7],
    }


def test_reader_packing_cuts_the_query_to_query_length_then_truncates_the_block(featurizer):
    query = featurizer.tokenize(["the quick brown fox jumps"])  # 5 wordpieces; the query tower keeps 4.
    body = featurizer.tokenize(["super bowl 50 the fox"])
    packed = featurizer.pack_reader(query, body)
    # 12 = [CLS] + 4 query + [SEP] + 5 body + [SEP]: the body, not the question, gives way.
    assert _rows(packed) == {
        "input_word_ids": [[CLS, THE, QUICK, BROWN, FOX, SEP, SUPER, BOWL, FIFTY, THE, FOX, SEP]],
        "input_mask": [[1] * 12],
        "input_type_ids": [[0] * 6 + [1] * 6],
    }
    long_body = featurizer.tokenize(["super bowl 50 the fox jumps the quick brown fox"])
    cut = featurizer.pack_reader(featurizer.tokenize(["the quick"]), long_body)
    assert cut["input_word_ids"].numpy().tolist() == [
        [CLS, THE, QUICK, SEP, SUPER, BOWL, FIFTY, THE, FOX, JUMPS, THE, SEP]]


def test_packing_runs_in_tf_data_and_tf_function_with_static_shapes(featurizer):
    dataset = tf.data.Dataset.from_tensor_slices(["the fox", "the quick brown fox jumps the fox"]).batch(2)
    batch = next(iter(dataset.map(featurizer.query_features)))
    assert batch["input_word_ids"].shape == (2, 6)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.string)])
    def block(titles, bodies):
        return featurizer.block_features(titles, bodies)

    concrete = block.get_concrete_function()
    assert concrete.structured_outputs["input_word_ids"].shape.as_list() == [None, 10]
    eager = featurizer.block_features(["Super Bowl"], ["the fox"])
    np.testing.assert_array_equal(block(tf.constant(["Super Bowl"]), tf.constant(["the fox"]))["input_word_ids"],
                                  eager["input_word_ids"])


def test_ragged_token_ids_pack_like_strings(featurizer):
    ids = tf.ragged.constant([[SUPER, BOWL]], dtype=tf.int64)
    body = tf.ragged.constant([[THE, FOX]], dtype=tf.int32, row_splits_dtype=tf.int32)
    np.testing.assert_array_equal(
        featurizer.pack_block(ids, body)["input_word_ids"],
        featurizer.block_features(["super bowl"], ["the fox"])["input_word_ids"],
    )


def test_vocabulary_errors_name_the_file(tmp_path):
    with pytest.raises(VocabularyError, match="vocabulary file not found: .*absent.txt"):
        Vocabulary.from_file(tmp_path / "absent.txt")
    partial = tmp_path / "partial.txt"
    partial.write_text("[PAD]\n[UNK]\nthe\n")
    duplicated = tmp_path / "duplicated.txt"
    duplicated.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\ncat\nthe\n")
    with pytest.raises(VocabularyError, match=r"duplicated.txt:8: duplicate token 'the' \(first at line 6\)"):
        Vocabulary.from_file(duplicated)
    with pytest.raises(VocabularyError, match=r"partial.txt: vocabulary lacks the special tokens \['\[CLS\]', '\[SEP\]', '\[MASK\]'\]"):
        Vocabulary.from_file(partial)


def test_bundled_vocabulary_special_ids():
    from realm_tf.features import BUNDLED_VOCAB_PATH

    vocab = Vocabulary.from_file(BUNDLED_VOCAB_PATH)
    assert (vocab.size, vocab.pad_id, vocab.unk_id, vocab.cls_id, vocab.sep_id, vocab.mask_id) == (
        30522, 0, 100, 101, 102, 103)
    assert vocab.sha256 == "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"


def _view_bytes(ch: str, lower_case: bool) -> bytes:
    """One character as tf_text's BertTokenizer sees it, computed alone (the reference)."""
    import tensorflow_text as tf_text

    view = tf.constant([ch])
    if lower_case:
        view = tf.strings.regex_replace(tf_text.normalize_utf8(tf_text.case_fold_utf8(view), "NFD"), r"\p{Mn}", "")
    return view.numpy()[0]


OFFSET_TEXTS = ["Tesla, born 10 July 1856 in Smiljan.", "Éléphant ½ \u200bcafé NAÏVE ﬁne Ⅻ ß İstanbul",
                "中文 and 😀, then ASCII again", "", "ﬁ"]


@pytest.mark.parametrize("lower_case", [True, False])
def test_character_offsets_map_the_tokenizers_bytes_through_each_characters_view(lower_case):
    featurizer = Featurizer(load_config("tiny", [f"features.lower_case={str(lower_case).lower()}"]).features)
    ids, byte_begins, byte_ends = (r.merge_dims(-2, -1).to_list() for r in
                                   featurizer._tokenizer.tokenize_with_offsets(tf.constant(OFFSET_TEXTS)))
    found = featurizer.tokenize_with_char_offsets(OFFSET_TEXTS)
    assert len(found) == len(OFFSET_TEXTS)
    for text, row_ids, row_begins, row_ends, (got_ids, got_begins, got_ends) in zip(
            OFFSET_TEXTS, ids, byte_begins, byte_ends, found):
        char_at = np.repeat(np.arange(len(text)), [len(_view_bytes(ch, lower_case)) for ch in text])
        at = lambda offsets: char_at[np.minimum(np.asarray(offsets, np.int64), len(char_at) - 1)]  # noqa: E731
        np.testing.assert_array_equal(got_ids, row_ids)
        if row_ids:
            np.testing.assert_array_equal(got_begins, at(row_begins))
            np.testing.assert_array_equal(got_ends, at(np.asarray(row_ends) - 1) + 1)
        else:
            assert got_begins.size == got_ends.size == 0
    # Each token's characters are its word's: "tesla", ",", "born"; the pieces of "Éléphant"
    # (lower-cased and stripped of accents by the tokenizer) cover its 8 characters.
    _, begins, ends = found[0]
    assert [OFFSET_TEXTS[0][b:e] for b, e in zip(begins[:3], ends[:3])] == ["Tesla", ",", "born"]
    _, begins, ends = found[1]
    pieces = np.flatnonzero(ends <= 8)
    assert (begins[pieces[0]], ends[pieces[-1]]) == (0, 8) and OFFSET_TEXTS[1][:8] == "Éléphant"


def test_character_offsets_are_the_same_in_a_graph():
    featurizer = Featurizer(load_config("tiny").features)
    traced = tf.function(featurizer.tokenize_with_offsets,
                         input_signature=[tf.TensorSpec([None], tf.string)])
    for eager, graph in zip(featurizer.tokenize_with_offsets(OFFSET_TEXTS), traced(tf.constant(OFFSET_TEXTS))):
        assert eager.to_list() == graph.to_list()
