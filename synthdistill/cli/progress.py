"""Rich progress bars for the long stages (harvest, train)."""

from __future__ import annotations

import json
import sys
import threading
import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from synthdistill.cli import render


class HarvestProgress:
    """A HarvestObserver that draws requests done, rates, errors by kind and ETA.

    On a terminal it is a live bar. Without one (a log file, CI, nohup) a bar cannot be
    drawn, so one plain line goes to stderr every `every_s` seconds instead (under --json,
    one JSON object per line: {"event": "progress", ...}), so a log shows a stuck
    teacher while it is stuck. --quiet prints neither.
    """

    def __init__(self, every_s: float = 10.0) -> None:
        self.enabled = render.show_progress()
        self.every_s = every_s
        self.ticking = (
            not render.OPTIONS.quiet
            and not render.OPTIONS.secondary
            and (render.OPTIONS.json or not render.err_console.is_terminal)
        )
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self.total = 0
        self.already_done = 0
        self.failed_count = 0
        self.pauses = 0
        self.progress = Progress(
            TextColumn("[bold]harvest[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[errors]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=render.err_console,
            disable=not self.enabled,
        )
        self.task = None
        self.started = time.perf_counter()
        # counts are named *_count: `answered` is the observer method
        self.answered_count = 0
        self.tokens = 0
        self.cost_usd: float | None = None
        self.errors: dict[str, int] = {}

    def __enter__(self) -> HarvestProgress:
        self.progress.__enter__()
        if self.ticking:
            self._ticker = threading.Thread(target=self._tick, name="harvest-progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=1)
        self.progress.__exit__(*exc)

    def _tick(self) -> None:
        while not self._stop.wait(self.every_s):
            self.report_line()

    def report_line(self) -> None:
        """One progress line (or JSON event) on stderr: done of total, failures, errors by kind, pauses, time."""
        seconds = round(time.perf_counter() - self.started, 1)
        done = self.already_done + self.answered_count + self.failed_count
        if render.OPTIONS.json:
            event = {
                "event": "progress",
                "done": done,
                "total": self.total,
                "answered": self.answered_count,
                "failed": self.failed_count,
                "already_done": self.already_done,
                "errors": dict(self.errors),
                "pauses": self.pauses,
                "seconds": seconds,
            }
            line = json.dumps(event)
        else:
            errors = " ".join(f"{k}:{v}" for k, v in sorted(self.errors.items())) or "none"
            line = (
                f"harvest: {done}/{self.total} done ({self.answered_count} answered, {self.failed_count} failed "
                f"this run), errors {errors}, {self.pauses} pauses, {seconds:.0f} s"
            )
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def _refresh(self, advance: int = 0) -> None:
        elapsed = max(1e-6, time.perf_counter() - self.started)
        rate = f"{self.answered_count / elapsed:.2f} req/s {self.tokens / elapsed:.0f} tok/s"
        if self.cost_usd is not None:
            rate += f" ${self.cost_usd:.4f}"
        errors = " ".join(f"{k}:{v}" for k, v in sorted(self.errors.items())) or "no errors"
        self.progress.update(self.task, advance=advance, rate=rate, errors=errors)

    def planned(self, total: int, already_done: int) -> None:
        self.task = self.progress.add_task("harvest", total=total, completed=already_done, rate="", errors="")
        self.total, self.already_done = total, already_done
        self.started = time.perf_counter()

    def answered(self, record) -> None:
        self.answered_count += 1
        self.tokens += record.usage.completion_tokens
        self._refresh(1)

    def failed(self, kind: str) -> None:
        self.failed_count += 1
        self.errors[f"failed-{kind}"] = self.errors.get(f"failed-{kind}", 0) + 1
        self._refresh(1)

    def retrying(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self._refresh(0)

    def spent(self, cost_usd: float) -> None:
        self.cost_usd = (self.cost_usd or 0.0) + cost_usd
        self._refresh(0)

    def paused(self, seconds: float, reason: str) -> None:
        self.errors["paused"] = self.errors.get("paused", 0) + 1
        self.pauses += 1
        self._refresh(0)


class TrainProgress:
    """Forwards training events (step, loss) to a progress bar."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]train[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=render.err_console,
            disable=not render.show_progress(),
        )
        self.task = None

    def __enter__(self) -> TrainProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, event: dict) -> None:
        total = event.get("max_steps") or event.get("total_steps")
        if self.task is None:
            self.task = self.progress.add_task("train", total=total, loss="…")
        loss = event.get("loss")
        self.progress.update(
            self.task,
            completed=event.get("step", 0),
            total=total,
            loss=f"{loss:.4f}" if isinstance(loss, (int, float)) else "…",
        )
