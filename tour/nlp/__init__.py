"""NLP with transformers + datasets: fine-tune all-MiniLM-L6-v2 on a real corpus, offline, end to end.

Topic classification on chatterbot-corpus (or your own table via --data): a linear-probe baseline, fine-tuning,
accuracy/macro-F1 and a confusion matrix, save + reload through pipeline(), semantic search, fast batched embedding.
Run: `tour run nlp` (or `python -m tour.nlp`, `python examples/nlp.py`); `--quick` for a short run.
"""

from __future__ import annotations

from dataclasses import dataclass

from tour.core.cli import stop_main
from tour.core.config import out_dir
from tour.core.errors import require
from tour.core.results import BaseResult, BenchRow, BenchSettings, labelled
from tour.core.state import keeps_caller_state
from tour.nlp import embeddings, scoring, training  # light at import: their heavy imports are inside
from tour.nlp.config import (ACCURACY_FLOOR, EMBED_TOL, FLOOR_SETTINGS, NAME, QUERIES, RELOAD_TOL,  # noqa: F401
                             SENTENCES, Config)  # (the stop's API)
from tour.nlp.embeddings import Throughput
from tour.nlp.scoring import Reload
from tour.nlp.training import FineTune


@dataclass
class Result(BaseResult):
    """The data, then one part per section (`result.fine_tune.accuracy`, `result.throughput.speedup`)."""

    device: str
    dtype: str  # the inference parts' dtype that ran (bf16, fp32, ...)
    model: str
    labels: list[str]
    train_size: int
    test_size: int
    # 2) logistic regression on frozen, pooled embeddings: the baseline to beat
    probe_accuracy: float = labelled("frozen embeddings + logistic regression (the baseline)", "%")
    fine_tune: FineTune  # 3-4) the fine-tuned classifier: loss curve, held-out accuracy and macro F1
    reload: Reload  # 5) save_pretrained, reloaded with pipeline(): same labels and scores
    # 6) query -> [text, label, cosine] best first
    search_hits: dict[str, list[list]] = labelled("semantic search: best matches per query",
                                                  columns={"query": ("query", ""),
                                                           "text": ("sentence", ""),
                                                           "label": ("label", ""),
                                                           "cosine": ("cosine similarity", "")})
    throughput: Throughput  # 7) three ways to embed many texts, side by side, same vectors


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
    model, tuned = training.train_and_evaluate(cfg, name, labels, train, test, tokenizer, device, folder)
    print("5) save_pretrained, reload with pipeline('text-classification')")
    sentences, queries_text = your_texts(cfg, test, labels)
    reloaded = scoring.save_and_reload(model, tokenizer, folder / "model", sentences, device, cfg.max_length, dtype)

    print("6) semantic search with the encoder (mean pooling + normalisation)")
    if queries_text is not cfg.queries:
        print("  queries: your label names (--queries for your own)")
    queries = embeddings.embed(queries_text, tokenizer, encoder, device)
    hits = embeddings.search(queries_text, queries, vectors, full["text"], [labels[i] for i in full["label"]])

    print("7) fast inference: per-sentence pipeline, pipeline(batch_size=...), and embed()")
    speed = embeddings.throughput(full.shuffle(seed=cfg.seed)["text"][:cfg.bench_texts], tokenizer, encoder,
                                  device, cfg.repeats)
    return Result(device=str(device), dtype=dtypes.dtype_name(dtype), model=name, labels=labels, train_size=len(train),
                  test_size=len(test), probe_accuracy=probe, fine_tune=tuned, reload=reloaded, search_hits=hits,
                  throughput=speed)


def main(argv: list[str] | None = None) -> int:
    return stop_main(NAME, Config, run, argv, __doc__)


def bench_rows(settings: BenchSettings) -> list[BenchRow]:
    """`tour bench`'s throughput rows: texts from the offline corpus, each way against the batched pipeline (the
    stop's own section 7, `embeddings.throughput`)."""
    from tour.core.assets import chatterbot_english_dir
    from tour.core.data import corpus_rows
    from tour.core.device import get_device
    from tour.core.models import load_encoder

    require("transformers", "yaml", stop="the NLP bench rows")
    device = get_device(settings.device)
    texts = [r["text"] for r in corpus_rows(chatterbot_english_dir(), 1)][:64 if settings.quick else 256]
    tokenizer, encoder = load_encoder(device=device)
    t = embeddings.throughput(texts, tokenizer, encoder, device, 3 if settings.quick else settings.repeats)
    what, base = f"MiniLM, {len(texts)} texts", embeddings.batched_pipeline()  # the fair baseline

    def row(variant: str, rate: float) -> BenchRow:
        return BenchRow("throughput", what, base, variant, 1e3 / t.pipeline_batched_per_s, 1e3 / rate,
                        rate / t.pipeline_batched_per_s, t.embed_same, "ms per text")

    return [row(embeddings.PER_SENTENCE, t.naive_per_s), row(embeddings.EMBED, t.batched_per_s)]
