"""The NLP stop's scoring helpers: the linear-probe baseline, held-out metrics with a confusion matrix, semantic
search and a throughput timer. A helper of tour/nlp.py only (its data comes from tour.core.data).
"""

from __future__ import annotations

from pathlib import Path


# the baseline: a linear probe on frozen embeddings ---------------------------------------------------------------
def linear_probe(train_x, train_y, test_x, test_y) -> float:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=2000, C=10.0).fit(train_x.numpy(), train_y)
    return float(clf.score(test_x.numpy(), test_y))


# scoring: held-out metrics and the confusion matrix --------------------------------------------------------------
def evaluate(y_true, y_pred, labels: list[str], png: Path) -> tuple[float, float]:
    from sklearn.metrics import ConfusionMatrixDisplay, accuracy_score, f1_score

    from tour.core import plots

    fig = plots.figure(6.4, 4.8, dpi=120)
    disp = ConfusionMatrixDisplay.from_predictions(y_true, y_pred, labels=list(range(len(labels))),
                                                   display_labels=labels, xticks_rotation=45, colorbar=False,
                                                   ax=fig.subplots())  # our own Figure: pyplot stays untouched
    disp.ax_.set_title("held-out confusion matrix")
    plots.save(fig, png)
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
    from tour.core.device import median_ms

    return n / (median_ms(fn, device, repeats, warmup=0) / 1e3)  # the caller has warmed up already
