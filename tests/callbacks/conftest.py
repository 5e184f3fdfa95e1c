"""Settings and helpers of the callback tests (the tiny models are in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(isolated_cache):
    """Keep the solution cache out of the user's home (:func:`tests.conftest.isolated_cache`)."""


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: tiny-model steps on a busy 2-core machine are faster that way."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny16_dir(tmp_path_factory) -> Path:
    """A tiny random Llama (hidden 16, 2 layers) with the character tokenizer, saved as safetensors."""
    from tests.conftest import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny16") / "model", seed=0, hidden=16)


def sft_trainer(model_dir: Path, trainer_dir: Path, callbacks: list, steps: int = 4, report_to: str = "none",
                lr: float = 1e-3, **config):
    """A TRL ``SFTTrainer`` on ``steps * 2`` spindoctor SFT rows, CPU, no checkpoints of its own
    (``config``: other ``SFTConfig`` fields)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from spindoctor.training.sft import build_dataset_rows, resolve_config

    rows = build_dataset_rows(resolve_config(base=str(model_dir), out="unused", steps=steps, batch_size=2),
                              conversational=False)
    settings = dict(output_dir=str(trainer_dir), max_steps=steps, per_device_train_batch_size=2, learning_rate=lr,
                    use_cpu=True, bf16=False, activation_checkpointing=False, save_strategy="no", logging_steps=1,
                    report_to=report_to, disable_tqdm=True, max_length=64, dataloader_num_workers=0)
    args = SFTConfig(**{**settings, **config})
    return SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir),
                      processing_class=AutoTokenizer.from_pretrained(model_dir),
                      train_dataset=Dataset.from_list(rows), args=args, callbacks=callbacks)
