"""NLP with transformers + datasets: fine-tune all-MiniLM-L6-v2 on a real corpus, offline, end to end.

Topic classification on chatterbot-corpus (or your own table via --data): a linear-probe baseline, fine-tuning,
accuracy/macro-F1 and a confusion matrix, save + reload through pipeline(), semantic search, fast batched embedding.
Run: `tour run nlp` (or `python -m tour.nlp`, `python examples/nlp.py`); `--quick` for a short run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tour.core.cli import stop_main

from tour.core.config import out_dir
from tour.core.errors import require
from tour.core.results import BaseResult, BenchRow, BenchSettings, check, labelled
from tour.core.state import keeps_caller_state
from tour.nlp import embeddings, scoring, training  # light at import: their heavy imports are inside
from tour.nlp.config import (ACCURACY_FLOOR, EMBED_TOL, FLOOR_SETTINGS, NAME, QUERIES, RELOAD_TOL, SENTENCES,
                             Config)

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


def load_data(cfg: Config):
    from tour.core import data as nlp_data

    print("1) data with datasets: ClassLabel, stratified split")
    full = nlp_data.labelled_dataset(cfg.data, cfg.min_per_topic, cfg.drop_topics, cfg.max_per_topic, cfg.seed)
    train, test = nlp_data.split(full, cfg.test_fraction, cfg.seed)
    labels = full.features["label"].names
    print(f"  {len(full)} texts, {len(labels)} labels {labels}: train {len(train)}, test {len(test)}")
    return full, train, test, labels


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
    vectors = embeddings.embed(full["text"], tokenizer, encoder, device)
    index = {t: i for i, t in enumerate(full["text"])}
    pick = lambda ds: vectors[[index[t] for t in ds["text"]]]  # noqa: E731
    probe = scoring.linear_probe(pick(train), train["label"], pick(test), test["label"])
    print(f"  logistic regression: held-out accuracy {probe:.3f}")

    folder = out_dir(cfg, NAME)
    model, losses, seconds, acc, f1 = training.train_and_evaluate(cfg, name, labels, train, test, tokenizer, device,
                                                                  folder)
    print("5) save_pretrained, reload with pipeline('text-classification')")
    sentences, queries_text = your_texts(cfg, test, labels)
    preds, same, diff = scoring.save_and_reload(model, tokenizer, folder / "model", sentences, device,
                                                cfg.max_length, dtype)
    print(f"  reloaded pipeline agrees with the in-memory model: {same} (max score diff {diff:.1e})")

    print("6) semantic search with the encoder (mean pooling + normalisation)")
    if queries_text is not cfg.queries:
        print("  queries: your label names (--queries for your own)")
    queries = embeddings.embed(queries_text, tokenizer, encoder, device)
    hits = embeddings.search(queries_text, queries, vectors, full["text"], [labels[i] for i in full["label"]])

    print("7) fast inference: per-sentence pipeline, pipeline(batch_size=...), and embed()")
    speed = embeddings.throughput(full.shuffle(seed=cfg.seed)["text"][:cfg.bench_texts], tokenizer, encoder,
                                  device, cfg.repeats)
    rates = list(speed["rates"].values())
    return Result(device=str(device), dtype=dtypes.dtype_name(dtype), model=name, labels=labels, train_size=len(train),
                  test_size=len(test),
                  probe_accuracy=probe, accuracy=acc, macro_f1=f1, losses=losses, train_seconds=seconds,
                  confusion_png=str(folder / "confusion_matrix.png"), saved_dir=str(folder / "model"),
                  reload_predictions=preds, reload_matches=same, reload_max_score_diff=diff, search_hits=hits,
                  naive_per_s=rates[0], pipeline_batched_per_s=rates[1], batched_per_s=rates[2],
                  speedup=rates[2] / rates[1], embed_max_diff=speed["max_diff"], reload_scores_close=diff < RELOAD_TOL,
                  embed_tol=embeddings.embed_tol(dtype), embed_same=speed["max_diff"] < embeddings.embed_tol(dtype),
                  learned=assets.floor(acc >= ACCURACY_FLOOR if cfg.stock(*FLOOR_SETTINGS) else None, "learned",
                                       name))


def main(argv: list[str] | None = None) -> int:
    return stop_main(NAME, Config, run, argv, __doc__)


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
    speed = embeddings.throughput(texts, tokenizer, encoder, device, 3 if settings.quick else settings.repeats)
    base_name, base = list(speed["rates"].items())[1]  # the batched pipeline: the fair baseline
    return [BenchRow("throughput", f"MiniLM, {len(texts)} texts", base_name, name, 1e3 / base, 1e3 / rate,
                     rate / base, speed["max_diff"] < EMBED_TOL, "ms per text")
            for name, rate in speed["rates"].items() if name != base_name]
