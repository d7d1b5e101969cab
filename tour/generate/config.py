"""The generate stop's Config and the tolerances its checks use; every part of the stop imports them from here."""

from __future__ import annotations

from dataclasses import dataclass

from tour.core.config import BaseConfig, arg
from tour.core.errors import TourError

NAME = "generate"
LOGPROB_TOL = 1e-3  # generate()'s scores vs one forward pass's log-softmax (fp32: cached vs full attention)
ADAPTER_TOL = 1e-5  # LoRA adapter reloaded on a fresh base model vs the trained one (0 on CPU: the same arithmetic)
MERGE_TOL = 1e-3  # the adapter folded into the weights by merge_and_unload vs applied on the side (rounding only)
# LoRA lowering the held-out loss was seen with these settings as the tour sets them; settings of yours: not run
LORA_SETTINGS = ("model", "system", "topics", "test_fraction", "max_train", "epochs", "lr", "batch_size", "lora_rank",
                 "lora_layers")
PROMPTS = ["What is the capital of France?", "What is the capital of Japan?", "Name a primary colour."]


@dataclass
class Config(BaseConfig):
    model: str | None = arg(None, "a local causal-LM folder or hub name (unset: SmolLM2-135M-Instruct, converted once)")
    prompts: list[str] = arg(PROMPTS, "your questions to the model", quick=PROMPTS[:2], nonblank=True)
    system: str = arg("You are a helpful assistant. Answer in one short sentence.", "the system prompt")
    max_new_tokens: int = arg(40, "new tokens per reply", min=1, max=4096, quick=16)
    temperature: float = arg(1.0, "sampling temperature (below 1 sharpens the distribution)", min=0.01, max=5.0)
    top_p: float = arg(0.95, "sampling keeps the smallest set of tokens whose probability reaches top_p", min=0.01,
                       max=1.0)
    speed_tokens: int = arg(24, "new tokens in each side-by-side timing", min=2, max=512, quick=8)
    repeats: int = arg(2, "timed runs per side-by-side measurement after one warm-up (median)", min=1, quick=1)
    copy_mb: int | None = arg(None, "MiB copied to measure memory bandwidth (default: the core's, 256 on a CPU, 1024 "
                              "on a GPU, measured once per process)", min=8)
    topics: list[str] = arg(["ai", "emotion"], "chatterbot topics whose question/answer pairs LoRA learns")
    test_fraction: float = arg(0.2, "share of the pairs held out for the loss/perplexity", min=0.05, max=0.5,
                                quick=0.1)
    max_train: int = arg(64, "at most this many training pairs (0: all)", min=0, quick=24)
    epochs: int = arg(2, "passes over the training pairs", min=1, quick=1)
    lr: float = arg(2e-3, "AdamW learning rate for the LoRA weights", gt=0)
    batch_size: int = arg(8, "pairs per training step", min=1)
    lora_rank: int = arg(8, "rank r of each LoRA update B @ A", min=1)
    lora_layers: int = arg(6, "adapt only the top N transformer blocks (the rest needs no backward pass)", min=1,
                           quick=4)

    def validate(self) -> None:
        if not self.prompts:
            raise TourError("--prompts is empty; give at least one question, e.g. --prompts 'What is 2 + 2?'")
        if not self.topics:
            raise TourError("--topics is empty; name one or more chatterbot topics, e.g. --topics ai emotion")
