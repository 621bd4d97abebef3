"""The local teacher run next to the student for the feature, relation and online-KL parts of the KD loss.

`student.kd.teacher` names it (a folder or an embedded model id; default `teacher.model` when the
harvest teacher is the in-process transformers backend). It is loaded once per process, frozen
(`requires_grad=False`, eval mode), kept outside the student module (so DDP/FSDP never wrap it
and it is never saved), in bf16 on a GPU and fp32 on a CPU, and run without gradients on each
batch's token ids: the student's ids when the tokenizers are the same, else its own tokens of the
same conversation (train/teacher_tokens.py). The time and memory of its forward are measured for
train.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from synthdistill.config import DistillConfig
from synthdistill.errors import ConfigError
from synthdistill.model_store import resolve_model
from synthdistill.run_layout import RunLayout


def teacher_reference(config: DistillConfig) -> str:
    """The local teacher's model id or folder, or a ConfigError saying why there is none."""
    kd = config.require_student("train").kd
    if kd.teacher is not None:
        return kd.teacher
    if config.teacher.backend == "transformers":
        return config.teacher.model
    raise ConfigError(
        f"student.kd.features / relations / online need the teacher's hidden states, and teacher.backend "
        f"{config.teacher.backend} only returns text and logprobs: set student.kd.teacher to a local folder or "
        "embedded model id with the teacher's weights"
    )


def kept_teacher_layers(config: DistillConfig, teacher_dir: Path) -> list[int] | None:
    """The teacher layers a depth-pruned student was copied from (student_init's record), if it was pruned from it."""
    marker = config.layout.student_init_recipe
    student = config.require_student("train")
    if student.init is None or student.init.prune_layers_to is None or not marker.exists():
        return None
    info = json.loads(marker.read_text())
    if Path(info["recipe"]["source"]).resolve() != teacher_dir.resolve():
        return None
    return list(info["kept_layers"])


def check_plain_head(model, reference: str) -> None:
    """Online KD takes the teacher's logits as its LM head's output; a transformed head would be misread."""
    from synthdistill.train.kd_head import supports_kd_head

    if not supports_kd_head(model):
        raise ConfigError(
            f"student.kd.online: the teacher {reference} transforms its logits after the LM head (softcapping or "
            "scaling), which online KD does not support yet; drop student.kd.online"
        )


class LocalTeacher:
    """A frozen teacher model; `hidden_states(ids, mask)` runs it and records time and memory."""

    def __init__(self, reference: str, folder: Path, device, use_gpu: bool):
        import torch
        from transformers import AutoModelForCausalLM

        self.reference = reference
        self.folder = folder
        self.dtype = torch.bfloat16 if use_gpu else torch.float32
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=self.dtype)
        model.requires_grad_(False)
        self.model = model.eval().to(device)
        self.device = device
        self.layers = model.config.get_text_config().num_hidden_layers
        self.width = model.config.get_text_config().hidden_size
        self.weights_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        self.seconds = 0.0
        self.forwards = 0
        self.outputs_bytes_max = 0
        self.cuda_peak_extra_bytes_max: int | None = 0 if use_gpu else None
        self.feature_layers: list[tuple[int, int]] | None = None  # feature KD's (student, teacher) layer pairs
        self.cross_tokenizer: dict[str, Any] | None = None  # teacher_tokens.py's summary when the tokenizers differ

    def run(self, input_ids, attention_mask, labels, online_temperature: float | None = None) -> dict[str, Any]:
        """The teacher on one batch, without gradients: {"hidden": hidden states, "logprobs": online KD rows or None}.

        `hidden` are the backbone's hidden states (embeddings, then each decoder layer's output);
        with `online_temperature`, `logprobs` [N, V] is the teacher's log-softmax at that temperature
        at each position that predicts an answer token (the rows of `next_token_rows(labels)`).
        """
        import torch

        from synthdistill.train.loss_parts import next_token_rows

        cuda = self.cuda_peak_extra_bytes_max is not None
        if cuda:
            torch.cuda.synchronize(self.device)
            before = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        started = time.perf_counter()
        with torch.no_grad():
            out = self.model.base_model(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                output_hidden_states=True,
                use_cache=False,
            )
            logprobs = None
            if online_temperature is not None:
                rows = out.last_hidden_state[:, :-1][next_token_rows(labels.to(self.device))]
                logits = self.model.get_output_embeddings()(rows).float()
                logprobs = torch.log_softmax(logits / online_temperature, dim=-1)
        if cuda:
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) - before
            self.cuda_peak_extra_bytes_max = max(self.cuda_peak_extra_bytes_max, peak)
        self.seconds += time.perf_counter() - started
        self.forwards += 1
        hidden = out.hidden_states
        kept = [*hidden, *([logprobs] if logprobs is not None else [])]
        self.outputs_bytes_max = max(self.outputs_bytes_max, sum(h.numel() * h.element_size() for h in kept))
        return {"hidden": hidden, "logprobs": logprobs}

    def summary(self) -> dict[str, Any]:
        """What train.json records about the extra forward."""
        return {
            "model": self.reference,
            "feature_layers": [list(pair) for pair in self.feature_layers] if self.feature_layers else None,
            # None: the student's tokenizer; else how the teacher read the rows and the share of answer bytes paired
            "cross_tokenizer": self.cross_tokenizer,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "weights_bytes": self.weights_bytes,
            "forwards": self.forwards,
            "forward_seconds_total": round(self.seconds, 4),
            "forward_seconds_mean": round(self.seconds / self.forwards, 6) if self.forwards else None,
            # the hidden states (and online KD log-probabilities) one forward returns, alive until the loss
            "outputs_bytes_max": self.outputs_bytes_max,
            # GPU only: the most memory the teacher's forward added above what was allocated before it
            "cuda_peak_extra_bytes_max": self.cuda_peak_extra_bytes_max,
        }


def load_local_teacher(config: DistillConfig, device, use_gpu: bool) -> LocalTeacher:
    """Resolve, load and freeze the teacher named by student.kd.teacher (or teacher.model)."""
    reference = teacher_reference(config)
    return LocalTeacher(reference, resolve_model(reference, config.project_dir), device, use_gpu)


def needs_local_teacher(kd) -> bool:
    """Feature KD, relations from the teacher's hidden states and online KD run a local teacher; relations from
    the harvested embeddings (`relations.source: embeddings`) do not."""
    hidden_relations = kd.relations is not None and kd.relations.source == "teacher-hidden"
    return kd.features is not None or hidden_relations or kd.online


def attach_local_teacher(config: DistillConfig, model, device, use_gpu: bool, cross_tokenizer=None):
    """(teacher, projections) for the feature/relation parts, or (None, None) when neither is configured.

    Checks the batch size before the teacher's weights are loaded; the projections (feature KD) map
    the student's width to the teacher's for each layer pair. `cross_tokenizer`: teacher_tokens.py's
    summary when the teacher has another tokenizer (the tokenizers were compared there).
    """
    from synthdistill.train.loss_parts import FeatureProjections, check_relation_batch, layer_pairs

    student = config.require_student("train")
    kd = student.kd
    if kd.relations is not None:
        check_relation_batch(kd.relations.loss, student.batch_size)
    if not needs_local_teacher(kd):
        return None, None  # relations from the harvested embeddings need no local teacher
    teacher = load_local_teacher(config, device, use_gpu)
    teacher.cross_tokenizer = cross_tokenizer
    if kd.online:
        check_plain_head(teacher.model, teacher.reference)
    if kd.features is None:
        return teacher, None
    text = model.config.get_text_config()
    kept = kept_teacher_layers(config, teacher.folder)
    teacher.feature_layers = layer_pairs(kd.features.layers, text.num_hidden_layers, teacher.layers, kept)
    pairs = teacher.feature_layers
    return teacher, FeatureProjections(pairs, text.hidden_size, teacher.width).to(device)


def save_projections(projections, checkpoint: Path) -> None:
    """Write feature KD's projections into a checkpoint folder (a LoRA checkpoint holds only the adapter)."""
    from safetensors.torch import save_file

    state = {name: tensor.detach().cpu().contiguous() for name, tensor in projections.state_dict().items()}
    if state:  # equal widths: identity, nothing to save
        save_file(state, str(RunLayout.checkpoint_projections(checkpoint)))


def restore_projections(projections, checkpoint: Path) -> bool:
    """Load the projections a checkpoint saved (`train --resume`); False when it holds none."""
    from safetensors.torch import load_file

    path = RunLayout.checkpoint_projections(checkpoint)
    if not path.exists():
        return False
    projections.load_state_dict(load_file(str(path)))
    return True
