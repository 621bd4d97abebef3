"""distill.yaml's `student:` section: the student, its initialisation, the method and its losses (design §4).

Part of the config's pydantic models (synthdistill/config.py loads and validates the whole file).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from synthdistill.config_base import Strict as _Strict


class StudentInit(_Strict):
    prune_layers_to: int | None = Field(None, ge=1, description="Keep this many evenly spaced layers of `model`")


class LoraConfig(_Strict):
    r: int = Field(16, ge=1, description="LoRA rank: the width of each adapter")
    alpha: int = Field(32, ge=1, description="LoRA scaling numerator (the update is scaled by alpha / r)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the adapters' input")
    target_modules: list[str] | str = Field(
        "all-linear", description="Modules that get adapters: 'all-linear', or a list of module names"
    )
    merge_on_save: bool = Field(
        False, description="Save the student with the adapters merged into its weights (else the adapters alone)"
    )


class KDWeights(_Strict):
    ce: float = Field(ge=0.0, description="Weight of the cross-entropy on the teacher's answer tokens")
    kl: float = Field(ge=0.0, description="Weight of the KL to the teacher's top-k (+ tail), used as is (no T² factor)")


class FeatureKD(_Strict):
    layers: Literal["auto"] | list[tuple[int, int]] = Field(
        "auto",
        description="Pairs [student layer, teacher layer] (0-based decoder layers) whose outputs are matched; auto = "
        "the teacher layers a depth-pruned student was copied from, else evenly spaced teacher layers",
    )
    loss: Literal["cosine", "mse"] = Field(
        "cosine", description="cosine: 1 - cosine similarity per answer token; mse: mean squared difference"
    )
    weight: float = Field(1.0, gt=0.0, description="Weight of the feature part in the loss")


class RelationKD(_Strict):
    source: Literal["teacher-hidden", "embeddings"] = Field(
        "teacher-hidden",
        description="Whose representations the relations come from: teacher-hidden = the local teacher's last "
        "hidden state, mean-pooled over each example's answer tokens; embeddings = the vectors harvested with "
        "harvest.embeddings (the KD dataset's teacher_embedding column; no local teacher is loaded)",
    )
    loss: Literal["distance", "angle", "distance+angle"] = Field(
        "distance+angle",
        description="RKD terms: distance = pairwise distances over their batch mean (Huber); angle = the angles of "
        "every triplet (Huber); either needs student.batch_size >= 3 (examples per device)",
    )
    weight: float = Field(1.0, gt=0.0, description="Weight of the relation part in the loss")


class KDConfig(_Strict):
    alpha: float = Field(
        0.5, ge=0.0, le=1.0, description="Weight of the cross-entropy term (1 - alpha weighs the KL to the teacher)"
    )
    temperature: float = Field(1.0, gt=0.0, description="Softmax temperature of the KD term")
    tail: Literal["bucket", "zero"] = Field(
        "bucket",
        description="The teacher's probability outside its top-k: bucket = kept as one 'rest' mass, "
        "zero = the top-k renormalised",
    )
    weights: KDWeights | None = Field(
        None,
        description="The ce and kl parts' weights as given, instead of alpha (alpha·CE + (1−alpha)·T²·KL); "
        "e.g. {ce: 0, kl: 0} trains on the feature/relation parts alone",
    )
    teacher: str | None = Field(
        None,
        description="The local teacher run next to the student (a folder or an embedded model id) for the feature "
        "and relation parts; default: teacher.model when teacher.backend is transformers",
    )
    online: bool = Field(
        False,
        description="The kl part against the local teacher's full distribution over the vocabulary, computed live "
        "on each batch, instead of the stored top-k (same tokenizer only; tail does not apply)",
    )
    features: FeatureKD | None = Field(
        None, description="Feature KD: match the student's hidden states to the local teacher's; null = off"
    )
    relations: RelationKD | None = Field(
        None, description="Relation KD (RKD): keep the teacher's distances/angles between a batch's examples"
    )

    @model_validator(mode="after")
    def _one_weight_source(self) -> KDConfig:
        if self.weights is not None and "alpha" in self.model_fields_set:
            raise ValueError("set either alpha or weights: {ce, kl}, not both")
        if not any(self.loss_weights().values()):
            raise ValueError("every loss part has weight 0: nothing would be trained")
        return self

    def loss_weights(self) -> dict[str, float]:
        """The weight of each part of the KD loss, by name (ce, kl, then feature, relation when on)."""
        if self.weights is not None:
            weights = {"ce": self.weights.ce, "kl": self.weights.kl}
        else:
            weights = {"ce": self.alpha, "kl": (1.0 - self.alpha) * self.temperature**2}
        if self.features is not None:
            weights["feature"] = self.features.weight
        if self.relations is not None:
            weights["relation"] = self.relations.weight
        return weights


class OnPolicyConfig(_Strict):
    """On-policy distillation (GKD, Agarwal et al. 2024; TRL's GKDTrainer): the student samples, the teacher scores."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    lambda_: float = Field(
        1.0,
        alias="lambda",
        ge=0.0,
        le=1.0,
        description="Share of the steps that train on the student's own scored samples (TRL's lmbda); the rest are "
        "offline KD batches of the KD dataset. 1 = on-policy only (no KD dataset needed), 0 = offline KD only",
    )
    beta: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Generalised JSD interpolation (TRL's beta): 0 = forward KL(teacher||student), "
        "1 = reverse KL(student||teacher), between = JSD with the mixture beta·teacher + (1−beta)·student",
    )
    samples_per_prompt: int = Field(
        1, ge=1, le=64, description="Answers the student samples for each prompt of a round"
    )
    prompts_per_round: int = Field(
        8, ge=1, description="Training prompts the student answers each round (the next slice of the SFT train split)"
    )
    max_new_tokens: int = Field(128, ge=1, description="Longest answer the student samples, in student tokens")
    temperature: float = Field(0.9, gt=0.0, le=2.0, description="Sampling temperature of the student's answers")
    rounds: int = Field(4, ge=1, description="Rounds of sample → score → train; train --resume continues at a round")
    steps_per_round: int = Field(
        4, ge=1, description="Optimizer steps per round (a total of rounds × steps_per_round; max_steps/epochs unused)"
    )
    scoring_top_k: int = Field(
        20, ge=1, le=100, description="Teacher candidates per token asked of the scoring endpoint (the KD support)"
    )
    eval_prompts: int = Field(
        16,
        ge=0,
        le=256,
        description="Held-out prompts whose sampled student answers eval has the teacher score "
        "(teacher_nll_on_student_samples, for every method); 0 = off",
    )


class StudentConfig(_Strict):
    model: str = Field(description="The student's starting weights: a folder or an embedded model id")
    name: str | None = Field(None, description="Name of the trained student (checked against name-prefix obligations)")
    init: StudentInit | None = Field(None, description="How the starting weights are prepared (e.g. pruned)")
    method: Literal["sft", "kd", "on-policy"] = Field(
        "kd",
        description="sft: train on the answers' text; kd: also match the teacher's top-k logprobs; on-policy: the "
        "teacher scores the student's own samples (student.on_policy)",
    )
    lora: LoraConfig | None = Field(None, description="Train LoRA adapters instead of every weight; null = full")
    epochs: float = Field(1, gt=0, description="Passes over the SFT/KD training split (fractions allowed)")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps")
    checkpoint_every: int | None = Field(
        None, ge=1, description="Save a checkpoint every N steps (train --resume continues from the last one)"
    )
    learning_rate: float = Field(5.0e-5, gt=0, description="Peak learning rate of AdamW")
    batch_size: int = Field(8, ge=1, description="Examples per device per step")
    gradient_accumulation: int = Field(
        1, ge=1, description="Steps whose gradients add up before one optimizer step (effective batch multiplier)"
    )
    max_length: int = Field(1024, ge=8, description="Longest training example in student tokens (longer are cut)")
    seed: int = Field(0, description="Seed of the training run (shuffling, initialisation of adapters)")
    kd: KDConfig = Field(
        default_factory=KDConfig, description="The KD loss (method kd, and on-policy's offline batches)"
    )
    on_policy: OnPolicyConfig = Field(
        default_factory=OnPolicyConfig, description="On-policy distillation (used when method is on-policy)"
    )
    eval_samples: int = Field(
        8,
        ge=0,
        le=256,
        description="Held-out prompts that eval answers greedily with the untrained and the trained student, "
        "stored in eval.json beside the teacher's answer (synthdistill view shows them); 0 = none",
    )
    trainer: dict[str, Any] = Field(
        default_factory=dict,
        description="More fields of TRL's SFTConfig / transformers' TrainingArguments, passed through as they are "
        "(warmup_steps, lr_scheduler_type, weight_decay, max_grad_norm, bf16, report_to: [tensorboard] or [trackio] "
        "(local), logging_steps, ...); checked against the installed TRL when train starts. Fields synthdistill sets "
        "from its own keys (output_dir, learning_rate, per_device_train_batch_size, ...) are refused, naming the key "
        "to use",
    )
