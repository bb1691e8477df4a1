"""Long records cut into passages the embedding model can read whole."""

from __future__ import annotations

from app.kernel.personal.passages import MAX_PASSAGES, MAX_TOKENS, estimate_tokens, key_of, passage_id, split


def test_a_short_record_is_one_passage():
    assert split("Ana went to the climbing gym") == ["Ana went to the climbing gym"]


def test_a_long_note_is_cut_at_sentences_with_one_sentence_of_overlap():
    text = " ".join(f"Sentence number {i} says something about the garden." for i in range(400))
    parts = split(text)
    assert len(parts) > 10 and all(estimate_tokens(p) <= MAX_TOKENS for p in parts)
    assert all(p.endswith(".") for p in parts)  # cut at sentence ends
    last_of_first = parts[0].rsplit(". ", 1)[-1]
    assert parts[1].startswith(last_of_first.rstrip(".") + ".")  # the overlap
    assert "Sentence number 399" in parts[-1]


def test_chinese_and_text_without_punctuation_are_cut_by_length():
    zh = split("钢琴" * 1500)
    assert len(zh) > 10 and all(estimate_tokens(p) <= MAX_TOKENS for p in zh)
    assert len(split("x" * 60_000)) <= MAX_PASSAGES  # the longest record stays within the ids


def test_passage_ids_name_their_record():
    assert passage_id(7, 0) == "7" and passage_id(7, 3) == "7#3"
    assert key_of("7") == key_of("7#3") == 7
