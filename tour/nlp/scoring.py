"""The NLP stop's scoring: the linear-probe baseline, the fine-tuned model's predictions, held-out metrics with a
confusion matrix, and save + reload through pipeline() (its data comes from tour.core.data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tour.core.results import check, labelled
from tour.nlp.config import RELOAD_TOL


# the baseline: a linear probe on frozen embeddings ---------------------------------------------------------------
def linear_probe(train_x, train_y, test_x, test_y) -> float:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=2000, C=10.0).fit(train_x.numpy(), train_y)
    return float(clf.score(test_x.numpy(), test_y))


# the fine-tuned model's predictions ------------------------------------------------------------------------------
def predict(model, tokenizer, texts, device, max_length: int, batch_size: int = 64):
    """Class probabilities from the in-memory model, in input order."""
    import torch

    model.eval()
    probs = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length,
                              padding=True, return_tensors="pt").to(device)
            probs.append(model(**batch).logits.float().softmax(-1).cpu())
    return torch.cat(probs)


# save and reload through pipeline() ------------------------------------------------------------------------------
@dataclass
class Reload:
    """Section 5: the fine-tuned model saved, reloaded with pipeline(), and held to the in-memory model's answers
    (`result.reload.reload_matches`)."""

    saved_dir: str = ""
    reload_predictions: list[str] = field(default_factory=list)  # pipeline() on the saved folder
    reload_matches: bool | None = check("the saved folder, reloaded with pipeline(), predicts the same labels as "
                                        "the in-memory model", None)
    reload_max_score_diff: float = labelled("reloaded vs in-memory model, max score difference", "", 0.0)
    reload_scores_close: bool | None = check(f"reloaded scores within {RELOAD_TOL:g} of the in-memory model's", None)


def save_and_reload(model, tokenizer, folder: Path, sentences: list[str], device, max_length: int, dtype) -> Reload:
    """save_pretrained (safetensors, fp32) + tokenizer, then pipeline() on the folder in `dtype`, one batch; its
    labels and scores must match the in-memory model's in the same dtype on the same padded batch."""
    import copy

    from transformers import pipeline

    from tour.core.files import writes_to

    with writes_to(folder, owned=True):  # a full disk: one line naming the folder, and no half-saved model
        model.save_pretrained(folder)  # model.safetensors + config.json (with id2label)
        tokenizer.save_pretrained(folder)
    probs = predict(copy.deepcopy(model).to(dtype), tokenizer, sentences, device, max_length)
    mem = [(model.config.id2label[int(i)], float(p)) for p, i in zip(*probs.max(-1))]
    clf = pipeline("text-classification", model=str(folder), device=device, dtype=dtype)
    got = [(d["label"], float(d["score"]))
           for d in clf(sentences, batch_size=len(sentences), truncation=True, max_length=max_length)]
    diff = max(abs(a[1] - b[1]) for a, b in zip(mem, got))
    for text, (label, score) in zip(sentences, got):
        print(f"  {text!r:48} -> {label} ({score:.2f})")
    same = [m[0] for m in mem] == [g[0] for g in got]
    print(f"  reloaded pipeline agrees with the in-memory model: {same} (max score diff {diff:.1e})")
    return Reload(saved_dir=str(folder), reload_predictions=[g[0] for g in got], reload_matches=same,
                  reload_max_score_diff=diff, reload_scores_close=diff < RELOAD_TOL)


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
