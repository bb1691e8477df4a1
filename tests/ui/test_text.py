"""The words the UI shows: models with their provider, upstream errors as the upstream's sentence."""

from __future__ import annotations

from app.kernel.canonical import ModelSpec
from app.ui.bridge import AutoSwap
from app.ui.widgets.text import auto_swap_sentence, in_words, model_label, model_label_for, outcome_words


def test_models_are_named_with_their_provider():
    a = ModelSpec(id="acc/acc-model", name="acc-model", provider="acc")
    b = ModelSpec(id="box/acc-model", name="acc-model", provider="box", display_name="Acc Model")
    assert model_label(a) == "acc-model · acc" and model_label(b) == "Acc Model · box"
    assert model_label_for("box/acc-model", [a, b]) == "Acc Model · box"
    assert model_label_for("gone/model", [a, b]) == "gone/model"  # unknown: the id, which names both


def test_upstream_json_reads_as_its_message():
    assert in_words('upstream error (500): {"error": {"message": "model overloaded", "code": 5}}') == (
        "upstream error (500): model overloaded"
    )
    assert in_words("""HTTP 502: b'{"detail": "no GPU left"}' [acc/m]""") == "HTTP 502: no GPU left [acc/m]"
    assert in_words('[{"error": {"message": "quota"}}]') == "quota"
    assert in_words("plain words {not json") == "plain words {not json"
    assert in_words("") == ""


def test_outcomes_and_automatic_swaps_in_words():
    assert outcome_words("upstream_timeout") == "the model's server took too long to answer"
    assert outcome_words("something_new") == "something new"
    notice = AutoSwap(alias="code", from_model="acc/a", to_model="acc/b", trigger="performance",
                      reason="", detail="", ts=0)
    text = auto_swap_sentence(notice, lambda m: m or "", name_alias=True)
    assert text == "Now serving acc/b in socket code — swapped automatically from acc/a because acc/a was answering too slowly."
    kernel_words = AutoSwap(alias="default", from_model="acc/a", to_model="acc/b", trigger="error",
                            reason="because acc/a failed 3 times in a row.", detail="", ts=0)
    assert auto_swap_sentence(kernel_words, lambda m: m or "").endswith("because acc/a failed 3 times in a row.")

    back = AutoSwap(alias="default", from_model="acc/b", to_model="acc/a", trigger="recovery",
                    reason="", detail="", ts=0)
    assert auto_swap_sentence(back, lambda m: m or "").endswith("because acc/a is healthy again.")
