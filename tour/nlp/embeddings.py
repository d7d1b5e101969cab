"""The NLP stop's sentence vectors: the encoder's mean-pooled, unit-length embeddings (embed), semantic search over
them, and the embedding throughput of three ways side by side (per-sentence pipeline, batched pipeline, embed();
same vectors checked). The encoder itself is tour.core.models.load_encoder (MiniLM offline, or --model)."""

from __future__ import annotations

from tour.core.errors import TourError
from tour.nlp.config import EMBED_TOL

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


# the same-vectors check's tolerance ---------------------------------------------------------------------------
def embed_tol(dtype) -> float:
    """EMBED_TOL, or one rounding step of a lower-precision dtype (bf16: 7.8e-3), whichever is larger."""
    import torch

    return max(EMBED_TOL, torch.finfo(dtype).eps)


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


def throughput(texts, tokenizer, encoder, device, repeats: int, batch_size: int = 64) -> dict:
    """Texts per second: per-sentence pipeline, pipeline(batch_size=N), and embed() (batched, length-sorted, under
    inference_mode). Same vectors checked for all three."""
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
