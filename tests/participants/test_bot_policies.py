"""Bot opinion sources and rating policies backed by models: persona opinions from the generation
backend, ratings by MiniLM embedding similarity and by a reward model. The word-overlap policy and the
question/Polis sources are exercised end to end in test_bots.py."""
from __future__ import annotations

import io
import random

import pytest
import torch
from django.core.management import CommandError, call_command

from analysis.reward.model import TINY, build_model, load_tokenizer, save_checkpoint
from analysis.reward.score import load_reward_model, score_matrix
from bots.policies import make_scorer, rate
from bots.sources import PersonaOpinions, opinion_source

QUESTION = "Should we remove all taxes on food and groceries?"
OPINION = "Taxes on bread, milk and vegetables hurt poor families the most, so food should not be taxed."
CANDIDATES = [
    {"id": 11, "text": "The city should build more cycle lanes and plant trees along the river."},
    {"id": 12, "text": "Groceries should be free of tax, because food taxes fall hardest on families with "
                       "little money."},
    {"id": 13, "text": "Football clubs should publish their accounts every year."},
]


@pytest.fixture
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_embedding_policy_ranks_the_statement_closest_to_the_bots_opinion_first(one_thread):
    ratings, ranking = rate(CANDIDATES, OPINION, "embedding", random.Random(0), question=QUESTION)
    assert ranking[0] == 12 and sorted(ranking) == [11, 12, 13]
    agreement = {r["candidate_id"]: r["agreement"] for r in ratings}
    assert agreement[12] > agreement[11] and agreement[12] > agreement[13]
    assert all(1 <= r["agreement"] <= 7 and 1 <= r["quality"] <= 7 for r in ratings)
    assert make_scorer("embedding") is make_scorer("embedding")  # the model is loaded once per process


def test_reward_policy_rates_with_the_reward_models_predicted_agreement(tmp_path, one_thread):
    model = build_model(TINY, seed=3)
    folder = save_checkpoint(model, load_tokenizer(TINY), tmp_path / "rm", {"config": {"max_length": 64}})
    ratings, ranking = rate(CANDIDATES, OPINION, f"reward:{folder}", random.Random(0), question=QUESTION)
    predicted = score_matrix(load_reward_model(folder), QUESTION, [OPINION], [c["text"] for c in CANDIDATES])[0]
    assert [r["agreement"] for r in ratings] == [max(1, min(7, round(p))) for p in predicted]
    assert ranking == [CANDIDATES[i]["id"] for i in sorted(range(3), key=lambda i: -predicted[i])]


def test_reward_policy_works_with_the_default_hybrid_model(tmp_path, one_thread):
    from analysis.reward.config import RewardConfig
    from analysis.reward.data import RatingRecord
    from analysis.reward.model import save_checkpoint as save
    from analysis.reward.train import train

    records = [RatingRecord(group_id=g, member_id=f"{g}-{m}", round=1, question=QUESTION, opinion=OPINION if m else
                            "Cycling in town should be safer.", candidate=c["text"],
                            agreement=(7 if (c["id"] == 12) == bool(m) else 2)) for g in range(4) for m in range(2)
               for c in CANDIDATES]
    result = train(RewardConfig(), records)
    folder = save(result.model, result.tokenizer, tmp_path / "hybrid", {"config": RewardConfig().to_dict()})
    ratings, ranking = rate(CANDIDATES, OPINION, f"reward:{folder}", random.Random(0), question=QUESTION)
    predicted = score_matrix(load_reward_model(folder), QUESTION, [OPINION], [c["text"] for c in CANDIDATES])[0]
    assert [r["agreement"] for r in ratings] == [max(1, min(7, round(p))) for p in predicted]
    assert ranking == [CANDIDATES[i]["id"] for i in sorted(range(3), key=lambda i: -predicted[i])]


def test_unknown_policies_and_missing_checkpoints_are_refused_clearly(tmp_path):
    with pytest.raises(ValueError, match="unknown rating policy"):
        make_scorer("psychic")
    with pytest.raises(ValueError, match="no reward model checkpoint folder"):
        make_scorer(f"reward:{tmp_path / 'nothing'}")
    with pytest.raises(ValueError, match="cannot write persona opinions"):
        opinion_source("persona", persona_backend="extractive")
    with pytest.raises(ValueError, match="'question', 'polis:DIR', 'persona' or 'hidden:SEED'"):
        opinion_source("poetry")


@pytest.mark.django_db
def test_run_bots_refuses_persona_opinions_without_a_writing_backend_and_bad_policies():
    from ..factories import make_study

    make_study(slug="ext", generation_backend="extractive")
    err = io.StringIO()
    with pytest.raises(CommandError, match="pass --persona-backend embedded or openai"):
        call_command("run_bots", "--study", "ext", "--participants", "1", "--opinions", "persona",
                     "--no-progress", stderr=err)
    with pytest.raises(CommandError, match="no trained reward model with that id"):
        call_command("run_bots", "--study", "ext", "--participants", "1", "--rating-policy", "reward:999",
                     "--no-progress", stderr=err)
    with pytest.raises(CommandError, match="--screening fail: study 'ext' asks no screening questions"):
        call_command("run_bots", "--study", "ext", "--participants", "1", "--screening", "fail",
                     "--no-progress", stderr=err)
    with pytest.raises(CommandError, match="invalid choice: 'maybe'"):
        call_command("run_bots", "--study", "ext", "--participants", "1", "--screening", "maybe",
                     "--no-progress", stderr=err)
    with pytest.raises(CommandError, match="unknown rating policy"):
        call_command("run_bots", "--study", "ext", "--participants", "1", "--rating-policy", "psychic",
                     "--server", "http://127.0.0.1:9", "--no-progress", stderr=err)


@pytest.mark.model
def test_persona_opinion_is_written_by_the_embedded_smollm2(one_thread):
    source = opinion_source("persona", persona_backend="embedded", persona_max_tokens=32)
    assert isinstance(source, PersonaOpinions)
    rng = random.Random(7)
    persona = source.persona(random.Random(7))
    text = source.opinion(QUESTION, rng)
    assert source.generated == 1, "the model's output was unusable and the fallback wrote the opinion"
    assert len(text.split()) >= 3 and text.strip() != QUESTION
    assert source.backend.model_id and "SmolLM2" in source.backend.model_id
    assert persona.split()[0] == "a" and "-year-old" in persona


async def test_page_loads_are_retried_while_the_server_is_away_then_give_up(monkeypatch):
    """The transport is scripted here; the real path (daphne killed with -9 and restarted under 100 bots) is
    tests/faults/test_asgi_kill.py."""
    import asyncio

    import httpx

    from bots.client import Bot, BotConfig

    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    calls = []

    def handler(request):
        calls.append(request.url.path)
        if len(calls) <= 2:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        return httpx.Response(200, text="ok")

    bot = Bot(0, BotConfig(server="http://127.0.0.1:1", study="s"), opinion_source("question"), random.Random(0),
              "run")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        response = await bot.http(client, "GET", "http://127.0.0.1:1/p/x/complete/")
        assert response.text == "ok" and bot.result.http_retries == 2 and len(calls) == 3


    def down(request):
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(down)) as client:
        with pytest.raises(httpx.ConnectError):
            await bot.http(client, "GET", "http://127.0.0.1:1/p/x/complete/", patience=0.0)


async def test_a_proxys_502_and_504_are_reloaded_but_the_apps_own_refusals_are_not(monkeypatch):
    import asyncio

    import httpx

    from bots.client import Bot, BotConfig

    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    script = [502, 504, 200]

    def proxy(request):
        return httpx.Response(script.pop(0), text="page")

    bot = Bot(0, BotConfig(server="http://127.0.0.1:1", study="s"), opinion_source("question"), random.Random(0),
              "run")
    async with httpx.AsyncClient(transport=httpx.MockTransport(proxy)) as client:
        response = await bot.http(client, "POST", "http://127.0.0.1:1/s/s/")
        assert response.status_code == 200 and bot.result.http_retries == 2 and script == []

    for status in (500, 503, 429, 403):
        calls = []

        def app(request, status=status, calls=calls):
            calls.append(status)
            return httpx.Response(status, text="refused")

        async with httpx.AsyncClient(transport=httpx.MockTransport(app)) as client:
            response = await bot.http(client, "GET", "http://127.0.0.1:1/s/s/")
        assert response.status_code == status and calls == [status]

    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(502))) as client:
        response = await bot.http(client, "GET", "http://127.0.0.1:1/s/s/", patience=0.0)
    assert response.status_code == 502  # out of patience: the last answer, for raise_for_status to report


async def _no_sleep(seconds):
    return None
