"""A time budget becomes conversations and steps that fit it; a tiny real run stays within it."""

import time
from dataclasses import replace

import pytest

from cartridges.budget import EPOCHS, parse_duration, plan_for
from cartridges.config import CartridgeConfig
from cartridges.kv import corpus_tokens
from cartridges.synthesis import batch_bounds, synthesize
from tests.cartridges.cart_setup import TEXT, TINY
from tests.helpers.api import wait_for_job

DOC = ("The Zephyr protocol sends heartbeats every 7 seconds. Nodes that miss three heartbeats are "
       "marked dead and their shards move to the two nearest replicas. ") * 3


def test_plan_fills_the_budget_and_keeps_the_epoch_ratio():
    cfg = CartridgeConfig(batch_size=4)
    plan = plan_for(600, 30, per_conversation=2.0, step_s=4.0, config=cfg, probed=8)
    assert plan.estimate_s == pytest.approx(600, rel=0.05)
    assert plan.steps * cfg.batch_size == pytest.approx(EPOCHS * (plan.num_samples - plan.holdout), rel=0.1)
    assert 2 <= plan.holdout < plan.num_samples
    slower = plan_for(600, 30, per_conversation=4.0, step_s=4.0, config=cfg, probed=8)
    assert slower.num_samples < plan.num_samples  # a slower machine buys fewer conversations
    # a budget smaller than the probe still yields a runnable plan (and says it overruns)
    tiny = plan_for(5, 30, per_conversation=2.0, step_s=4.0, config=cfg, probed=8)
    assert tiny.num_samples >= 8 and tiny.steps >= 1 and tiny.estimate_s > 5


def test_synthesis_batches_start_with_the_probe():
    assert batch_bounds(20, 8, first_batch=2) == [(0, 2), (2, 10), (10, 18), (18, 20)]
    assert batch_bounds(20, 8) == [(0, 8), (8, 16), (16, 20)]  # no probe: full batches
    assert batch_bounds(1, 8, first_batch=2) == [(0, 1)]


def test_a_plan_trains_on_what_synthesis_made_in_its_time():
    cfg = CartridgeConfig(batch_size=4)
    plan = plan_for(600, 30, per_conversation=2.0, step_s=4.0, config=cfg, probed=2)
    assert plan.synthesis_end_s() == pytest.approx(30 + (plan.num_samples - 2) * 2.0)
    assert plan.apply(cfg).num_samples == plan.num_samples
    fewer = replace(plan, synthesized=10).apply(cfg)  # a busier machine: fewer conversations
    assert (fewer.num_samples, fewer.holdout, fewer.steps) == (10, 2, EPOCHS * 8 // 4)
    more = replace(plan, synthesized=201).apply(cfg)  # the probe overestimated: more, same epochs
    assert (more.num_samples, more.holdout) == (201, 25)
    assert more.steps * cfg.batch_size == EPOCHS * (201 - 25)


def test_synthesis_stops_at_its_deadline_but_not_below_the_minimum_and_resumes(lm, tmp_path):
    model, tok = lm
    ids = corpus_tokens(tok, TEXT)
    out, cfg = tmp_path / "synth", replace(TINY, num_samples=3, holdout=1, chunk_tokens=24,
                                           question_tokens=4, answer_tokens=4)
    late = time.monotonic()  # already past: only the batches below at_least run
    assert synthesize(model, tok, ids, cfg, out, first_batch=1, stop_at=late, at_least=1) == 1
    assert sorted(p.name for p in out.iterdir()) == ["00000.safetensors"]
    kept = (out / "00000.safetensors").stat().st_mtime_ns
    assert synthesize(model, tok, ids, cfg, out, first_batch=1) == 3
    assert len(list(out.iterdir())) == 3
    assert (out / "00000.safetensors").stat().st_mtime_ns == kept  # the first batch was not redone


def test_durations_parse():
    assert [parse_duration(x) for x in ("20m", "90s", "1.5h", "45")] == [1200, 90, 5400, 45]
    for bad in ("soon", "-5m", "0"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_budgeted_training_over_rest_honours_the_budget_and_serves_the_gain(live_server):
    c = live_server
    r = c.post("/v1/corpora", json={"name": "zb", "documents": [{"id": "z", "text": DOC}]})
    assert r.status_code == 201
    body = {"budget_seconds": 120, "p": 4, "chunk_tokens": 24, "question_tokens": 6, "answer_tokens": 6,
            "batch_size": 2}
    r = c.post("/v1/corpora/zb/cartridges", json=body)
    assert r.status_code == 202, r.text
    cid = r.json()["cartridge"]["id"]
    assert wait_for_job(c, r.json()["job"]["id"])["status"] == "succeeded"
    info = c.get(f"/v1/cartridges/{cid}").json()
    plan, t = info["plan"], info["training"]
    assert plan["budget_s"] == 120 and info["config"]["num_samples"] == plan["synthesized"] > 0
    assert plan["first_batch"] == 2  # a CPU probes with a small batch, kept as the run's first
    assert plan["estimate_s"] <= 120 * 1.2
    assert t["wall_seconds"] <= 120 * 1.2  # the run ends within the budget's +20%
    assert info["gain_over_init"] == t["gain_over_init"] is not None
    assert isinstance(info["warnings"], list) and (bool(info["warnings"]) == t["gain_within_noise"])
    r = c.post("/v1/corpora/zb/cartridges", json={"budget_seconds": -1})
    assert r.status_code in (400, 422)
