"""The NLP stop's sentence vectors: the encoder's mean-pooled, unit-length embeddings (embed), semantic search over
them, and the embedding throughput of three ways side by side (per-sentence pipeline, batched pipeline, embed();
same vectors checked: the Result's `throughput` part, which `tour bench` reads too). The encoder itself is
tour.core.models.load_encoder (MiniLM offline, or --model)."""

from __future__ import annotations

from dataclasses import dataclass

from tour.core.errors import TourError
from tour.core.results import check, labelled
from tour.nlp.config import EMBED_TOL

BATCH_SIZE = 64  # sentences per call of the batched ways
PER_SENTENCE = "pipeline per sentence"  # the three ways' names, as printed and as `tour bench` rows name them
EMBED = "batched embed()"


def batched_pipeline(batch_size: int = BATCH_SIZE) -> str:
    return f"pipeline(batch_size={batch_size})"


def mean_pool(hidden, mask):
    """Average the token vectors a sentence really has (padding masked out), as all-MiniLM-L6-v2 was trained."""
    from tour.core.models import mean_pool as pool  # one copy, shared with the precision stop

    return pool(hidden, mask)


def embed(texts, tokenizer, model, device, batch_size: int = BATCH_SIZE, max_tokens: int = 512):
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


@dataclass
class Throughput:
    """Section 7: texts per second of each way to embed many texts, and whether they give the same vectors
    (`result.throughput.speedup`)."""

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
    embed_tol: float = 0.0  # the tolerance embed_same used: EMBED_TOL in fp32, one epsilon of a lower dtype
    embed_same: bool | None = check(f"embed() and both pipelines give the same sentence vectors (max diff "
                                    f"< {EMBED_TOL:g} in fp32, one epsilon in bf16/fp16)", None)


def throughput(texts, tokenizer, encoder, device, repeats: int, batch_size: int = BATCH_SIZE) -> Throughput:
    """Texts per second: per-sentence pipeline, pipeline(batch_size=N), and embed() (batched, length-sorted, under
    inference_mode). Same vectors checked for all three, within one rounding step of the encoder's dtype."""
    from transformers import pipeline

    from tour.core.timing import output_and_median_ms

    extractor = pipeline("feature-extraction", model=encoder, tokenizer=tokenizer, device=device)
    batched = batched_pipeline(batch_size)
    ways = {PER_SENTENCE: lambda some: naive_embed(some, extractor),
            batched: lambda some: pipeline_embed(some, extractor, batch_size),
            EMBED: lambda some: embed(some, tokenizer, encoder, device, batch_size=batch_size)}
    for way in ways.values():
        way(texts[:8])  # warm-up: a way's first call pays its one-off set-up; a few texts do that (a whole
        # extra pass over all of them cost as much as a timed run)
    # each way's vectors come from its timed runs (what the parity check compares); warmed up above
    timed = {name: output_and_median_ms(lambda way=way: way(texts), device, repeats) for name, way in ways.items()}
    rates = {name: len(texts) / (ms / 1e3) for name, (_, ms) in timed.items()}
    reference = timed[EMBED][0]  # embed()'s own vectors, against which both pipelines' are held
    diff = max(float((vectors - reference).abs().max()) for vectors, _ in timed.values())
    base = rates[batched]
    print(f"  {len(texts)} texts, median of {repeats}: " + ", ".join(f"{k} {v:.0f}/s" for k, v in rates.items()))
    print(f"  embed() vs the batched pipeline: {rates[EMBED] / base:.1f}x; vs per sentence: "
          f"{rates[EMBED] / rates[PER_SENTENCE]:.1f}x; same vectors (max diff {diff:.1e})")
    tol = embed_tol(encoder.dtype)
    return Throughput(naive_per_s=rates[PER_SENTENCE], pipeline_batched_per_s=base, batched_per_s=rates[EMBED],
                      speedup=rates[EMBED] / base, embed_max_diff=diff, embed_tol=tol, embed_same=diff < tol)
