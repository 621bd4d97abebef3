"""The harvest's streamed plan: counts, the pending requests again in order, 8 bytes kept per pending request."""

from __future__ import annotations

import json

import pytest

from synthdistill.cli import main
from synthdistill.config import load_config
from synthdistill.errors import PackError
from synthdistill.harvest_plan import PendingQueue, RequestPlan, key_number, plan_requests
from synthdistill.packs import configured_prompt_stream, configured_prompts
from synthdistill.shards import Shard
from synthdistill.store import HarvestStore
from tests.harvest_fixtures import question, write_pack, write_project
from tests.openai_server import FakeOpenAIServer
from tests.records_fixtures import make_record


def _answer(store: HarvestStore, key: str) -> None:
    store.put_done(make_record().model_copy(update={"request_key": key}))


def test_the_plan_counts_what_the_ledger_holds_and_gives_the_rest_in_plan_order(tmp_path):
    config = load_config(write_project(tmp_path, "http://127.0.0.1:9/v1", 40, harvest={"samples_per_prompt": 2}))
    keys = [item.request.request_key for item in plan_requests(config, configured_prompts(config))]
    assert len(keys) == 80
    config.layout.ledger.parent.mkdir(parents=True)
    with HarvestStore(config.layout.ledger) as store:
        for key in keys[::3]:  # 27 answered
            _answer(store, key)
        store.put_failed(keys[1], "p", "tiny", 1, "server", "boom", 3)  # a failure is still to send
        plan = RequestPlan.make(config, done_among=store.done_among)
    assert (plan.prompts, plan.requests, plan.held, plan.to_send) == (40, 80, 27, 53)
    assert plan.pending_numbers.nbytes == 8 * 53  # all it keeps of the requests
    pending = [key for i, key in enumerate(keys) if i % 3]
    assert [item.request.request_key for item in plan.pending()] == pending
    assert [item.request.request_key for item in plan.pending()] == pending  # a second walk gives them again

    # a shard and a limit: the share of the first 10 prompts' requests, none held in a fresh plan
    shard = Shard.parse("2/3")
    limited = RequestPlan.make(config, limit=10, shard=shard)
    expected = [key for key in keys[:20] if shard.has(key)]
    assert (limited.prompts, limited.requests, limited.held) == (10, len(expected), 0)
    assert 0 < len(expected) < 20
    assert [item.request.request_key for item in limited.pending()] == expected


def test_the_prompt_stream_equals_the_loaded_prompts_across_packs_and_limits(tmp_path):
    path = write_project(tmp_path, "http://127.0.0.1:9/v1", 5)
    write_pack(tmp_path / "prompts" / "more", [f"More {i}?" for i in range(4)], name="more")
    text = path.read_text().replace("- prompts/tiny", "- prompts/tiny\n  - prompts/more")
    path.write_text(text)
    config = load_config(path)
    for limit in (None, 3, 5, 7, 100):
        streamed = [p.prompt_id for p in configured_prompt_stream(config, limit)]
        assert streamed == [p.prompt_id for p in configured_prompts(config, limit)], limit
    assert len(list(configured_prompt_stream(config))) == 9


def test_a_repeated_prompt_or_a_broken_row_fails_the_plan_as_the_pack_loader_words_it(tmp_path):
    path = write_project(tmp_path, "http://127.0.0.1:9/v1", 3)
    rows = tmp_path / "prompts" / "tiny" / "rows.jsonl"
    rows.write_text(rows.read_text() + json.dumps({"q": question(0)}) + "\n")  # line 4 repeats line 1
    config = load_config(path)
    with pytest.raises(PackError) as caught:
        RequestPlan.make(config)
    assert (caught.value.line, str(caught.value.file)) == (4, str(rows))
    assert "same prompt as rows.jsonl:1" in caught.value.message
    assert RequestPlan.make(config, limit=3).requests == 3  # the repeat is past the limit: never read

    rows.write_text(rows.read_text() + '{"x": 1}\n' + '{"x": 2}\n')  # lines 5 and 6 lack the template's `q`
    with pytest.raises(PackError) as caught:
        RequestPlan.make(config)
    assert caught.value.line == 4 and "more problems; run `synthdistill packs validate" in caught.value.message
    with pytest.raises(PackError) as loaded:
        configured_prompts(config)
    assert str(caught.value) == str(loaded.value)


def test_a_broken_pack_sends_nothing_and_exits_2(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        path = write_project(tmp_path, server.base_url, 30)
        rows = tmp_path / "prompts" / "tiny" / "rows.jsonl"
        rows.write_text(rows.read_text() + json.dumps({"q": question(2)}) + "\n")  # the last row repeats
        assert main(["harvest", "-c", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"{rows}:31: same prompt as rows.jsonl:3" in err and "Traceback" not in err
        assert server.stats()["requests"] == 0


def test_the_queue_takes_the_requests_in_order_and_puts_back_what_was_not_sent(tmp_path):
    config = load_config(write_project(tmp_path, "http://127.0.0.1:9/v1", 4))
    items = plan_requests(config, configured_prompts(config))
    queue = PendingQueue(iter(items), len(items))
    first = queue.take()
    assert (first, len(queue)) == (items[0], 3)
    queue.put_back(first)
    assert len(queue) == 4 and bool(queue)
    assert [queue.take() for _ in range(4)] == items
    assert (queue.take(), len(queue), bool(queue)) == (None, 0, False)
    # a plan that counted more than the packs now give (edited since): the queue ends when they do
    short = PendingQueue(iter(items[:2]), 4)
    assert [short.take(), short.take(), short.take()] == [items[0], items[1], None] and len(short) == 0
    # ... or fewer (a key's first 64 bits shared with an answered one): every item is still given
    more = PendingQueue(iter(items), 2)
    taken = []
    while more:
        item = more.take()
        if item is not None:
            taken.append(item)
    assert taken == items and len(more) == 0


def test_key_numbers_are_the_first_64_bits_of_the_key():
    assert key_number("ffffffffffffffff" + "0" * 16) == 2**64 - 1
    assert key_number("0000000000000001" + "f" * 16) == 1


def test_a_streamed_pack_is_rendered_twice_per_harvest_and_resumes_without_duplicates(tmp_path, monkeypatch):
    """A pack too big to keep: the plan's pass (which the harvest reuses) and the senders' pass, nothing held."""
    from synthdistill.packs import configured, reading
    from synthdistill.project import Project

    monkeypatch.setattr(configured, "STREAM_ABOVE_BYTES", 0)  # every rows file counts as big
    renders: list[str] = []
    real_rendered = reading._rendered

    def counting(info, *args, **kwargs):
        renders.append(info.name)
        return real_rendered(info, *args, **kwargs)

    monkeypatch.setattr(reading, "_rendered", counting)
    with FakeOpenAIServer() as server:
        project = Project(write_project(tmp_path, server.base_url, 30))
        first = project.harvest(limit=10)
        assert (first["requests_planned"], first["already_done"], first["answered"]) == (10, 0, 10)
        assert renders == ["tiny", "tiny"]
        renders.clear()
        second = project.harvest()
        assert (second["requests_planned"], second["already_done"], second["answered"]) == (30, 10, 20)
        assert renders == ["tiny", "tiny"]
        renders.clear()
        third = project.harvest()  # nothing left: only the plan's pass
        assert (third["already_done"], third["answered"], third["requests_sent"]) == (30, 0, 0)
        assert renders == ["tiny"]
        assert server.stats()["requests"] == 30
    with HarvestStore(tmp_path / "outputs" / "run" / "harvest" / "ledger.sqlite") as store:
        assert len(store.done_keys()) == 30
