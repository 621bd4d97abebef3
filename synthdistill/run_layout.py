"""Every path of a run folder (`<output_dir>/<name>/`): the one module that names them.

    harvest/ledger.sqlite, harvest/decision.json      the ledger and the gate's decision
    harvest/plan.json                                 the plan of the last harvest (plan.py)
    filtered/kept.parquet, dropped.parquet, modified.jsonl, report.json  (kept.jsonl: before 12/2026)
    datasets/<sft|kd>/data/<split>-<shard>-of-<shards>.parquet, README.md, provenance.json (kd: build.json, tokenizer/)
    student-init/ (init.json)   student/ (train.json, README.md, checkpoints/)
    student/on-policy-samples.jsonl + .md (card), checkpoints/round-NNNN/ (state.json)   on-policy training
    train/scores.sqlite         on-policy: the teacher's scores of the student's samples (scoring/)
    eval.json, eval.png
    audit/manifest.json, manifest.sha256, manifest.hmac, report.md, report.html, bom.cdx.json
    view.html                   `synthdistill view`: one page of the whole run (not hashed by the audit)
    student/checkpoints/checkpoint-N/kd_feature_projections.safetensors   feature KD's projections (train --resume)
    config/<stage>.json         the effective config of a stage that ran with `--set` overrides
    .synthdistill.lock

Stages, the CLI and the audit ask a `RunLayout` for each path. Only pathlib: the audit and
`--help` import this module, which must never pull in torch or transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# A split is written in shards of at most this many rows: <split>-00000-of-00003.parquet, … (the Hub's names)
SHARD_ROWS = 10_000
# The splits of a built dataset. The held-out one is `validation`, the name `datasets` infers
# from `validation-*.parquet` (an `eval-*` file would load as `test`), so `load_dataset("parquet",
# data_dir=...)`, `data_files=` and the cards' `configs` all show the same two names.
TRAIN_SPLIT = "train"
HELD_OUT_SPLIT = "validation"
SPLITS = (TRAIN_SPLIT, HELD_OUT_SPLIT)


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run folder."""

    run_dir: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_dir", Path(self.run_dir))

    @classmethod
    def of(cls, config) -> RunLayout:
        """The layout of a config's run folder (`DistillConfig.layout`)."""
        return cls(config.run_dir)

    def relative(self, path: Path) -> str:
        """A path of the run folder as the audit lists it: relative, with forward slashes."""
        return Path(path).relative_to(self.run_dir).as_posix()

    # -- harvest ---------------------------------------------------------------
    @property
    def harvest_dir(self) -> Path:
        return self.run_dir / "harvest"

    @property
    def ledger(self) -> Path:
        return self.harvest_dir / "ledger.sqlite"

    @property
    def decision(self) -> Path:
        return self.harvest_dir / "decision.json"

    @property
    def plan(self) -> Path:
        """What the last harvest planned before its first request (`synthdistill plan`'s summary)."""
        return self.harvest_dir / "plan.json"

    # -- filter ----------------------------------------------------------------
    @property
    def filtered_dir(self) -> Path:
        return self.run_dir / "filtered"

    @property
    def kept(self) -> Path:
        return self.filtered_dir / "kept.parquet"

    @property
    def dropped(self) -> Path:
        return self.filtered_dir / "dropped.parquet"

    @property
    def legacy_kept(self) -> Path:
        """What the filter wrote before its output was Parquet (JSON lines); still read by build."""
        return self.filtered_dir / "kept.jsonl"

    @property
    def legacy_dropped(self) -> Path:
        return self.filtered_dir / "dropped.jsonl"

    @property
    def modified(self) -> Path:
        return self.filtered_dir / "modified.jsonl"

    @property
    def filter_report(self) -> Path:
        return self.filtered_dir / "report.json"

    # -- build -----------------------------------------------------------------
    @property
    def datasets_dir(self) -> Path:
        return self.run_dir / "datasets"

    def dataset_dir(self, kind: str) -> Path:
        """A built dataset's folder (kind: sft or kd)."""
        return self.datasets_dir / kind

    def dataset_data_dir(self, kind: str) -> Path:
        return self.dataset_dir(kind) / "data"

    def split_file(self, kind: str, split: str, shard: int = 0, shards: int = 1) -> Path:
        """One Parquet shard of one split of a built dataset."""
        return self.dataset_data_dir(kind) / f"{split}-{shard:05d}-of-{shards:05d}.parquet"

    def split_shards(self, kind: str, split: str) -> list[Path]:
        """The Parquet shards of one split of a built dataset, in order."""
        return sorted(self.dataset_data_dir(kind).glob(f"{split}-*.parquet"))

    def split_files(self, kind: str) -> list[Path]:
        """The Parquet files of one built dataset, sorted."""
        return sorted(self.dataset_data_dir(kind).glob("*.parquet"))

    def every_split_file(self) -> list[Path]:
        """The Parquet files of every built dataset, sorted."""
        return sorted(self.datasets_dir.glob("*/data/*.parquet"))

    @staticmethod
    def split_pattern(split: str) -> str:
        """A split's files relative to its dataset folder, as the card's `data_files` names them."""
        return f"data/{split}-*.parquet"

    @staticmethod
    def split_of(path: Path) -> str:
        """The split a dataset's Parquet file belongs to."""
        return Path(path).name.split("-", 1)[0]

    def dataset_card(self, kind: str) -> Path:
        return self.dataset_dir(kind) / "README.md"

    def dataset_provenance(self, kind: str) -> Path:
        return self.dataset_dir(kind) / "provenance.json"

    def dataset_build(self, kind: str) -> Path:
        """What the build recorded about a dataset (written for kd)."""
        return self.dataset_dir(kind) / "build.json"

    def dataset_tokenizer(self, kind: str) -> Path:
        return self.dataset_dir(kind) / "tokenizer"

    # -- train -----------------------------------------------------------------
    @property
    def student_init_dir(self) -> Path:
        """The depth-pruned starting weights, when student.init asks for them."""
        return self.run_dir / "student-init"

    @property
    def student_init_recipe(self) -> Path:
        return self.student_init_dir / "init.json"

    @property
    def student_dir(self) -> Path:
        """Where the trained student is saved."""
        return self.run_dir / "student"

    @property
    def train_summary(self) -> Path:
        return self.student_dir / "train.json"

    @property
    def student_card(self) -> Path:
        return self.student_dir / "README.md"

    @staticmethod
    def checkpoint_projections(checkpoint: Path) -> Path:
        """Feature KD's projections in one checkpoint folder (full and LoRA students; `train --resume` restores them)."""
        return Path(checkpoint) / "kd_feature_projections.safetensors"

    @property
    def checkpoints_dir(self) -> Path:
        return self.student_dir / "checkpoints"

    def on_policy_round_dir(self, round_index: int) -> Path:
        """On-policy training's checkpoint after round `round_index` (0-based): weights, optimizer, state.json."""
        return self.checkpoints_dir / f"round-{round_index:04d}"

    def on_policy_round_dirs(self) -> list[Path]:
        """The finished rounds' checkpoints (each with its state.json), in round order."""
        return sorted(p.parent for p in self.checkpoints_dir.glob("round-[0-9][0-9][0-9][0-9]/state.json"))

    @staticmethod
    def on_policy_round_state(round_dir: Path) -> Path:
        """A round checkpoint's state.json: written last, so a checkpoint without it is unfinished."""
        return Path(round_dir) / "state.json"

    @property
    def on_policy_samples(self) -> Path:
        """One line per student sample the teacher scored: round, prompt, text, teacher tokens, targets kept."""
        return self.student_dir / "on-policy-samples.jsonl"

    @property
    def on_policy_card(self) -> Path:
        """The dataset card of the on-policy samples (Hub metadata and what made them)."""
        return self.student_dir / "on-policy-samples.md"

    @property
    def train_dir(self) -> Path:
        """What training keeps while it runs (on-policy: the scores ledger)."""
        return self.run_dir / "train"

    @property
    def scores(self) -> Path:
        """The ledger of the teacher's scores of the student's samples (synthdistill/scoring/)."""
        return self.train_dir / "scores.sqlite"

    # -- eval ------------------------------------------------------------------
    @property
    def eval_result(self) -> Path:
        return self.run_dir / "eval.json"

    @property
    def eval_plot(self) -> Path:
        return self.run_dir / "eval.png"

    # -- audit -----------------------------------------------------------------
    @property
    def audit_dir(self) -> Path:
        return self.run_dir / "audit"

    @property
    def manifest(self) -> Path:
        return self.audit_dir / "manifest.json"

    @property
    def manifest_sha256(self) -> Path:
        return self.audit_dir / "manifest.sha256"

    @property
    def manifest_seal(self) -> Path:
        return self.audit_dir / "manifest.hmac"

    @property
    def report_md(self) -> Path:
        return self.audit_dir / "report.md"

    @property
    def report_html(self) -> Path:
        return self.audit_dir / "report.html"

    @property
    def bom(self) -> Path:
        return self.audit_dir / "bom.cdx.json"

    @property
    def audit_reports(self) -> tuple[Path, Path, Path]:
        """The audit's files besides the manifest, which lists their hashes."""
        return self.report_md, self.report_html, self.bom

    # -- view ------------------------------------------------------------------
    @property
    def view_page(self) -> Path:
        """`synthdistill view`'s page: a rendering of the other files, rewritten by each view."""
        return self.run_dir / "view.html"

    # -- config snapshots --------------------------------------------------------
    @property
    def config_snapshots_dir(self) -> Path:
        return self.run_dir / "config"

    def config_snapshot(self, stage: str) -> Path:
        """The effective config (file hash, overrides, settings) a stage last ran with, when it had overrides."""
        return self.config_snapshots_dir / f"{stage}.json"

    def config_snapshots(self) -> list[Path]:
        return sorted(self.config_snapshots_dir.glob("*.json"))

    # -- the folder itself -----------------------------------------------------
    @property
    def lock(self) -> Path:
        """The lock file every writing stage holds (run_lock.py)."""
        return self.run_dir / ".synthdistill.lock"
