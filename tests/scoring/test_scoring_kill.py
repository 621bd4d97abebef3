"""`kill -9` of a process mid-scoring, then a re-run: every sample scored once, none sent again once stored."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from synthdistill.scoring import score_samples
from synthdistill.scoring.store import ScoreStore
from tests.openai_server import FakeOpenAIServer
from tests.scoring.scoring_fixtures import samples, scoring_project

N = 40
CONCURRENCY = 4
REPO = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys
from synthdistill.config import load_config
from synthdistill.scoring import score_samples
from tests.scoring.scoring_fixtures import samples
score_samples(load_config(sys.argv[1]), samples(int(sys.argv[2])))
"""


def _done(ledger: Path) -> set[str]:
    if not ledger.exists():
        return set()
    db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=5)
    try:
        return {row[0] for row in db.execute("SELECT score_key FROM scores WHERE status = 'done'")}
    except sqlite3.OperationalError:  # the table is not created yet
        return set()
    finally:
        db.close()


def test_sigkill_mid_scoring_then_resume_scores_nothing_twice(tmp_path):
    with FakeOpenAIServer(dialect="vllm", latency_s=0.15) as server:
        config = scoring_project(tmp_path, server.base_url, teacher={"max_concurrency": CONCURRENCY})
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        process = subprocess.Popen([sys.executable, "-c", SCRIPT, str(config.path), str(N)], env=env, cwd=REPO)
        started = time.monotonic()
        while len(_done(config.layout.scores)) < N // 4:
            assert process.poll() is None, "scoring ended before it was killed"
            assert time.monotonic() - started < 120, "scoring made no progress"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        time.sleep(0.3)  # the server finishes reading what the dead client had written
        stored_at_kill = _done(config.layout.scores)
        sent_before = server.stats()["requests"]
        assert 0 < len(stored_at_kill) < N and sent_before - len(stored_at_kill) <= CONCURRENCY

        given = samples(N)
        server.reset()
        scored = score_samples(config, given)
        resent = server.stats()
    assert [s.score_key for s in scored] == [s.score_key for s in given]
    assert resent["requests"] == N - len(stored_at_kill)  # only what the ledger lacked
    # no stored sample was asked again: the prompts answered now are exactly the others
    asked_again = {s.messages[0].content for s in given if s.score_key in stored_at_kill}
    assert not asked_again & set(resent["answered"])
    with ScoreStore(config.layout.scores) as store:
        assert store.counts() == {"done": N, "failed": 0}
    with sqlite3.connect(config.layout.scores) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
