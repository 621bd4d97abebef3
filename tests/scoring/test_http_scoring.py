"""Scoring over the loopback server: vLLM `prompt_logprobs` and `echo` completions, faults, gate, budget, ledger."""

from __future__ import annotations

import asyncio

import pytest

from synthdistill.errors import ConfigError, PolicyDenied
from synthdistill.scoring import ScoringIncomplete, probe_scoring, score_async, score_samples
from synthdistill.scoring.probe import PROBE_SAMPLE
from synthdistill.scoring.store import ScoreStore
from tests.openai_server import FakeOpenAIServer, prompt_token_logprob, split_tokens
from tests.scoring.scoring_fixtures import refuse_training_use, samples, scoring_project


def _expected_positions(text: str, first: int) -> list[float]:
    return [prompt_token_logprob(first + j) for j in range(len(split_tokens(text)))]


def test_vllm_prompt_logprobs_give_the_answer_tokens_with_top_k(tmp_path):
    with FakeOpenAIServer(dialect="vllm") as server:
        config = scoring_project(tmp_path, server.base_url)
        given = samples(3, per_prompt=2)
        scored = score_samples(config, given)
        stats = server.stats()
        body = stats["last_request"]["body"]
    assert stats["requests"] == 6
    assert body["prompt_logprobs"] == 5 and body["add_generation_prompt"] is False and body["max_tokens"] == 1
    assert body["messages"][-1]["role"] == "assistant"
    assert [s.score_key for s in scored] == [s.score_key for s in given]
    for sample, score in zip(given, scored):
        lp = score.logprobs
        assert "".join(lp.tokens) == sample.text and lp.tokens == split_tokens(sample.text)
        # <|user|> + question tokens + <|end|> + <|assistant|> come first
        first = 1 + len(split_tokens(sample.messages[0].content)) + 2
        assert lp.token_logprobs == _expected_positions(sample.text, first)
        assert all(len(row) == 5 and row[0] == token for row, token in zip(lp.top_tokens, lp.tokens))
        assert lp.token_ids is not None and lp.top_ids is not None
        assert score.endpoint == server.base_url.split("//")[1].split("/")[0]
        assert score.model_answered == "fake-model" and score.attempts == 1
        assert score.prompt_tokens_scored == first + len(lp.tokens) + 1


def test_an_ended_sample_scores_the_end_of_turn_token_last(tmp_path):
    with FakeOpenAIServer(dialect="vllm") as server:
        config = scoring_project(tmp_path, server.base_url)
        [score] = score_samples(config, samples(1, ended=True))
    assert score.logprobs.tokens[-1] == "<|end|>" and "".join(score.logprobs.tokens[:-1]) == score.text


def test_echo_completions_score_the_text_after_the_rendered_prompt(tmp_path):
    with FakeOpenAIServer(dialect="together") as server:
        config = scoring_project(
            tmp_path, server.base_url, teacher={"api_style": "together", "endpoint": "completions"}
        )
        given = samples(2)
        scored = score_samples(config, given)
        body = server.stats()["last_request"]["body"]
    assert body["echo"] is True and body["max_tokens"] == 0 and body["logprobs"] == 5
    assert body["prompt"] == given[-1].messages[0].content + given[-1].text
    for sample, score in zip(given, scored):
        first = len(split_tokens(sample.messages[0].content))
        assert score.logprobs.tokens == split_tokens(sample.text)
        assert score.logprobs.token_logprobs == _expected_positions(sample.text, first)
        assert [len(r) for r in score.logprobs.top_logprobs] == [5] * len(score.logprobs.tokens)
        assert score.style == "completions-echo"


def test_echo_over_chat_needs_the_teachers_chat_template(tmp_path, smollm2_dir):
    with FakeOpenAIServer(dialect="together") as server:
        config = scoring_project(tmp_path, server.base_url, teacher={"api_style": "together"})
        with pytest.raises(ConfigError, match="set teacher.tokenizer"):
            score_samples(config, samples(1))
        assert server.stats()["requests"] == 0
        config = scoring_project(
            tmp_path,
            server.base_url,
            teacher={"api_style": "together", "tokenizer": "HuggingFaceTB/SmolLM2-135M-Instruct"},
        )
        given = samples(1)
        [score] = score_samples(config, given)
        prompt = server.stats()["last_request"]["body"]["prompt"]
    assert prompt.startswith("<|im_start|>") and prompt.endswith(given[0].text + "<|im_end|>\n")
    # the fake server splits at whitespace: the answer's first word is cut from "assistant\n"
    assert "".join(score.logprobs.tokens) == given[0].text


def test_faults_are_retried_and_each_sample_scored_once(tmp_path):
    faults = ["429", "503", "drop", "malformed", "no-logprobs"]
    with FakeOpenAIServer(dialect="vllm", fault_rate=0.3, fault_kinds=faults, retry_after=0.05, seed=3) as server:
        config = scoring_project(tmp_path, server.base_url)
        result = asyncio.run(score_async(config, samples(10, per_prompt=2)))
        stats = server.stats()
    summary = result.summary
    assert summary.scored == 20 and summary.failed == 0 and len(result.scored) == 20
    injected = {k: v for k, v in stats["by_outcome"].items() if k != "ok"}
    assert sum(injected.values()) > 0
    assert summary.requests_sent == stats["requests"] == 20 + sum(injected.values())
    with ScoreStore(config.layout.scores) as store:
        assert store.counts() == {"done": 20, "failed": 0}


def test_timeouts_are_retried(tmp_path):
    with FakeOpenAIServer(dialect="vllm", schedule=["slow", "slow"], slow_s=6.0) as server:
        config = scoring_project(tmp_path, server.base_url, teacher={"timeout_s": 2})
        result = asyncio.run(score_async(config, samples(2)))
    assert result.summary.errors_by_kind == {"timeout": 2} and result.summary.scored == 2


def test_stored_scores_are_returned_without_sending(tmp_path):
    with FakeOpenAIServer(dialect="vllm") as server:
        config = scoring_project(tmp_path, server.base_url)
        first = score_samples(config, samples(3))
        again = asyncio.run(score_async(config, samples(4)))
        stats = server.stats()
    assert stats["requests"] == 4  # 3, then only the new one
    assert again.summary.already_scored == 3 and again.summary.scored == 1
    assert again.scored[:3] == first
    # another checkpoint's samples are other samples: scored anew
    with FakeOpenAIServer(dialect="vllm") as server:
        config = scoring_project(tmp_path, server.base_url)
        score_samples(config, samples(1, checkpoint="round-0002"))
        assert server.stats()["requests"] == 1


def test_failures_are_kept_and_rescored_by_the_next_run(tmp_path):
    with FakeOpenAIServer(dialect="vllm", fail_first_n_per_prompt=3, fail_kinds=["503"]) as server:
        config = scoring_project(tmp_path, server.base_url, teacher={"max_retries": 1})
        with pytest.raises(ScoringIncomplete, match=r"2 of 2 samples could not be scored .*503 ×4"):
            score_samples(config, samples(2))
        with ScoreStore(config.layout.scores) as store:
            assert store.counts() == {"done": 0, "failed": 2}
        scored = score_samples(config, samples(2))  # attempts 3 fail, 4 answers
    assert len(scored) == 2 and all(s.attempts == 2 for s in scored)


def test_a_refused_use_sends_nothing(tmp_path):
    with FakeOpenAIServer(dialect="vllm") as server:
        config = scoring_project(tmp_path, server.base_url)
        refuse_training_use(tmp_path)
        with pytest.raises(PolicyDenied):
            score_samples(config, samples(2))
        with pytest.raises(PolicyDenied):
            probe_scoring(config)
        assert server.stats()["requests"] == 0
    assert not config.layout.scores.exists()


@pytest.mark.parametrize(
    ("teacher", "says"),
    [
        ({"base_url": "https://api.openai.com/v1", "model": "fake-model"}, "api.openai.com returns no prompt logprobs"),
        ({"base_url": "https://api.anthropic.com/v1"}, "api.anthropic.com returns no prompt logprobs"),
        ({"backend": "openai-batch", "base_url": "https://api.openai.com/v1"}, "openai-batch backend"),
    ],
)
def test_apis_without_prompt_logprobs_are_refused_up_front(tmp_path, teacher, says):
    config = scoring_project(tmp_path, "http://127.0.0.1:9/v1", teacher=teacher)
    for call in (lambda: score_samples(config, samples(1)), lambda: probe_scoring(config)):
        with pytest.raises(ConfigError, match=says) as caught:
            call()
        assert caught.value.exit_code == 2


def test_the_probe_reports_what_the_server_returns(tmp_path):
    with FakeOpenAIServer(dialect="vllm") as server:
        probe = probe_scoring(scoring_project(tmp_path, server.base_url))
        assert server.stats()["requests"] == 1
    assert probe.style == "vllm-prompt-logprobs" and probe.top_k == 5 and probe.requested_top_k == 5
    assert probe.tokens == len(split_tokens(PROBE_SAMPLE.text)) and probe.token_ids


def test_the_probe_names_what_the_server_lacks(tmp_path):
    with FakeOpenAIServer(dialect="vllm", rates={"no-logprobs": 1.0}) as server:
        config = scoring_project(tmp_path, server.base_url, teacher={"max_retries": 0})
        with pytest.raises(ConfigError, match="no prompt_logprobs in the response"):
            probe_scoring(config)
        server.configure(rates={}, prompt_logprobs_cap=3)
        with pytest.raises(ConfigError, match=r"top-k 3 < requested 5"):
            probe_scoring(config)
        server.configure(prompt_logprobs_cap=None, rates={"400": 1.0})
        with pytest.raises(ConfigError, match=r"refused a scoring request: .*HTTP 400"):
            probe_scoring(config)


def test_the_budget_counts_prompt_tokens_scored_and_stops_cleanly(tmp_path):
    pricing = {"models": [{"model": "fake-model", "input_per_million": 1_000_000, "output_per_million": 0}]}
    with FakeOpenAIServer(dialect="vllm") as server:
        config = scoring_project(
            tmp_path, server.base_url, teacher={"max_concurrency": 1}, harvest={"budget_usd": 150}, pricing=pricing
        )
        with pytest.raises(ScoringIncomplete, match="harvest.budget_usd"):
            score_samples(config, samples(10))
        sent = server.stats()["requests"]
    with ScoreStore(config.layout.scores) as store:
        tokens, _ = store.usage_totals()
        assert store.counts()["done"] == sent > 0
    assert tokens <= 150  # $1 a token: never past the budget


class _Events:
    """An observer that keeps every event, as the harvest's progress display receives them."""

    def __init__(self):
        self.events: list[tuple] = []

    def planned(self, total, already_done):
        self.events.append(("planned", total, already_done))

    def answered(self, record):
        self.events.append(("answered", record.score_key))

    def failed(self, kind):
        self.events.append(("failed", kind))

    def retrying(self, kind):
        self.events.append(("retrying", kind))


def test_progress_events_reach_the_observer_and_the_harvest_progress_display(tmp_path, capsys):
    from synthdistill.cli.progress import HarvestProgress

    with FakeOpenAIServer(dialect="vllm", schedule=["503", "429"], retry_after=0.01) as server:
        config = scoring_project(tmp_path, server.base_url, teacher={"max_concurrency": 1})
        events = _Events()
        given = samples(3)
        score_samples(config, given[:2], observer=events)
        with HarvestProgress(every_s=60) as progress:
            score_samples(config, given, observer=progress)
            progress.report_line()
    assert events.events[0] == ("planned", 2, 0)
    assert sorted(e for e in events.events[1:] if e[0] == "retrying") == [("retrying", "429"), ("retrying", "503")]
    assert sorted(e[1] for e in events.events if e[0] == "answered") == sorted(s.score_key for s in given[:2])
    assert progress.total == 3 and progress.already_done == 2 and progress.answered_count == 1
    assert "harvest: 3/3 done (1 answered, 0 failed" in capsys.readouterr().err


def test_an_answer_is_found_where_tokens_split_a_character():
    from synthdistill.scoring.http import answer_logprobs, locate_answer

    # byte-level BPE decoded one token at a time: the emoji's halves are spelled with U+FFFD
    pieces = ["<|assistant|>", " Sky", " \ufffd", "\ufffd\ufffd", " ok", "<|end|>"]
    positions = [(p, i, -0.1 * i, [(p, i, -0.1 * i), ("alt", 99, -5.0)]) for i, p in enumerate(pieces)]
    span = locate_answer(positions, " Sky 🌤 ok", "host")
    assert span == (len("<|assistant|>"), len("".join(pieces[:-1])))
    scored = answer_logprobs(positions, span, True, 2)
    assert scored.tokens == pieces[1:]  # the answer's pieces as the server spelled them, then the end of turn
    assert scored.token_ids == [1, 2, 3, 4, 5] and scored.top_ids[0] == [1, 99]
    with pytest.raises(Exception, match="do not spell the sample's text"):
        locate_answer(positions, " Sea", "host")
