"""The NLP stop's scoring helpers: the linear-probe baseline, the fine-tuned model's predictions, held-out
metrics with a confusion matrix, save + reload through pipeline(), semantic search, and the embedding throughput
(per-sentence pipeline, batched pipeline, embed(); same vectors checked). A helper of tour/nlp.py only (its data
comes from tour.core.data).
"""

from __future__ import annotations

from pathlib import Path


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
def save_and_reload(model, tokenizer, folder: Path, sentences: list[str], device, max_length: int, dtype):
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
    return [g[0] for g in got], [m[0] for m in mem] == [g[0] for g in got], diff


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
    from tour.core.timing import median_ms

    return n / (median_ms(fn, device, repeats, warmup=0) / 1e3)  # the caller has warmed up already


# fast inference: three ways to embed many texts, side by side ----------------------------------------------
def naive_embed(texts, extractor):
    """What a first attempt looks like: one pipeline call per sentence, then pool by hand."""
    import torch

    rows = [extractor(t, return_tensors=True)[0].float().mean(0) for t in texts]
    return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def pipeline_embed(texts, extractor, batch_size: int):
    """The pipeline's own batching (`batch_size=`): the fair baseline. A batched pipeline pads every text to its
    batch's longest, and its outputs keep the padding rows, so pool only each text's real tokens."""
    import torch

    lengths = [len(ids) for ids in extractor.tokenizer(list(texts), truncation=True)["input_ids"]]
    out = extractor(list(texts), batch_size=batch_size, return_tensors=True, truncation=True)
    rows = [o[0, :n].float().mean(0) for o, n in zip(out, lengths)]
    return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def throughput(texts, tokenizer, encoder, device, repeats: int, embed, batch_size: int = 64) -> dict:
    """Texts per second: per-sentence pipeline, pipeline(batch_size=N), and `embed` (the stop's own batched,
    length-sorted embedding under inference_mode: passed in, so this helper never imports its stop). Same vectors
    checked for all three."""
    from transformers import pipeline

    extractor = pipeline("feature-extraction", model=encoder, tokenizer=tokenizer, device=device)
    ways = {"pipeline per sentence": lambda some: naive_embed(some, extractor),
            f"pipeline(batch_size={batch_size})": lambda some: pipeline_embed(some, extractor, batch_size),
            "batched embed()": lambda some: embed(some, tokenizer, encoder, device, batch_size=batch_size)}
    for way in ways.values():
        way(texts[:8])  # warm-up: a way's first call pays its one-off set-up; a few texts do that (a whole
        # extra pass over all of them cost as much as a timed run)
    last = {}  # each way's vectors from its timed runs: what the parity check compares
    timed = lambda name, way: lambda: last.__setitem__(name, way(texts))  # noqa: E731
    rates = {name: median_rate(timed(name, way), len(texts), device, repeats) for name, way in ways.items()}
    reference = embed(texts, tokenizer, encoder, device, batch_size=batch_size)
    diff = max(float((vectors - reference).abs().max()) for vectors in last.values())
    base = rates[f"pipeline(batch_size={batch_size})"]
    print(f"  {len(texts)} texts, median of {repeats}: " + ", ".join(f"{k} {v:.0f}/s" for k, v in rates.items()))
    print(f"  embed() vs the batched pipeline: {rates['batched embed()'] / base:.1f}x; vs per sentence: "
          f"{rates['batched embed()'] / rates['pipeline per sentence']:.1f}x; same vectors (max diff {diff:.1e})")
    return {"rates": rates, "max_diff": diff}
