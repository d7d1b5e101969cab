# %% [markdown]
# # NLP with transformers + datasets: your sentences, a pretrained encoder, a fine-tuned classifier
# all-MiniLM-L6-v2 (shipped offline) turns text into vectors. We use them to search a real corpus (chatterbot's
# topics: computers, history, emotion, ...) with your sentences, fit a linear probe, then fine-tune the encoder
# into a topic classifier and ask it about your sentences.
# Your sentences: `TOUR_TEXTS="first sentence|second one"` (or, as a script, `python examples/nlp.py "a" "b"`,
# or a text file with one per line). `TOUR_QUICK=1` for a short run, `TOUR_OUT` for the output folder.

# %%
# Start-up first, before torch starts: on a busy machine, the idle cores' threads, which sleep while they wait
# (the `tour` command does this itself; a notebook or script calls it; see tour/core/startup.py).
from tour.core import startup

startup.start_up()

import os
from pathlib import Path

import datasets
import transformers

from tour import nlp
from tour.nlp import embeddings, scoring, training
from tour.core import dtypes
from tour.core.config import out_dir
from tour.core.models import load_encoder, resolve_model

texts = [t for t in os.environ.get("TOUR_TEXTS", "").split("|") if t.strip()] or nlp.SENTENCES
args = startup.script_args()  # a script's own words; none in a notebook (its argv is the kernel's)
if args:
    texts = Path(args[0]).read_text().splitlines() if Path(args[0]).is_file() else args
cfg = startup.example_config(nlp.Config)  # quick with TOUR_QUICK=1; writes to $TOUR_OUT (tour-output)
device = startup.example_device(cfg)  # accelerator if there is one, else the CPU (TOUR_DEVICE overrides); seeded
datasets.disable_progress_bars()
transformers.logging.disable_progress_bar()  # the stop prints its own summary lines
transformers.logging.set_verbosity_error()  # the classifier head's "newly initialized" report is expected here
dtype, why = dtypes.choose_dtype(cfg.dtype, device)  # the inference parts' dtype; fine-tuning stays fp32
print(f"inference in {why} | {len(texts)} sentence(s) of yours")

# %% [markdown]
# ## 1) Data and encoder
# A `datasets.Dataset` with a `ClassLabel` column, split so every topic is in both halves.

# %%
full, train, test, labels = nlp.load_data(cfg)
name = resolve_model(cfg.model)
tokenizer, encoder = load_encoder(name, device, dtype)
print(f"{tokenizer.tokenize(texts[0])[:12]} ... -> {encoder.config.num_hidden_layers} layers, "
      f"{encoder.config.hidden_size}-d vectors")

# %% [markdown]
# ## 2) Sentence vectors and semantic search
# Mean-pool the token vectors (padding masked out) and normalise: cosine similarity is then a dot product, and one
# matrix product ranks the whole corpus against each of your sentences.

# %%
vectors = embeddings.embed(full["text"], tokenizer, encoder, device)
mine = embeddings.embed(texts, tokenizer, encoder, device)
print(f"corpus {tuple(vectors.shape)}; how alike your sentences are:\n{(mine @ mine.T).numpy().round(2)}")
hits = embeddings.search(texts, mine, vectors, full["text"], [labels[i] for i in full["label"]])

# %% [markdown]
# ## 3) The baseline: a linear probe on frozen vectors
# Logistic regression on the frozen vectors alone: what fine-tuning is measured against. (In quick mode, with
# 80 texts per topic and a short training, the probe may well win: pretrained vectors are already good.)

# %%
index = {t: i for i, t in enumerate(full["text"])}
pick = lambda ds: vectors[[index[t] for t in ds["text"]]]  # noqa: E731
probe = scoring.linear_probe(pick(train), train["label"], pick(test), test["label"])
print(f"linear probe: held-out accuracy {probe:.3f}")

# %% [markdown]
# ## 4) Fine-tuning, then your sentences through the saved model
# A classification head on the encoder, a plain loop with AdamW and a warm-up schedule; then `save_pretrained` and
# `pipeline("text-classification")` on the saved folder, which must agree with the model in memory.

# %%
folder = out_dir(cfg, nlp.NAME)
model, tuned = training.train_and_evaluate(cfg, name, labels, train, test, tokenizer, device, folder)
reloaded = scoring.save_and_reload(model, tokenizer, folder / "model", texts, device, cfg.max_length, dtype)
print(f"nlp: fine-tuned accuracy {tuned.accuracy:.3f} (probe {probe:.3f}); reloaded pipeline agrees: "
      f"{reloaded.reload_matches}")
