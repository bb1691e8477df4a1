"""What the full-text index sees: CJK as bigrams, safe queries, the words and passage that matched."""

from __future__ import annotations

from app.kernel.personal.textindex import Query, best_passage, fts_query, index_text, matched_words


def test_cjk_runs_become_bigrams_and_latin_text_is_untouched():
    assert index_text("钢琴课 on Saturday") == " 钢琴 琴课  on Saturday"
    assert index_text("plain words") == "plain words"
    assert index_text("猫") == " 猫 "


def test_queries_quote_every_word_and_drop_question_words():
    assert fts_query("钢琴课是什么时候", any_word=True) == '"钢琴" OR "琴课"'
    assert (
        fts_query("When did Ana go to the climbing gym?", any_word=True)
        == '"ana" OR "go" OR "climbing" OR "gym"'
    )
    # an operator inside quotes is a phrase, quoted again; nothing reaches FTS5 unquoted
    assert fts_query('x" OR "y NEAR(', any_word=False) == '"or" AND "near"'
    assert fts_query("猫在哪里", any_word=True) == '"猫在"'
    assert fts_query("猫呢", any_word=True) == '"猫"*'  # a lone character: the bigrams it starts


def test_phrases_are_required_and_the_other_words_rank():
    q = Query.parse('"climbing gym" Ana')
    assert q.phrases == ["climbing gym"] and q.words == ["ana"]
    assert fts_query('"climbing gym" Ana', any_word=True) == '"climbing gym" AND ("climbing gym" OR "ana")'
    assert fts_query("「钢琴课」", any_word=False) == '"钢琴 琴课"'


def test_matched_words_and_the_best_passage():
    q = Query.parse("where is the spare key?")
    text = "garden " * 200 + "The spare key is under the pot. " + "garden " * 200
    assert matched_words(q, text) == ["spare", "key"]
    passage = best_passage(q, text)
    assert "spare key is under the pot" in passage and len(passage) <= 242
    assert passage.startswith("…") and passage.endswith("…")
