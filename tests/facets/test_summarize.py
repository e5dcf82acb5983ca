"""Facet summaries: quote grounding, JSON retry, the per-user store (incremental, zero LLM calls)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from copersona_kit import fake_llm, users  # noqa: E402

from personakit.facets import (PLACEHOLDER, FacetSchema, FacetSummarizer, FacetSummary, UserFacets,
                               facet_biased_fraction, quote_is_grounded)
from personakit.llm import CallableGenerator, StructuredOutputError
from personakit.types import ProfileItem, UserProfile

SCHEMA = FacetSchema(facets=[{"name": "Hobbies", "definition": "d", "values": "v"},
                             {"name": "Tone", "definition": "d", "values": "v"}])
TEXT = "Honestly, I think every child deserves a fair start in life, so I give when I can."


@pytest.mark.parametrize("quote", ["every child deserves a fair start", "Every child deserves a fair start!",
                                   "every child deserve a fair start", "so I give  when I can"])
def test_near_exact_quotes_are_accepted(quote):
    assert quote_is_grounded(quote, TEXT)


@pytest.mark.parametrize("quote", ["I donate to charity every single month", "children need a good beginning",
                                   "fair start", ""])
def test_invented_or_too_short_quotes_are_rejected(quote):
    assert not quote_is_grounded(quote, TEXT)


def _profile(text=TEXT, user="u"):
    return UserProfile(user_id=user, items=[ProfileItem(id="1", text=text)])


def test_retry_after_bad_json_then_good():
    replies = iter(["not json at all", '{"summary": "Generous.", "quotes": ["a fair start in life"], '
                                       '"reliability": "Strong"}'])
    chats = []
    gen = CallableGenerator(lambda chat: chats.append(chat) or next(replies))
    out = FacetSummarizer(gen, FacetSchema(facets=SCHEMA.facets[:1])).summarize([_profile()])
    f = out["u"].facets[0]
    assert (f.summary, f.quotes, f.reliability) == ("Generous.", ["a fair start in life"], "strong")
    assert len(chats) == 2 and "could not be used" in chats[1][-1]["content"]


def test_invented_quote_is_reasked_with_the_error_then_dropped_or_raised():
    bad = json.dumps({"summary": "s", "quotes": ["I volunteer at shelters weekly"], "reliability": "moderate"})
    chats = []
    gen = CallableGenerator(lambda chat: chats.append(chat) or bad)
    schema = FacetSchema(facets=SCHEMA.facets[:1])
    with pytest.raises(StructuredOutputError, match="does not occur") as err:
        FacetSummarizer(gen, schema, max_attempts=2).summarize([_profile()])
    assert "volunteer at shelters" in str(err.value)  # the raw reply is shown
    assert len(chats) == 2
    out = FacetSummarizer(gen, schema, ungrounded="drop").summarize([_profile()])
    assert out["u"].facets[0].quotes == [] and out["u"].facets[0].reliability == "moderate"
    out = FacetSummarizer(gen, schema, max_attempts=1, on_failure="placeholder").summarize([_profile()])
    assert out["u"].facets[0].reliability == "none" and out["u"].facets[0].summary == PLACEHOLDER


def test_weak_facets_get_the_placeholder():
    reply = json.dumps({"summary": "Maybe likes cats.", "quotes": [], "reliability": "weak"})
    f = FacetSummarizer(CallableGenerator(lambda c: reply), SCHEMA).summarize([_profile()])["u"].facets[0]
    assert f.summary == PLACEHOLDER and f.llm_summary == "Maybe likes cats." and f.text() == PLACEHOLDER


def test_store_makes_no_llm_calls_for_unchanged_users(tmp_path):
    calls: list = []
    profiles = users()
    s = FacetSummarizer(fake_llm(calls), SCHEMA, store=tmp_path / "store.jsonl", cache=tmp_path / "cache.jsonl")
    first = s.summarize(profiles)
    assert len(calls) == len(profiles) * len(SCHEMA) and s.last_stats.reused == 0
    calls.clear()
    changed = profiles[1].model_copy(update={"items": profiles[1].items + [ProfileItem(id="n", text="i love cats")]})
    new_user = UserProfile(user_id="u9", items=[ProfileItem(id="a", text="i work at night")])
    s2 = FacetSummarizer(fake_llm(calls), SCHEMA, store=tmp_path / "store.jsonl")  # a new process: reads the store
    again = s2.summarize([profiles[0], changed, profiles[2], profiles[3], new_user])
    assert s2.last_stats.reused == 3 and s2.last_stats.summarized == 2
    assert len(calls) == 2 * len(SCHEMA)
    assert all("i love to bake" not in json.dumps(c) for c in calls)  # u0 never re-asked
    assert again["u0"] == first["u0"]


def test_facet_biased_fraction():
    def uf(*levels):
        return UserFacets(user_id="x", content_hash="", facets=[FacetSummary(facet=str(i), summary="s", reliability=r)
                                                                for i, r in enumerate(levels)])
    assert facet_biased_fraction([uf("strong", "strong"), uf("strong", "moderate"), uf("none", "weak")]) == pytest.approx(2 / 3)
    assert facet_biased_fraction([]) == 0.0


def test_evidence_reliability_ranks_the_users_facets_by_their_own_messages():
    from personakit.facets import evidence_reliability

    axes = {"cat": 0, "cash": 1, "rain": 2, "song": 3}

    def enc(texts):
        out = np.full((len(texts), 4), 0.01)
        for i, t in enumerate(texts):
            for w, j in axes.items():
                out[i, j] += t.count(w)
        return out

    facets = FacetSchema(facets=[{"name": n, "definition": n, "values": "v"} for n in ("cat", "cash", "rain", "song")])
    levels = evidence_reliability(["my cat", "cat cat cash", "rain and cash"], facets.facets, enc)
    assert levels == [3, 2, 1, 0]  # cat strongest, then cash, rain; song has no support
    assert evidence_reliability([], facets.facets, enc) == [0, 0, 0, 0]
    gen = CallableGenerator(lambda c: json.dumps({"summary": "s", "quotes": [], "reliability": "none"}))
    s = FacetSummarizer(gen, facets, reliability="evidence", encoder=enc)
    user = UserProfile(user_id="u", items=[ProfileItem(id=str(i), text=t) for i, t in
                                           enumerate(["my song", "song", "cash song", "a cat"])])
    out = s.summarize([user])["u"]
    assert out.reliability == [2, 1, 0, 3]  # the LLM said none everywhere; the messages decide
    assert out.facets[0].summary == "s" and out.facets[1].summary == out.facets[2].summary == PLACEHOLDER
    with pytest.raises(ValueError, match="needs an encoder"):
        FacetSummarizer(gen, facets, reliability="evidence")
    assert FacetSummarizer(gen, facets).store_key(user) != s.store_key(user)
