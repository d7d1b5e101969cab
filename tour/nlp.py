"""NLP with transformers + datasets: fine-tune all-MiniLM-L6-v2 on a real corpus, offline, end to end.

Topic classification on chatterbot-corpus (or your own table via --data): a linear-probe baseline, fine-tuning,
accuracy/macro-F1 and a confusion matrix, save + reload through pipeline(), semantic search, fast batched embedding.
Run: `tour run nlp` (or `python -m tour.nlp`, `python examples/nlp.py`); `--quick` for a short run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tour.core.cli import stop_main
from tour.core.config import FLOAT_DTYPES, BaseConfig, arg, out_dir
from tour.core.errors import TourError, require
from tour.core.results import BaseResult, BenchRow, BenchSettings, check, labelled
from tour.core.state import keeps_caller_state
from tour import nlp_eval  # the stop's scoring helpers: light at import (their heavy imports are inside)
from tour.nlp_eval import predict, save_and_reload  # the fine-tuned model's checks: the stop's API names them too

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
    bench_texts: int = arg(256, "texts embedded by each path in the throughput benchmark", min=1, quick=64)
    # quick: one timed run after the warm-up (the vectors are still compared on every way): the three runs cost
    # ~30 s of a quick run on 2 busy cores, and --quick's rates are a glance, not a benchmark
    repeats: int = arg(3, "timed runs of each embedding way after one warm-up (median)", min=1, quick=1)
    dtype: str = arg("auto", "dtype of the inference parts (embeddings, search, the reloaded pipeline); fine-tuning "
                             "stays fp32. auto: bf16 where the hardware has a bf16 fast path", choices=FLOAT_DTYPES)


@dataclass
class Result(BaseResult):
    device: str
    dtype: str  # the inference parts' dtype that ran (bf16, fp32, ...)
    model: str
    labels: list[str]
    train_size: int
    test_size: int
    # logistic regression on frozen, pooled embeddings: the baseline to beat
    probe_accuracy: float = labelled("frozen embeddings + logistic regression (the baseline)", "%")
    accuracy: float = labelled("fine-tuned accuracy, held out", "%")  # fine-tuned, on the held-out split
    macro_f1: float = labelled("fine-tuned macro F1, held out")
    losses: list[float] = labelled("training loss per epoch", default_factory=list)  # mean training loss per epoch
    train_seconds: float = labelled("fine-tuning time", "s", 0.0)
    confusion_png: str = labelled("confusion matrix on the held-out split", "", "")
    saved_dir: str = ""
    reload_predictions: list[str] = field(default_factory=list)  # pipeline() on the saved folder
    reload_matches: bool | None = check("the saved folder, reloaded with pipeline(), predicts the same labels as "
                                        "the in-memory model", None)
    reload_max_score_diff: float = labelled("reloaded vs in-memory model, max score difference", "", 0.0)
    # query -> [text, label, cosine] best first
    search_hits: dict[str, list[list]] = labelled("semantic search: best matches per query", default_factory=dict,
                                                  columns={"query": ("query", ""),
                                                           "text": ("sentence", ""),
                                                           "label": ("label", ""),
                                                           "cosine": ("cosine similarity", "")})
    # per-sentence pipeline("feature-extraction")
    naive_per_s: float = labelled("pipeline, one sentence at a time", "sentences/s", 0.0)
    # the same pipeline with batch_size=64: the fair baseline
    pipeline_batched_per_s: float = labelled("pipeline, batch_size=64", "sentences/s", 0.0)
    # embed(): batched, length-sorted, inference_mode
    batched_per_s: float = labelled("embed(): batched, length-sorted", "sentences/s", 0.0)
    # embed() over the batched pipeline
    speedup: float = labelled("embedding: embed() vs the batched pipeline", "x", 0.0, parity="embed_same")
    # batched vs naive sentence vectors
    embed_max_diff: float = labelled("embed() vs one at a time, max difference", "", 0.0)
    reload_scores_close: bool | None = check(f"reloaded scores within {RELOAD_TOL:g} of the in-memory model's", None)
    embed_tol: float = 0.0  # the tolerance embed_same used: EMBED_TOL in fp32, one epsilon of a lower dtype
    embed_same: bool | None = check(f"embed() and both pipelines give the same sentence vectors (max diff "
                                    f"< {EMBED_TOL:g} in fp32, one epsilon in bf16/fp16)", None)
    learned: bool | None = check(f"fine-tuned accuracy >= {ACCURACY_FLOOR} on the tour's corpus (not run on your "
                                 "own --data, --model or training settings)", None)


# the encoder: tour.core.models.load_encoder (MiniLM offline, or --model), shared with compile and bench -----


def mean_pool(hidden, mask):
    """Average the token vectors a sentence really has (padding masked out), as all-MiniLM-L6-v2 was trained."""
    from tour.core.models import mean_pool as pool  # one copy, shared with the precision stop

    return pool(hidden, mask)


def embed(texts, tokenizer, model, device, batch_size: int = 64, max_tokens: int = 512):
    """Unit-length sentence vectors (float32, CPU, input order), from length-sorted, token-capped batches."""
    import torch

    from tour.core.data import length_batches

    texts = list(texts)
    if not texts:
        raise TourError("nothing to embed: the text list is empty")
    enc = tokenizer(texts, truncation=True, max_length=min(tokenizer.model_max_length, 512))
    out = torch.empty(len(texts), model.config.hidden_size)
    with torch.inference_mode():
        for idx in length_batches([len(ids) for ids in enc["input_ids"]], batch_size, max_tokens):
            batch = tokenizer.pad({k: [enc[k][i] for i in idx] for k in enc}, return_tensors="pt").to(device)
            hidden = model(**batch).last_hidden_state
            out[idx] = mean_pool(hidden, batch["attention_mask"]).float().cpu()
    return out


# 3) fine-tuning --------------------------------------------------------------------------------------------------
def classifier(name: str, labels: list[str], device):
    from transformers import AutoModelForSequenceClassification

    from tour.core.models import from_pretrained

    # The checkpoint is a bare encoder: from_pretrained adds a fresh classification head of len(labels) outputs.
    return from_pretrained(AutoModelForSequenceClassification, name, num_labels=len(labels),
                            id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}
                            ).to(device)


def fine_tune(cfg: Config, model, train_tok, collator, device, epochs: int) -> list[float]:
    """A plain loop: dynamic padding per batch (the collator) over batches of similar lengths, AdamW with linear
    warm-up/decay, autocast."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    from tour.core.data import grouped_batches
    from tour.core.dtypes import autocast

    # The collator pads a batch to its longest text: in random batches that was 3.5x the real tokens of the tour's
    # corpus (16 tokens on average, up to 64), so each epoch draws batches of near neighbours in length instead.
    lengths = [len(ids) for ids in train_tok["input_ids"]]
    loaders = [DataLoader(train_tok, batch_sampler=grouped_batches(lengths, cfg.batch_size, cfg.seed + epoch),
                          collate_fn=collator) for epoch in range(epochs)]
    # Word embeddings stay frozen: 12M of the 23M weights, costly to update, and a few hundred texts can't
    # improve them. The new head learns fast, the pretrained body slowly, so each gets its own learning rate.
    model.get_input_embeddings().requires_grad_(False)
    body = model.base_model_prefix + "."
    groups = [{"params": [p for n, p in model.named_parameters() if p.requires_grad and n.startswith(body) == b],
               "lr": lr} for b, lr in ((True, cfg.lr), (False, cfg.head_lr))]
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    steps = sum(len(loader) for loader in loaders)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=steps // 10, num_training_steps=steps)
    losses = []
    model.train()
    for epoch, loader in enumerate(loaders):
        total = 0.0
        for batch in tqdm(loader, desc=f"  epoch {epoch + 1}/{epochs}", leave=False, unit="batch"):
            with autocast(device):
                loss = model(**batch.to(device)).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(batch["labels"])
        losses.append(total / len(train_tok))
        print(f"  epoch {epoch + 1}/{epochs}: mean loss {losses[-1]:.3f}")
    return losses


# 4-7) predictions, save + reload, search, throughput: tour/nlp_eval.py; the same-vectors check's tolerance --
def embed_tol(dtype) -> float:
    """EMBED_TOL, or one rounding step of a lower-precision dtype (bf16: 7.8e-3), whichever is larger."""
    import torch

    return max(EMBED_TOL, torch.finfo(dtype).eps)


def load_data(cfg: Config):
    from tour.core import data as nlp_data

    print("1) data with datasets: ClassLabel, stratified split")
    full = nlp_data.labelled_dataset(cfg.data, cfg.min_per_topic, cfg.drop_topics, cfg.max_per_topic, cfg.seed)
    train, test = nlp_data.split(full, cfg.test_fraction, cfg.seed)
    labels = full.features["label"].names
    print(f"  {len(full)} texts, {len(labels)} labels {labels}: train {len(train)}, test {len(test)}")
    return full, train, test, labels


def train_and_evaluate(cfg: Config, name, labels, train, test, tokenizer, device, folder: Path):
    from transformers import DataCollatorWithPadding

    from tour.core import data as nlp_data

    print("3) fine-tuning AutoModelForSequenceClassification")
    model = classifier(name, labels, device)
    collator = DataCollatorWithPadding(tokenizer)  # pads each batch to its own longest text
    start = time.perf_counter()
    losses = fine_tune(cfg, model, nlp_data.tokenized(train, tokenizer, cfg.max_length), collator, device, cfg.epochs)
    seconds = time.perf_counter() - start
    print("4) evaluation on the held-out split")
    pred = predict(model, tokenizer, test["text"], device, cfg.max_length).argmax(-1).tolist()
    acc, f1 = nlp_eval.evaluate(test["label"], pred, labels, folder / "confusion_matrix.png")
    print(f"  accuracy {acc:.3f}, macro-F1 {f1:.3f} on {len(test)} texts; {cfg.epochs} epochs in {seconds:.0f} s; "
          f"confusion matrix: {folder / 'confusion_matrix.png'}")
    return model, losses, seconds, acc, f1


def your_texts(cfg: Config, test, labels: list[str], n: int = 4) -> tuple[list[str], list[str]]:
    """Sentences to classify and queries to search. With --data, the tour's own (programming, the Mona Lisa) mean
    nothing to your labels, so held-out texts of yours stand in, printed with their true labels, and your label
    names are the queries (your --queries still win)."""
    if not cfg.data:
        return SENTENCES, cfg.queries
    held = test.select(range(min(n, len(test))))
    print(f"  {len(held)} held-out texts of yours (true labels: {', '.join(labels[i] for i in held['label'])}):")
    return list(held["text"]), cfg.queries if cfg.queries != QUERIES else labels[:n]  # a datasets Column: a list


@keeps_caller_state
def run(cfg: Config) -> Result:
    require("transformers", "datasets", "yaml", stop="the NLP stop")
    import datasets

    from tour.core import assets
    from tour.core import device as dev
    from tour.core import dtypes
    from tour.core.models import load_encoder, resolve_model

    name = resolve_model(cfg.model)  # a mistyped path fails here, before anything loads
    device = dev.get_device(cfg.device)
    dev.seed_everything(cfg.seed)
    datasets.disable_progress_bars()  # the stop prints its own summary lines
    dtype, why = dtypes.choose_dtype(cfg.dtype, device)
    print(f"[nlp] {dev.describe(cfg.device)}\n  inference (embeddings, search, reloaded pipeline): {why}; "
          "fine-tuning: fp32")
    full, train, test, labels = load_data(cfg)  # cheap, so bad data fails before the model loads
    tokenizer, encoder = load_encoder(name, device, dtype)

    print("2) baseline: a linear probe on frozen, mean-pooled encoder embeddings")
    vectors = embed(full["text"], tokenizer, encoder, device)
    index = {t: i for i, t in enumerate(full["text"])}
    pick = lambda ds: vectors[[index[t] for t in ds["text"]]]  # noqa: E731
    probe = nlp_eval.linear_probe(pick(train), train["label"], pick(test), test["label"])
    print(f"  logistic regression: held-out accuracy {probe:.3f}")

    folder = out_dir(cfg, NAME)
    model, losses, seconds, acc, f1 = train_and_evaluate(cfg, name, labels, train, test, tokenizer, device, folder)
    print("5) save_pretrained, reload with pipeline('text-classification')")
    sentences, queries_text = your_texts(cfg, test, labels)
    preds, same, diff = save_and_reload(model, tokenizer, folder / "model", sentences, device, cfg.max_length,
                                        dtype)
    print(f"  reloaded pipeline agrees with the in-memory model: {same} (max score diff {diff:.1e})")

    print("6) semantic search with the encoder (mean pooling + normalisation)")
    if queries_text is not cfg.queries:
        print("  queries: your label names (--queries for your own)")
    queries = embed(queries_text, tokenizer, encoder, device)
    hits = nlp_eval.search(queries_text, queries, vectors, full["text"], [labels[i] for i in full["label"]])

    print("7) fast inference: per-sentence pipeline, pipeline(batch_size=...), and embed()")
    speed = nlp_eval.throughput(full.shuffle(seed=cfg.seed)["text"][:cfg.bench_texts], tokenizer, encoder, device,
                                cfg.repeats, embed)
    rates = list(speed["rates"].values())
    return Result(device=str(device), dtype=dtypes.dtype_name(dtype), model=name, labels=labels, train_size=len(train),
                  test_size=len(test),
                  probe_accuracy=probe, accuracy=acc, macro_f1=f1, losses=losses, train_seconds=seconds,
                  confusion_png=str(folder / "confusion_matrix.png"), saved_dir=str(folder / "model"),
                  reload_predictions=preds, reload_matches=same, reload_max_score_diff=diff, search_hits=hits,
                  naive_per_s=rates[0], pipeline_batched_per_s=rates[1], batched_per_s=rates[2],
                  speedup=rates[2] / rates[1], embed_max_diff=speed["max_diff"], reload_scores_close=diff < RELOAD_TOL,
                  embed_tol=embed_tol(dtype), embed_same=speed["max_diff"] < embed_tol(dtype),
                  learned=assets.floor(acc >= ACCURACY_FLOOR if cfg.stock(*FLOOR_SETTINGS) else None, "learned",
                                       name))


def main(argv: list[str] | None = None) -> int:
    return stop_main(NAME, Config, run, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())


def bench_rows(settings: BenchSettings) -> list[BenchRow]:
    """`tour bench`'s throughput rows: texts from the offline corpus, each way against the batched pipeline."""
    from tour.core.assets import chatterbot_english_dir
    from tour.core.data import corpus_rows
    from tour.core.device import get_device
    from tour.core.models import load_encoder

    require("transformers", "yaml", stop="the NLP bench rows")
    device = get_device(settings.device)
    texts = [r["text"] for r in corpus_rows(chatterbot_english_dir(), 1)][:64 if settings.quick else 256]
    tokenizer, encoder = load_encoder(device=device)
    speed = nlp_eval.throughput(texts, tokenizer, encoder, device, 3 if settings.quick else settings.repeats, embed)
    base_name, base = list(speed["rates"].items())[1]  # the batched pipeline: the fair baseline
    return [BenchRow("throughput", f"MiniLM, {len(texts)} texts", base_name, name, 1e3 / base, 1e3 / rate,
                     rate / base, speed["max_diff"] < EMBED_TOL, "ms per text")
            for name, rate in speed["rates"].items() if name != base_name]
