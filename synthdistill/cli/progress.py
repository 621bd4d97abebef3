"""Rich progress bars for the long stages (harvest, train)."""

from __future__ import annotations

import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from synthdistill.cli import render


class HarvestProgress:
    """A HarvestObserver that draws requests done, rates, errors by kind and ETA."""

    def __init__(self) -> None:
        self.enabled = render.show_progress()
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

    def __enter__(self) -> "HarvestProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def _refresh(self, advance: int = 0) -> None:
        elapsed = max(1e-6, time.perf_counter() - self.started)
        rate = f"{self.answered_count / elapsed:.2f} req/s {self.tokens / elapsed:.0f} tok/s"
        if self.cost_usd is not None:
            rate += f" ${self.cost_usd:.4f}"
        errors = " ".join(f"{k}:{v}" for k, v in sorted(self.errors.items())) or "no errors"
        self.progress.update(self.task, advance=advance, rate=rate, errors=errors)

    def planned(self, total: int, already_done: int) -> None:
        self.task = self.progress.add_task("harvest", total=total, completed=already_done, rate="", errors="")
        self.started = time.perf_counter()

    def answered(self, record) -> None:
        self.answered_count += 1
        self.tokens += record.usage.completion_tokens
        self._refresh(1)

    def failed(self, kind: str) -> None:
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

    def __enter__(self) -> "TrainProgress":
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
