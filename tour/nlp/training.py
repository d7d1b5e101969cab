"""The NLP stop's fine-tuning: a classification head on the encoder, a plain AdamW loop over length-grouped batches,
then the held-out evaluation: the Result's `fine_tune` part."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tour.core.results import check, labelled
from tour.nlp.config import ACCURACY_FLOOR, FLOOR_SETTINGS, Config
from tour.nlp.scoring import evaluate, predict


# 3) fine-tuning --------------------------------------------------------------------------------------------------
def classifier(name: str, labels: list[str], device):
    from transformers import AutoModelForSequenceClassification

    from tour.core.models import from_pretrained

    # The checkpoint is a bare encoder: from_pretrained adds a fresh classification head of len(labels) outputs.
    return from_pretrained(AutoModelForSequenceClassification, name, num_labels=len(labels),
                            id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}
                            ).to(device)


def fine_tune(cfg: Config, model, train_tok, collator, device, epochs: int) -> list[float]:
    """A plain loop: dynamic padding per batch (the collator) over batches of similar lengths, AdamW with linear
    warm-up/decay, autocast."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    from tour.core.data import grouped_batches
    from tour.core.dtypes import autocast

    # The collator pads a batch to its longest text: in random batches that was 3.5x the real tokens of the tour's
    # corpus (16 tokens on average, up to 64), so each epoch draws batches of near neighbours in length instead.
    lengths = [len(ids) for ids in train_tok["input_ids"]]
    loaders = [DataLoader(train_tok, batch_sampler=grouped_batches(lengths, cfg.batch_size, cfg.seed + epoch),
                          collate_fn=collator) for epoch in range(epochs)]
    # Word embeddings stay frozen: 12M of the 23M weights, costly to update, and a few hundred texts can't
    # improve them. The new head learns fast, the pretrained body slowly, so each gets its own learning rate.
    model.get_input_embeddings().requires_grad_(False)
    body = model.base_model_prefix + "."
    groups = [{"params": [p for n, p in model.named_parameters() if p.requires_grad and n.startswith(body) == b],
               "lr": lr} for b, lr in ((True, cfg.lr), (False, cfg.head_lr))]
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    steps = sum(len(loader) for loader in loaders)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=steps // 10, num_training_steps=steps)
    losses = []
    model.train()
    for epoch, loader in enumerate(loaders):
        total = 0.0
        for batch in tqdm(loader, desc=f"  epoch {epoch + 1}/{epochs}", leave=False, unit="batch"):
            with autocast(device):
                loss = model(**batch.to(device)).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(batch["labels"])
        losses.append(total / len(train_tok))
        print(f"  epoch {epoch + 1}/{epochs}: mean loss {losses[-1]:.3f}")
    return losses


@dataclass
class FineTune:
    """Sections 3-4: the fine-tuned classifier's training and its held-out scores (`result.fine_tune.accuracy`)."""

    accuracy: float = labelled("fine-tuned accuracy, held out", "%")  # fine-tuned, on the held-out split
    macro_f1: float = labelled("fine-tuned macro F1, held out")
    losses: list[float] = labelled("training loss per epoch", default_factory=list)  # mean training loss per epoch
    train_seconds: float = labelled("fine-tuning time", "s", 0.0)
    confusion_png: str = labelled("confusion matrix on the held-out split", "", "")
    learned: bool | None = check(f"fine-tuned accuracy >= {ACCURACY_FLOOR} on the tour's corpus (not run on your "
                                 "own --data, --model or training settings)", None)


def train_and_evaluate(cfg: Config, name, labels, train, test, tokenizer, device, folder: Path):
    """(the fine-tuned model, the FineTune record); the accuracy floor holds for the tour's corpus and settings with
    pretrained weights (None otherwise: not run)."""
    from transformers import DataCollatorWithPadding

    from tour.core import assets
    from tour.core import data as nlp_data

    print("3) fine-tuning AutoModelForSequenceClassification")
    model = classifier(name, labels, device)
    collator = DataCollatorWithPadding(tokenizer)  # pads each batch to its own longest text
    start = time.perf_counter()
    losses = fine_tune(cfg, model, nlp_data.tokenized(train, tokenizer, cfg.max_length), collator, device, cfg.epochs)
    seconds = time.perf_counter() - start
    print("4) evaluation on the held-out split")
    pred = predict(model, tokenizer, test["text"], device, cfg.max_length).argmax(-1).tolist()
    png = folder / "confusion_matrix.png"
    acc, f1 = evaluate(test["label"], pred, labels, png)
    print(f"  accuracy {acc:.3f}, macro-F1 {f1:.3f} on {len(test)} texts; {cfg.epochs} epochs in {seconds:.0f} s; "
          f"confusion matrix: {png}")
    learned = assets.floor(acc >= ACCURACY_FLOOR if cfg.stock(*FLOOR_SETTINGS) else None, "learned", name)
    return model, FineTune(accuracy=acc, macro_f1=f1, losses=losses, train_seconds=seconds, confusion_png=str(png),
                           learned=learned)
