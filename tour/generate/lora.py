"""The generate stop's probabilities and LoRA fine-tune: chatterbot-corpus question/answer pairs as chat turns,
held-out loss and perplexity, PEFT LoRA on the top layers, and the adapter's save/reload/merge round trip.
Imported only by the generate stop (tour/generate/).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from tour.core.config import out_dir
from tour.core.errors import TourError, require
from tour.core.results import check, labelled
from tour.generate.config import ADAPTER_TOL, LOGPROB_TOL, LORA_SETTINGS, MERGE_TOL, NAME, Config
from tour.generate.model import chat_inputs, decode, generate, load_model


@dataclass
class Probabilities:
    token_logprobs: list[dict] = field(default_factory=list)  # the first reply's tokens, log p, p
    logprob_check: float = 0.0  # max |generate's scores - one forward pass's log-softmax|
    logprobs_match: bool | None = check(f"generate()'s token scores match one forward pass's log-softmax (max diff "
                                        f"< {LOGPROB_TOL:g})", None)


@dataclass
class Lora:
    heldout_pairs: int = 0
    # held-out loss per answer token, before LoRA
    loss_before: float = labelled("held-out loss before LoRA", "nats/token", 0.0)
    ppl_before: float = labelled("held-out perplexity before LoRA", "", 0.0)
    loss_after: float = labelled("held-out loss after LoRA", "nats/token", 0.0)
    ppl_after: float = labelled("held-out perplexity after LoRA", "", 0.0)
    trainable_params: int = labelled("LoRA's trainable parameters", "", 0)
    trainable_share: float = labelled("trainable share of all parameters", "%", 0.0)  # trainable / all
    train_losses: list[float] = field(default_factory=list)
    train_seconds: float = labelled("LoRA training time", "s", 0.0)
    changed_question: str = ""
    reply_before: str = ""
    reply_after: str = ""
    adapter_dir: str = ""
    reload_max_diff: float = 0.0  # adapter reloaded on a fresh base model vs the trained one
    merged_max_diff: float = 0.0  # after merge_and_unload
    loss_png: str = labelled("LoRA training loss", "", "")
    lora_learned: bool | None = check("LoRA lowered the held-out loss on the chatterbot answers (not run with a "
                                      "--model or LoRA settings of your own)", None)
    adapter_reloads: bool | None = check(f"the saved adapter, reloaded on a fresh base model, gives the trained "
                                         f"model's logits (max diff <= {ADAPTER_TOL:g})", None)
    merge_exact: bool | None = check(f"merge_and_unload gives the adapter's logits (max diff < {MERGE_TOL:g})", None)


# data: question -> answer pairs of a few chatterbot topics --------------------------------------------------------
def qa_pairs(topics: list[str]) -> list[tuple[str, str]]:
    """The first two turns of every conversation in the topic files, whitespace-tidied and de-duplicated."""
    from tour.core import chatterbot  # the one corpus reader (the nlp stop reads it there too)

    known = chatterbot.topics()
    unknown = [t for t in topics if t not in known]
    if unknown:
        raise TourError(f"--topics {', '.join(unknown)}: no such chatterbot topic; choose from {', '.join(known)}")
    pairs: dict[tuple[str, str], None] = {}
    for topic in topics:
        for conv in chatterbot.conversations(topic):
            if len(conv) >= 2 and conv[0] and conv[1]:
                pairs[(conv[0], conv[1])] = None
    return list(pairs)


def split_pairs(pairs, test_fraction: float, seed: int, max_train: int):
    """A seeded shuffle, then held-out pairs first; no question appears on both sides."""
    import random

    pairs = sorted(pairs)
    random.Random(seed).shuffle(pairs)
    n_test = max(2, round(test_fraction * len(pairs)))
    test, train = pairs[:n_test], pairs[n_test:]
    seen = {q for q, _ in test}
    train = [p for p in train if p[0] not in seen]
    if len(train) < 2:
        raise TourError(f"only {len(pairs)} question/answer pairs in the chosen topics; pick more --topics")
    return train[:max_train] if max_train else train, test


def encode(tokenizer, system: str, question: str, answer: str) -> tuple[list[int], list[int]]:
    """Token ids of a whole chat turn, and labels that score only the answer (-100 elsewhere)."""
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    prompt = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True)
    full = tokenizer.apply_chat_template(msgs + [{"role": "assistant", "content": answer}], tokenize=True,
                                         return_dict=True)
    ids, n = full["input_ids"], len(prompt["input_ids"])
    return ids, [-100] * n + ids[n:]


def batches(tokenizer, system: str, pairs, batch_size: int, device, max_tokens: int = 96) -> list[dict]:
    """Right-padded training batches (padding is masked out of the loss and the attention)."""
    rows = [encode(tokenizer, system, q, a) for q, a in pairs]
    rows = [(ids[:max_tokens], labels[:max_tokens]) for ids, labels in rows]  # a few coding answers run long
    out = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        out.append({"input_ids": _padded([r[0] for r in chunk], tokenizer.pad_token_id, width, device),
                    "attention_mask": _padded([[1] * len(r[0]) for r in chunk], 0, width, device),
                    "labels": _padded([r[1] for r in chunk], -100, width, device)})
    return out


def _padded(rows: list[list[int]], value: int, width: int, device):
    import torch

    return torch.tensor([r + [value] * (width - len(r)) for r in rows], device=device)


# probabilities ------------------------------------------------------------------------------------------------------
def heldout_loss(model, held: list[dict]) -> float:
    """Mean negative log-likelihood per answer token (exp of it is the perplexity)."""
    import torch

    total, count = 0.0, 0
    with torch.inference_mode():
        for batch in held:
            n = int((batch["labels"][:, 1:] != -100).sum())  # the model shifts labels by one inside
            total += model(**batch).loss.item() * n
            count += n
    return total / count


def token_logprobs(model, tokenizer, prompt_ids, device, max_new_tokens: int) -> tuple[list[dict], float]:
    """Greedy reply with each token's log-probability from generate's scores, checked against one forward pass."""
    import torch

    with torch.inference_mode():
        out = model.generate(**prompt_ids, max_new_tokens=max_new_tokens, do_sample=False,
                             output_scores=True, return_dict_in_generate=True)
        scores = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)[0]
        logits = model(out.sequences).logits[0, prompt_ids["input_ids"].shape[1] - 1:-1]
        new = out.sequences[0, prompt_ids["input_ids"].shape[1]:]
        again = logits.log_softmax(-1).gather(-1, new[:, None])[:, 0]
    rows = [{"token": tokenizer.decode(t), "logprob": round(float(lp), 4), "p": round(math.exp(float(lp)), 4)}
            for t, lp in zip(new.tolist(), scores)]
    return rows, float((scores - again).abs().max())


# LoRA ---------------------------------------------------------------------------------------------------------------
def add_lora(model, rank: int, layers: int):
    """LoRA adapters on every linear layer of the top `layers` blocks: the frozen blocks below need no backward
    pass, which is what makes this affordable on a CPU."""
    require("peft", stop="the generate stop's LoRA fine-tune")
    from peft import LoraConfig, get_peft_model

    total = model.config.num_hidden_layers
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, task_type="CAUSAL_LM",
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                        layers_to_transform=list(range(max(0, total - layers), total)))
    with warnings.catch_warnings():  # peft asks transformers a deprecated question (is_gradient_checkpointing)
        warnings.simplefilter("ignore", FutureWarning)
        return get_peft_model(model, config)


def trainable_share(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def train(model, train_batches: list[dict], epochs: int, lr: float, seed: int) -> tuple[list[float], float]:
    """Plain AdamW over the adapter's weights; returns the loss of every step and the seconds taken."""
    import random

    import torch

    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    order, losses, start = list(range(len(train_batches))), [], time.perf_counter()
    for epoch in range(epochs):
        random.Random(seed + epoch).shuffle(order)
        for i in order:
            loss = model(**train_batches[i]).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
        print(f"  epoch {epoch + 1}/{epochs}: mean training loss {sum(losses[-len(order):]) / len(order):.3f}")
    model.eval()
    return losses, time.perf_counter() - start


def round_trip(peft_model, base_loader, folder: Path, batch: dict) -> tuple[float, float]:
    """Save the adapter, put it on a fresh base model, merge it in: max |logit diff| for reload and for merge."""
    import torch
    from peft import PeftModel

    from tour.core.files import writes_to

    with writes_to(folder, owned=True):  # a full disk: one line naming the folder, and no half-saved adapter
        peft_model.save_pretrained(folder)
    with torch.inference_mode():
        want = peft_model(**batch).logits
        with warnings.catch_warnings():  # the same deprecated question as in add_lora
            warnings.simplefilter("ignore", FutureWarning)
            reloaded = PeftModel.from_pretrained(base_loader(), folder).eval()
        reload_diff = (reloaded(**batch).logits - want).abs().max().item()
        merged = reloaded.merge_and_unload()  # W + B A folded into W: no adapter cost at inference
        merge_diff = (merged(**batch).logits - want).abs().max().item()
    return reload_diff, merge_diff


# 4) probabilities and 5) LoRA, as the stop runs them ------------------------------------------------------------------
def probabilities(cfg: Config, tokenizer, model, device) -> Probabilities:
    rows, err = token_logprobs(model, tokenizer, chat_inputs(tokenizer, cfg.system, cfg.prompts[:1], device),
                               device, cfg.max_new_tokens)
    print("  " + " ".join(f"{r['token']!r}:{r['p']:.2f}" for r in rows[:12]) + f"  (check vs forward {err:.1e})")
    return Probabilities(token_logprobs=rows, logprob_check=err, logprobs_match=err < LOGPROB_TOL)


def reply_to(cfg: Config, tokenizer, model, question: str, device) -> str:
    return decode(tokenizer, generate(model, chat_inputs(tokenizer, cfg.system, [question], device),
                                      cfg.max_new_tokens))[0]


def fine_tune(cfg: Config, tokenizer, model, source: str, device, pairs: list[tuple[str, str]] | None = None) -> Lora:
    train_pairs, test_pairs = split_pairs(pairs or qa_pairs(cfg.topics), cfg.test_fraction, cfg.seed, cfg.max_train)
    held = batches(tokenizer, cfg.system, test_pairs, cfg.batch_size, device)
    before = heldout_loss(model, held)
    print(f"  held-out {', '.join(cfg.topics)} answers ({len(test_pairs)} pairs): loss {before:.3f}, "
          f"perplexity {math.exp(before):.1f}")
    question = test_pairs[0][0]
    reply_before = reply_to(cfg, tokenizer, model, question, device)
    peft_model = add_lora(model, cfg.lora_rank, cfg.lora_layers)
    trainable, total = trainable_share(peft_model)
    print(f"  LoRA r={cfg.lora_rank} on the top {cfg.lora_layers} blocks: {trainable:,} trainable of {total:,} "
          f"({trainable / total:.2%}); {len(train_pairs)} training pairs")
    losses, seconds = train(peft_model, batches(tokenizer, cfg.system, train_pairs, cfg.batch_size, device),
                            cfg.epochs, cfg.lr, cfg.seed)
    after = heldout_loss(peft_model, held)
    reply_after = reply_to(cfg, tokenizer, peft_model, question, device)
    print(f"  held-out loss {before:.3f} -> {after:.3f}, perplexity {math.exp(before):.1f} -> {math.exp(after):.1f}"
          f" ({seconds:.0f} s)")
    # not "you>": this question is the corpus's (held out), not one of the user's --prompts
    print(f"  a held-out chatterbot question> {question}\n  the corpus's answer> {test_pairs[0][1]}\n"
          f"  before LoRA> {reply_before}\n  after LoRA>  {reply_after}")
    folder = out_dir(cfg, NAME)
    # two held-out rows (~150 positions x 49k logits) show an exact reload and a rounding-only merge as well as
    # eight did; the three forward passes on a full batch were ~10 s of a quick run on a busy CPU
    width = int(held[0]["attention_mask"][:2].sum(1).max())  # right-padded: their own longest is enough
    probe = {k: v[:2, :width] for k, v in held[0].items()}
    reload_diff, merge_diff = round_trip(peft_model, lambda: load_model(source, device), folder / "adapter", probe)
    print(f"  adapter saved, reloaded on a fresh base model: max |logit diff| {reload_diff:.1e}; "
          f"merged: {merge_diff:.1e}")
    return Lora(heldout_pairs=len(test_pairs), loss_before=before, ppl_before=math.exp(before), loss_after=after,
                ppl_after=math.exp(after), trainable_params=trainable, trainable_share=trainable / total,
                train_losses=losses, train_seconds=seconds, changed_question=question, reply_before=reply_before,
                reply_after=reply_after, adapter_dir=str(folder / "adapter"), reload_max_diff=reload_diff,
                merged_max_diff=merge_diff, loss_png=plot_losses(losses, before, after, folder),
                lora_learned=after < before if cfg.stock(*LORA_SETTINGS) else None,
                adapter_reloads=reload_diff <= ADAPTER_TOL, merge_exact=merge_diff < MERGE_TOL)


def plot_losses(losses: list[float], before: float, after: float, folder: Path) -> str:
    from tour.core.plots import figure, save

    fig = figure()
    ax = fig.add_subplot()
    ax.plot(range(1, len(losses) + 1), losses, marker=".", label="training batch")
    ax.axhline(before, color="grey", linestyle="--", label=f"held-out before ({before:.2f})")
    ax.axhline(after, color="green", linestyle="--", label=f"held-out after ({after:.2f})")
    ax.set(xlabel="step", ylabel="loss per answer token", title="LoRA fine-tune on chatterbot answers")
    ax.xaxis.get_major_locator().set_params(integer=True)  # steps are whole numbers
    ax.legend()
    return save(fig, folder / "lora_loss.png")
