"""Labelling against real sockets: ChatUpstream (FAKE canned answers over real HTTP) as the tiers,
the FAKE judge engine; bad upstreams (down, 500, slow, malformed JSON); resume; inputs; cost."""
from __future__ import annotations

import json

import pytest

from chat_upstream import ChatUpstream, tiers_at
from servers import FakeUpstream, free_port

from route_switch.labeling.label import read_progress
from route_switch.core.decision import Decision
from route_switch.core.errors import ConfigError, InputError
from route_switch.core.evalset import load_evalset
from route_switch.labeling import label, read_queries
from route_switch.labeling.calls import ChatCaller, TierCallError
from route_switch.labeling.judge import Judge, JudgeError, JudgeProgram
from route_switch.core.routelog import RouteLog

FAKE_JUDGE = {"kind": "fake"}
QUERIES = ["What is 6 * 7?", "Name a prime number above 10.", "Spell 'cat' backwards.", "What is 2 + 2?"]


def quiet(*a):
    pass


def run(tmp_path, url, queries=QUERIES, **kw):
    kw.setdefault("cache_dir", tmp_path / "cache")
    kw.setdefault("echo", quiet)
    return label(queries, tiers_at(url), judge_lm_cfg=kw.pop("judge", FAKE_JUDGE), out_path=tmp_path / "ev.jsonl", **kw)


def test_labels_scores_and_costs(tmp_path):
    with ChatUpstream() as up:
        ev = run(tmp_path, up.url)
        assert up.hits == 3 * len(QUERIES)
        assert sorted(up.seen)[0][0] == "large-model"  # the served name (upstream_model) is sent
    assert ev.models == ["small", "medium", "large"] and len(ev) == len(QUERIES)
    # FAKE judge: small drops 3 of ~10 words -> acceptable, medium drops 1 -> acceptable, large = 1.0
    assert (ev.scores[:, 2] == 1.0).all() and set(ev.scores[:, 0]) <= {0.0, 0.5}
    # cost = usage x prices: the canned server reports words as tokens
    q = ev.prompts[0]
    full = f"The answer to '{q}' is forty two because of reasons."
    n_in, n_out = len(q.split()), len(full.split())
    assert ev.costs[0, 2] == pytest.approx((n_in * 3.0 + n_out * 6.0) / 1e6)
    again = load_evalset(tmp_path / "ev.jsonl", models=["small", "medium", "large"])  # ready for optimize/evaluate
    assert again.scores.tolist() == ev.scores.tolist()


def test_dry_run_prints_estimate_and_calls_nothing(tmp_path):
    out = []
    with ChatUpstream() as up:
        assert run(tmp_path, up.url, dry_run=True, echo=out.append) is None
        assert up.hits == 0
    assert "12 tier calls" in out[0] and "$" in out[0] and "8 judge calls" in out[0]
    assert not (tmp_path / "ev.jsonl").exists()


def test_resume_after_interruption_makes_no_repeated_calls(tmp_path, monkeypatch):
    real_judge = Judge.judge
    seen = {"n": 0}

    def flaky(self, *a):
        seen["n"] += 1
        if seen["n"] == 4:
            raise KeyboardInterrupt  # the operator hits Ctrl-C in the middle of the judge phase
        return real_judge(self, *a)

    with ChatUpstream() as up:
        monkeypatch.setattr(Judge, "judge", flaky)
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path, up.url, concurrency=1)
        done_first = read_progress(tmp_path / "ev.jsonl.progress.jsonl")
        assert 0 < len(done_first) < len(QUERIES)
        hits = up.hits
        assert hits == 3 * len(QUERIES)  # every answer was fetched (phase 1) and cached
        monkeypatch.setattr(Judge, "judge", real_judge)
        ev = run(tmp_path, up.url, concurrency=1)
        assert up.hits == hits  # no model called twice: answers come from the cache
    lines = (tmp_path / "ev.jsonl.progress.jsonl").read_text().splitlines()
    qids = [json.loads(x)["qid"] for x in lines]
    assert len(qids) == len(set(qids)) == len(QUERIES)  # nothing labelled twice
    assert len(ev) == len(QUERIES) and ev.meta["labeling"]["resumed"] == len(done_first)


def test_retries_5xx_then_succeeds(tmp_path):
    with ChatUpstream(fail_next=2) as up:
        ev = run(tmp_path, up.url, queries=QUERIES[:1], retries=3, concurrency=1)
        assert up.hits == 3 + 2 and len(ev) == 1


def test_429_waits_as_retry_after_says_then_succeeds(tmp_path):
    with ChatUpstream(limit_next=1) as up:
        caller = ChatCaller(tmp_path / "c", timeout_s=5, retries=2)
        r = caller.call_tier(tiers_at(up.url)[0], [{"role": "user", "content": "hi"}])
        assert r.text.startswith("The answer") and up.hits == caller.calls == 2
        assert up.times[1] - up.times[0] >= 0.9  # the client waited as the server asked (Retry-After: 1)


def test_429_without_retries_fails_at_once_naming_the_status(tmp_path):
    with ChatUpstream(limit_next=5) as up:
        caller = ChatCaller(tmp_path / "c", timeout_s=5, retries=0)
        with pytest.raises(TierCallError, match="HTTP 429 after 1 attempt"):
            caller.call_tier(tiers_at(up.url)[0], [{"role": "user", "content": "hi"}])
        assert up.hits == 1


def test_upstream_down_is_reported_not_guessed(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(InputError, match="no query could be labelled.*APIConnectionError"):
        run(tmp_path, url, retries=1)
    assert not (tmp_path / "ev.jsonl").exists()


@pytest.mark.parametrize("mode, match", [("500", "HTTP 500 after 2 attempt"), ("malformed", "malformed response"),
                                         ("slow", "APITimeoutError after 2 attempt")])
def test_bad_upstreams_on_a_real_socket(tmp_path, mode, match):
    with FakeUpstream(mode, delay=3.0) as up:
        caller = ChatCaller(tmp_path / "c", timeout_s=0.5, retries=1)
        with pytest.raises(TierCallError, match=match):
            caller.call_tier(tiers_at(up.url)[0], [{"role": "user", "content": "hi"}])
        assert up.hits == (1 if mode == "malformed" else 2)  # malformed is not retried
        assert caller.cache.get  # nothing cached for a failure
        assert len(caller.cache) == 0


def test_one_bad_tier_leaves_the_query_unlabelled(tmp_path):
    with ChatUpstream() as good, FakeUpstream("500") as bad:
        tiers = tiers_at(good.url)
        tiers[1].api_base = bad.url
        out = []
        with pytest.raises(InputError):
            label(QUERIES[:2], tiers, judge_lm_cfg=FAKE_JUDGE, out_path=tmp_path / "ev.jsonl", retries=0,
                  cache_dir=tmp_path / "c", echo=out.append)
        assert any("failed" in line and "HTTP 500" in line for line in out)


def test_invalid_verdict_is_never_guessed(tmp_path):
    with ChatUpstream() as up:
        out = []
        with pytest.raises(InputError):
            run(tmp_path, up.url, judge={"kind": "fake", "mode": "garbage"}, echo=out.append)
    assert any("JudgeError" in line for line in out)
    j = Judge({"kind": "fake", "mode": "garbage"})
    with pytest.raises(JudgeError):
        j.judge("q", "a", "b")


def test_identical_answers_skip_the_judge_and_gold_agreement(tmp_path):
    def answer(model, messages):
        q = messages[-1]["content"]
        good = {"What is 6 * 7?": "42", "What is 2 + 2?": "4"}[q]
        return "I do not know" if model.startswith("small") and "6" in q else good

    with ChatUpstream(answer=answer) as up:
        ev = run(tmp_path, up.url, queries=[{"query": "What is 6 * 7?", "answer": "42"},
                                            {"query": "What is 2 + 2?", "answer": "4"}])
    s = ev.meta["labeling"]
    assert s["judge_calls"] == 1  # only small's wrong answer needed the judge
    by_prompt = dict(zip(ev.prompts, ev.scores.tolist()))
    assert by_prompt == {"What is 6 * 7?": [0.0, 1.0, 1.0], "What is 2 + 2?": [1.0, 1.0, 1.0]}
    assert s["judge_agreement"]["agreement"] == 1.0 and s["judge_agreement"]["top_tier_exact_match"] == 1.0


def test_inputs_csv_jsonl_and_route_log(tmp_path):
    (tmp_path / "q.csv").write_text("prompt,task,answer\nWhat is 1+1?,math,2\nWhat is 1+1?,math,2\nHi there,chat,\n")
    rows = read_queries(tmp_path / "q.csv")
    assert [r["query"] for r in rows] == ["What is 1+1?", "Hi there"] and rows[0]["answer"] == "2"
    assert rows[1]["answer"] is None and rows[0]["task"] == "math"
    (tmp_path / "q.jsonl").write_text('{"query": "a b c"}\n{"query": "d e f"}\n')
    assert len(read_queries(tmp_path / "q.jsonl")) == 2
    (tmp_path / "bad.csv").write_text("text\nhello\n")
    with pytest.raises(InputError, match="bad.csv.*'query' or 'prompt'"):
        read_queries(tmp_path / "bad.csv")
    d = Decision(1, "small", "small", "estimator", "t")
    full = RouteLog(tmp_path / "full" / "routes.jsonl", privacy="full")
    full.write("What is 1+1?", d)
    full.close()
    assert [r["query"] for r in read_queries(tmp_path / "full" / "routes.jsonl")] == ["What is 1+1?"]
    hashed = RouteLog(tmp_path / "hash" / "routes.jsonl", privacy="hash")
    hashed.write("secret question", d)
    hashed.close()
    with pytest.raises(InputError, match="privacy: full"):
        read_queries(tmp_path / "hash" / "routes.jsonl")


def test_tier_config_errors(tmp_path):
    tiers = tiers_at("http://127.0.0.1:9/v1")
    tiers[0].price_in = None
    with pytest.raises(ConfigError, match="tiers\\[0\\].price_in"):
        label(QUERIES, tiers, judge_lm_cfg=FAKE_JUDGE, out_path=tmp_path / "x.jsonl", echo=quiet)
    tiers = tiers_at("http://127.0.0.1:9/v1")
    tiers[2].api_base = None
    with pytest.raises(ConfigError, match="api_base"):
        label(QUERIES, tiers, judge_lm_cfg=FAKE_JUDGE, out_path=tmp_path / "x.jsonl", echo=quiet)


def test_judge_program_is_reviewable_and_validated(tmp_path):
    prog = JudgeProgram.from_yaml()
    assert prog.verdicts == {"equivalent": 1.0, "acceptable": 0.5, "worse": 0.0} and prog.demos
    bad = tmp_path / "judge.yaml"
    bad.write_text("name: j\ninstruction: grade\nverdicts: {good: 1.0, bad: 0.0}\n"
                   "demos: [{query: q, reference_answer: a, candidate_answer: b, verdict: maybe}]\n")
    with pytest.raises(Exception, match="demos\\[0\\].verdict"):
        JudgeProgram.from_yaml(bad)


def test_judge_grammar_matches_the_adapter_layout():
    from route_switch.labeling.judge import verdict_grammar

    g = verdict_grammar(["equivalent", "worse"])
    assert g.startswith('root ::= "[[ ## verdict ## ]]\\n" ("equivalent" | "worse")') and "completed" in g
