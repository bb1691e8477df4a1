"""Ranked search (the API's and the CLI's): hybrid retrieval, filters, score and passage, phrases,
time in the question, Chinese."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.kernel.errors import BadRequestError
from app.kernel.personal.service import Caller

from .conftest import CHAT, NOTES, needs_model

USER = Caller.user()
ANA = "Ana went to the climbing gym with her brother on Tuesday"
OTHERS = [
    "The quarterly report is due at the end of the month",
    "Bought a new gym bag and running shoes",
    "Call the dentist about the appointment",
]
CHINESE = [  # full-width punctuation is part of the test
    {"id": "zh-piano", "highlight": "我女儿的钢琴课在每周六上午十点，老师姓王。"},  # noqa: RUF001
    {"id": "zh-go", "highlight": "我们后端服务决定用 Go 语言重写，因为并发性能更好。"},  # noqa: RUF001
    {"id": "zh-trip", "highlight": "五一假期打算和家人去杭州西湖玩三天。"},
]


async def _seed(personal, caller=USER) -> None:
    await personal.add(
        [{"id": "ana", "highlight": ANA}, *({"id": f"o{i}", "highlight": t} for i, t in enumerate(OTHERS))],
        caller,
    )


async def test_a_question_finds_the_record_by_any_of_its_words_with_score_and_passage(personal):
    await _seed(personal)
    found = await personal.search(USER, text="When did Ana go to the climbing gym?", mode="fts")
    assert found["data"][0]["id"] == "ana"  # every word required found nothing (issue #23)
    top = found["data"][0]
    assert top["score"] == 1.0 and set(top["matched"]) == {"ana", "climbing", "gym"}
    assert top["passage"] == ANA
    # "gym" alone also matches the gym bag, ranked below: any word counts, more words rank higher
    ids = [d["id"] for d in found["data"]]
    assert ids.index("o1") > 0 and found["total"] == len(ids) == 2
    assert found["data"][1]["score"] < top["score"]


@needs_model
async def test_hybrid_ranking_is_the_default_and_finds_the_record_by_meaning(personal):
    await _seed(personal)
    await personal.wait_vectors()
    found = await personal.search(USER, text="When did Ana go to the climbing gym?")
    assert found["retrieval"] == "hybrid" and found["data"][0]["id"] == "ana"
    # no shared word at all: only the vectors can find it
    meaning = await personal.search(USER, text="bouldering with a sibling")
    assert meaning["data"][0]["id"] == "ana" and meaning["data"][0]["matched"] == []


async def test_filters_paging_and_access_hold_for_ranked_search(personal):
    now = datetime.now(UTC)
    await personal.add(
        [
            {
                "id": f"c{i}",
                "highlight": f"chess opening number {i}" + (" sicilian" if i % 2 else ""),
                "tag": ["chess"] if i < 4 else ["games"],
                "timestamp": (now - timedelta(days=i)).isoformat(),
                "access": "shared" if i % 2 else "private",
            }
            for i in range(6)
        ],
        NOTES,
    )
    page = await personal.search(NOTES, text="chess sicilian", limit=2, mode="fts")
    assert page["total"] == 6 and len(page["data"]) == 2 and page["next_offset"] == 2
    assert {d["id"] for d in page["data"]} <= {"c1", "c3", "c5"}  # both words rank first
    rest = await personal.search(NOTES, text="chess sicilian", limit=10, offset=2, mode="fts")
    assert {d["id"] for d in rest["data"]} | {d["id"] for d in page["data"]} == {f"c{i}" for i in range(6)}
    assert rest["next_offset"] is None
    tagged = await personal.search(NOTES, text="chess", tag="chess", mode="fts")
    assert {d["id"] for d in tagged["data"]} == {"c0", "c1", "c2", "c3"}
    recent = await personal.search(NOTES, text="chess", since=(now - timedelta(days=1, hours=1)).timestamp())
    assert {d["id"] for d in recent["data"]} == {"c0", "c1"}
    shared = await personal.search(CHAT, text="chess opening")
    assert {d["id"] for d in shared["data"]} == {"c1", "c3", "c5"}  # another app: shared ones only
    only = await personal.search(NOTES, text="chess", access="private", source="notes-app")
    assert {d["access"] for d in only["data"]} == {"private"}
    with pytest.raises(BadRequestError):
        await personal.search(NOTES, text="chess", mode="magic")


async def test_an_exact_phrase_is_required_verbatim(personal):
    await personal.add(
        [
            {"id": "p1", "highlight": "the red house on the hill"},
            {"id": "p2", "highlight": "the house was red and on a hill"},
        ],
        USER,
    )
    quoted = await personal.search(USER, text='"red house" hill')
    assert [d["id"] for d in quoted["data"]] == ["p1"]
    param = await personal.search(USER, phrase="house was red")
    assert [d["id"] for d in param["data"]] == ["p2"] and param["data"][0]["matched"] == ["house was red"]
    assert (await personal.search(USER, text='"red hill"'))["total"] == 0


async def test_a_time_in_the_question_filters_by_time(personal):
    now = datetime.now(UTC)
    await personal.add(
        [
            {
                "id": "y",
                "highlight": "lunch with Sam at the noodle bar",
                "timestamp": (now - timedelta(days=1)).isoformat(),
            },
            {
                "id": "old",
                "highlight": "lunch with Sam at the pizza place",
                "timestamp": (now - timedelta(days=40)).isoformat(),
            },
        ],
        USER,
    )
    found = await personal.search(USER, text="where did I have lunch yesterday")
    assert [d["id"] for d in found["data"]] == ["y"]
    assert found["time_range"]["phrase"] == "yesterday"
    only_time = await personal.search(USER, text="昨天")
    assert [d["id"] for d in only_time["data"]] == ["y"]


async def test_chinese_records_are_found_by_full_text(personal):
    await personal.add(CHINESE, USER)
    found = await personal.search(USER, text="钢琴课是什么时候", mode="fts")
    assert [d["id"] for d in found["data"]] == ["zh-piano"]
    assert "钢琴" in found["data"][0]["matched"]
    assert (await personal.search(USER, text="西湖", mode="fts"))["data"][0]["id"] == "zh-trip"
    assert (await personal.search(USER, text="Go 语言", mode="fts"))["data"][0]["id"] == "zh-go"
    assert (await personal.search(USER, phrase="钢琴课"))["total"] == 1
    assert (await personal.search(USER, phrase="钢琴老师"))["total"] == 0


@needs_model
async def test_chinese_question_ranks_the_piano_lesson_first(personal):
    await personal.add(CHINESE, USER)
    await personal.wait_vectors()
    found = await personal.search(USER, text="钢琴课是什么时候")
    assert found["data"][0]["id"] == "zh-piano"
    recalled = await personal.recall(USER, "钢琴课是什么时候", k=3)
    assert recalled[0]["id"] == "zh-piano"


async def test_a_long_note_is_found_by_its_passage(personal):
    filler = " ".join(f"Paragraph {i} is about the weather and the garden." for i in range(1200))
    note = filler[:25_000] + " The spare key is hidden under the blue flowerpot. " + filler[25_000:49_000]
    assert len(note) > 45_000
    await personal.add([{"id": "long", "highlight": "Notes from the summer", "note": note}], USER)
    found = await personal.search(USER, text="where is the spare key hidden?")
    top = found["data"][0]
    assert top["id"] == "long" and "spare key is hidden under the blue flowerpot" in top["passage"]
    assert len(top["passage"]) < 300


@needs_model
async def test_a_long_note_has_a_vector_per_passage_and_is_found_by_meaning(personal):
    filler = " ".join(f"Day {i}: the weather was mild and the garden needed water." for i in range(900))
    note = (
        filler[:24_000] + " The spare house key is hidden under the blue flowerpot. " + filler[24_000:48_000]
    )
    await personal.add(
        [{"id": "long", "highlight": "Summer diary", "note": note}, {"id": "short", "highlight": ANA}], USER
    )
    await personal.wait_vectors()
    assert personal.vectors.count() > 50  # one vector per passage, plus the short record's one
    found = await personal.search(USER, text="where did I leave the extra door key", mode="vector")
    assert found["data"][0]["id"] == "long"
    await personal.delete("long", USER)
    await personal.wait_vectors()
    assert personal.vectors.count() == 1  # every passage went with the record


needs_multilingual = pytest.mark.skipif(
    not __import__("app.kernel.personal.embed", fromlist=["x"]).model_present(
        __import__("app.kernel.personal.embed", fromlist=["x"]).model_dir_for("multilingual-e5-small")
    ),
    reason="the multilingual model is not installed: scripts/fetch_embedding_model.py --multilingual",
)


@needs_multilingual
async def test_the_multilingual_model_finds_chinese_by_meaning(personal):
    personal.set_setting("embedding_model", "multilingual")
    await personal.add(CHINESE, USER)
    await personal.wait_vectors()
    assert personal.embedder.model().name.startswith("multilingual-e5-small")
    found = await personal.search(USER, text="孩子学乐器的时间", mode="vector")  # no shared word
    assert found["data"][0]["id"] == "zh-piano"
    assert (await personal.search(USER, text="钢琴课是什么时候"))["data"][0]["id"] == "zh-piano"
