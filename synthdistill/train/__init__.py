"""The train stage and what it needs: TRL trainers, the sparse KD loss, the student's initial weights.

    stage.py           `run`: SFT (`SFTTrainer`) or KD (a subclass with the KD loss); saves the student
    data.py            dataset rows → token rows, and the padding collator
    kd_loss.py         sparse top-k + tail-bucket KL (pure torch)
    chunked_logits.py  logsumexp and gathers over the vocabulary a chunk of rows at a time
    kd_head.py         the KD loss computed inside the model's forward (the logits are never built)
    student_init.py    the depth-pruned copy of the base model the student starts from
    trainer_args.py    the SFTConfig: synthdistill's settings, then `student.trainer` (checked against TRL)
    chat_template.py   the saved student's chat template, with `{% generation %}` markers
    model_card.py      the student's README.md (model-index once `eval` ran)

Only `stage` and `data` are imported here; torch and transformers load when training starts.
"""

from __future__ import annotations

from synthdistill.train.stage import TrainSummary, read_train_summary, run, student_name

__all__ = ["TrainSummary", "read_train_summary", "run", "student_name"]
