"""The NLP stop's data and scoring: topic-labelled texts from chatterbot-corpus, or the user's own CSV/JSON.

Everything goes through `datasets`: `Dataset.from_list` / `from_csv` / `from_json`, a `ClassLabel` feature, a
seeded stratified `train_test_split`, and `map(batched=True)` for tokenisation. Then the probe baseline, the
metrics (accuracy, macro-F1, a confusion-matrix PNG), nearest-neighbour search and a timer. Used by tour/nlp.py.
"""

from __future__ import annotations

from pathlib import Path

from tour.errors import TourError

LOADERS = {".csv": "from_csv", ".json": "from_json", ".jsonl": "from_json"}


def corpus_rows(folder: Path, min_per_topic: int, drop: list[str] = ()) -> list[dict]:
    """Every utterance of every English topic file, labelled with its file's topic.

    Cleaning, and why: utterances are lower-cased and de-duplicated within a topic (tech_support's 2,100 lines
    are 20 sentences repeated); a sentence found under two topics says nothing about either, so it goes; topics
    left with fewer than `min_per_topic` texts are too small to learn and to test on, so they go too; `drop`
    names files that are small talk rather than a subject.
    """
    import yaml

    by_topic: dict[str, set[str]] = {}
    for path in sorted(p for p in folder.glob("*.yml") if p.stem not in drop):
        convs = yaml.safe_load(path.read_text(encoding="utf-8")).get("conversations") or []
        texts = {" ".join(str(u).split()).lower() for conv in convs for u in conv if u is not None}
        by_topic[path.stem] = {t for t in texts if len(t.split()) >= 2}  # one-word replies ("yes") carry no topic
    seen: dict[str, int] = {}
    for texts in by_topic.values():
        for t in texts:
            seen[t] = seen.get(t, 0) + 1
    rows = [{"text": t, "label": topic} for topic, texts in by_topic.items() if
            sum(seen[t] == 1 for t in texts) >= min_per_topic for t in sorted(texts) if seen[t] == 1]
    return rows


def user_dataset(path: str):
    """A user's CSV or JSON file with `text` and `label` columns."""
    from datasets import Dataset

    file = Path(path)
    if not file.is_file():
        raise TourError(f"--data file {path} not found; pass a CSV or JSON file with text,label columns")
    loader = LOADERS.get(file.suffix.lower())
    if loader is None:
        raise TourError(f"--data {path}: unknown file type {file.suffix!r}; use .csv, .json or .jsonl")
    try:
        ds = getattr(Dataset, loader)(str(file))
    except Exception as e:  # pyarrow/pandas raise many kinds for a malformed file
        raise TourError(f"--data {path} could not be read ({type(e).__name__}); check the file") from None
    missing = {"text", "label"} - set(ds.column_names)
    if missing:
        raise TourError(f"--data {path} lacks column(s) {', '.join(sorted(missing))} (has: "
                        f"{', '.join(ds.column_names) or 'none'}); it needs text and label columns")
    ds = ds.select_columns(["text", "label"]).map(lambda b: {"label": [str(x) for x in b["label"]],
                                                             "text": [str(x) for x in b["text"]]}, batched=True)
    return ds.filter(lambda b: [bool(t.strip()) for t in b["text"]], batched=True)


def labelled_dataset(data: str | None, min_per_topic: int, drop: list[str], max_per_topic: int | None, seed: int):
    """The default corpus or `data`, with the label as a ClassLabel feature (names sorted, so ids are stable)."""
    from datasets import ClassLabel, Dataset

    if data:
        ds = user_dataset(data)
    else:
        from tour.assets import chatterbot_english_dir

        ds = Dataset.from_list(corpus_rows(chatterbot_english_dir(), min_per_topic, drop))
    if len(ds) == 0:
        raise TourError("the data set has no texts; pass a --data file with non-empty text values")
    names = sorted(set(ds["label"]))
    if len(names) < 2:
        raise TourError(f"the data has one label only ({names[0]!r}); a classifier needs at least two")
    ds = ds.cast_column("label", ClassLabel(names=names))
    return cap_per_label(ds, max_per_topic, seed) if max_per_topic else ds


def cap_per_label(ds, cap: int, seed: int):
    """At most `cap` texts per label, drawn at random: quick mode trains on less, still real, data."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = np.array(ds["label"])
    keep = [i for lab in np.unique(labels) for i in rng.permutation(np.flatnonzero(labels == lab))[:cap]]
    return ds.select(sorted(int(i) for i in keep))


def split(ds, test_fraction: float, seed: int):
    """A seeded split that keeps each label's share in both halves; no text ends up in both."""
    counts = {}
    for lab in ds["label"]:
        counts[lab] = counts.get(lab, 0) + 1
    names = ds.features["label"].names
    small = [names[k] for k, n in counts.items() if n < 2]
    if small:
        raise TourError(f"label(s) {', '.join(small)} have a single text; each label needs two or more to split")
    parts = ds.train_test_split(test_size=test_fraction, seed=seed, stratify_by_column="label")
    train, test = parts["train"], parts["test"]
    overlap = set(train["text"]) & set(test["text"])
    if overlap:  # a user file may repeat a text; keep it in train only so the test score is honest
        test = test.filter(lambda b: [t not in overlap for t in b["text"]], batched=True)
    return train, test


def length_batches(lengths: list[int], batch_size: int, max_tokens: int) -> list[list[int]]:
    """Indices sorted by length, cut into batches of at most `batch_size` texts and about `max_tokens` tokens
    (padding included): short texts go many at a time, a few long ones no longer pad a whole batch."""
    batches, current = [], []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        if current and (len(current) == batch_size or (len(current) + 1) * lengths[i] > max_tokens):
            batches.append(current)
            current = []
        current.append(i)
    return batches + [current] if current else batches


def tokenized(ds, tokenizer, max_length: int):
    """Token ids via `map(batched=True)`; padding is left to the collator, per batch."""
    return ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=max_length), batched=True,
                  remove_columns=["text"]).rename_column("label", "labels")


# the baseline: a linear probe on frozen embeddings ---------------------------------------------------------------
def linear_probe(train_x, train_y, test_x, test_y) -> float:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=2000, C=10.0).fit(train_x.numpy(), train_y)
    return float(clf.score(test_x.numpy(), test_y))


# scoring: held-out metrics and the confusion matrix --------------------------------------------------------------
def evaluate(y_true, y_pred, labels: list[str], png: Path) -> tuple[float, float]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay, accuracy_score, f1_score

    disp = ConfusionMatrixDisplay.from_predictions(y_true, y_pred, labels=list(range(len(labels))),
                                                   display_labels=labels, xticks_rotation=45, colorbar=False)
    disp.ax_.set_title("held-out confusion matrix")
    disp.figure_.tight_layout()
    disp.figure_.savefig(png, dpi=120)
    plt.close(disp.figure_)
    return float(accuracy_score(y_true, y_pred)), float(f1_score(y_true, y_pred, average="macro"))


# semantic search and timing -----------------------------------------------------------------------------------
def search(queries: list[str], query_vecs, vectors, texts, labels, k: int = 3) -> dict[str, list[list]]:
    """Cosine similarity is a dot product of unit vectors: one matmul ranks the whole corpus."""
    import torch

    hits = {}
    for q, row in zip(queries, query_vecs @ vectors.T):
        top = torch.topk(row, k=min(k, len(texts)))
        hits[q] = [[texts[i], labels[i], round(float(s), 3)] for s, i in zip(top.values, top.indices.tolist())]
        print(f"  {q!r}")
        for text, label, s in hits[q]:
            print(f"      {s:.3f} [{label}] {text[:70]}")
    return hits


def median_rate(fn, n: int, device, repeats: int) -> float:
    """Items per second of `fn` (which handles n items), from the median of `repeats` timed calls."""
    from tour.device import median_ms

    return n / (median_ms(fn, device, repeats, warmup=0) / 1e3)  # the caller has warmed up already
