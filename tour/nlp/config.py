"""The NLP stop's Config, the tolerances and floor its checks use and its default texts; every part of the stop
imports them from here."""

from __future__ import annotations

from dataclasses import dataclass

from tour.core.config import FLOAT_DTYPES, BaseConfig, arg

NAME = "nlp"
ACCURACY_FLOOR = 0.85  # fine-tuned, held out, on the tour's corpus: quick mode (80 texts a topic) clears it, full ~0.92
RELOAD_TOL = 1e-4  # reloaded pipeline's scores vs the in-memory model's (probabilities, fp32)
FLOOR_SETTINGS = ("model", "data", "max_per_topic", "min_per_topic", "drop_topics", "epochs", "batch_size", "lr",
                  "head_lr", "max_length", "test_fraction")  # ACCURACY_FLOOR holds for these as the tour sets them
EMBED_TOL = 1e-3  # embed() vs the pipelines' sentence vectors (unit length, fp32; padding changes the kernels)
# In bf16 the three ways differed by 2.4e-3 (quick run, AMX CPU): each sums in its own order and every sum rounds to
# 8 bits, so a lower dtype's tolerance is one epsilon of it (embed_tol); a wrong pooling differs by ~0.1 or more.
QUERIES = ["what is a function in programming?", "i feel lonely and sad today",
           "who was the first president of the united states?", "can a machine ever really think?"]
SENTENCES = ["how do i write a for loop in python?", "i am so happy i could dance", "who painted the mona lisa?",
             "do you think robots will ever be conscious?"]


@dataclass
class Config(BaseConfig):
    model: str | None = arg(None, "encoder: a local folder or hub name (unset: all-MiniLM-L6-v2, offline)")
    data: str | None = arg(None, "your own CSV, TSV, JSON (lines) or Parquet file with text,label columns (unset: "
                                 "chatterbot-corpus topics)")
    max_per_topic: int | None = arg(None, "at most this many texts per topic, drawn at random (unset: all)", min=2,
                                    quick=80)
    min_per_topic: int = arg(100, "corpus topics with fewer texts than this are dropped (too small to learn)",
                              min=2)
    drop_topics: list[str] = arg(["conversations", "psychology"],
                                 "corpus files of small talk, not a subject ('you are cruel', 'hello'): dropped")
    epochs: int = arg(3, "fine-tuning passes over the training split", min=1)
    batch_size: int = arg(16, "texts per training step", min=1)
    lr: float = arg(1e-4, "AdamW learning rate of the pretrained encoder", gt=0)
    head_lr: float = arg(2e-3, "learning rate of the new classification head: it starts from random weights", gt=0)
    max_length: int = arg(64, "tokens kept per text when training", min=8, quick=32)
    test_fraction: float = arg(0.2, "share of each topic held out for testing", min=0.05, max=0.9)
    queries: list[str] = arg(QUERIES, "semantic-search queries", nonblank=True)
    bench_texts: int = arg(128, "texts embedded by each path in the throughput benchmark", min=1, quick=64)
    # quick: one timed run after the warm-up (the vectors are still compared on every way): the three runs cost
    # ~30 s of a quick run on 2 busy cores, and --quick's rates are a glance, not a benchmark
    repeats: int = arg(3, "timed runs of each embedding way after one warm-up (median)", min=1, quick=1)
    dtype: str = arg("auto", "dtype of the inference parts (embeddings, search, the reloaded pipeline); fine-tuning "
                             "stays fp32. auto: bf16 where the hardware has a bf16 fast path", choices=FLOAT_DTYPES)
