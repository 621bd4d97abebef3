"""Train a model on a synthdistill SFT dataset with plain TRL: no synthdistill import.

    python examples/trl_sft.py --dataset examples/quickstart/outputs/quickstart/datasets/sft \\
        --model examples/quickstart/outputs/quickstart/student --output my-sft-student

The dataset is plain Parquet: `load_dataset("parquet", data_dir=...)` gives the splits `train`
and `validation`, each row a `messages` conversation (plus provenance columns: `row_id`,
`prompt_id`, `pack`, `teacher`). `assistant_only_loss=True` puts the loss on the assistant's
turns alone; TRL needs `{% generation %}` markers in the chat template for that, which the
students synthdistill saves carry (`synthdistill train` adds them where the base template lacks
them). Prints one JSON line: rows per split, steps, first and last training loss, eval loss.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="a synthdistill SFT dataset folder (datasets/sft)")
    parser.add_argument("--model", required=True, help="a model folder or Hub id (e.g. a synthdistill student)")
    parser.add_argument("--output", required=True, help="where to save the trained model")
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (-1: --epochs)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=1024)
    args = parser.parse_args()

    data = load_dataset("parquet", data_dir=str(Path(args.dataset) / "data"))
    data = data.select_columns(["messages"])  # the provenance columns are not model inputs
    has_validation = "validation" in data and len(data["validation"]) > 0
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model)
    config = SFTConfig(
        output_dir=args.output,
        assistant_only_loss=True,  # loss on the teacher's answers only, not on system and user turns
        max_steps=args.max_steps,
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        max_length=args.max_length,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        # SFTConfig asks for bf16, which a CPU does not have
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=data["train"],
        eval_dataset=data["validation"] if has_validation else None,
        processing_class=tokenizer,
    )
    trainer.train()
    metrics = trainer.evaluate() if has_validation else {}
    trainer.save_model(args.output)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    result = {
        "train_rows": len(data["train"]),
        "validation_rows": len(data["validation"]) if "validation" in data else 0,
        "steps": trainer.state.global_step,
        "train_loss_first": losses[0] if losses else None,
        "train_loss_last": losses[-1] if losses else None,
        "eval_loss": metrics.get("eval_loss"),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
