# %% [markdown]
# # Audio: torchaudio's transforms on real speech, and a pretrained detector that finds it
# Bring your own recording: set `TOUR_AUDIO=/path/to/file.wav` (or, as a script, `python examples/audio.py FILE`).
# Any rate and channel count works (wav, flac, ogg, mp3: whatever libsndfile reads). Without one, the tour's own
# espeak-ng speech clip is used. `TOUR_QUICK=1` for a short run, `TOUR_OUT` for the output folder.

# %%
# Start-up first, before torch starts: on a busy machine, the idle cores' threads, which sleep while they wait
# (the `tour` command does this itself; a notebook or script calls it; see tour/core/startup.py).
from tour.core import startup

startup.start_up()

import os
from pathlib import Path

import torch

from tour import audio
from tour.audio import features
from tour.audio.config import RATE
from tour.core.assets import speech_clip
from tour.core.audio_io import read_audio
from tour.core.vad import detect_speech, load_vad

args = startup.script_args()  # a script's own words; none in a notebook (its argv is the kernel's)
path = args[0] if args else os.environ.get("TOUR_AUDIO", "")
cfg = startup.example_config(audio.Config, audio=path)  # quick with TOUR_QUICK=1; writes to $TOUR_OUT (tour-output)
device = startup.example_device(cfg, seed=False)

# %% [markdown]
# ## 1) Audio in
# soundfile reads it as (samples, channels); we keep (channels, samples) float32, the layout torchaudio expects.

# %%
wave, rate = read_audio(Path(cfg.audio) if cfg.audio else speech_clip())  # the tour's one reader, one-line errors
print(f"{wave.shape[0]} channel(s) at {rate} Hz, {wave.shape[1] / rate:.2f} s, peak {wave.abs().max():.2f}")

# %% [markdown]
# ## 2) Features: downmix, resample to 16 kHz, log-mel spectrogram, MFCC
# Each transform is an `nn.Module`, so it moves to the device like a model and runs there.

# %%
tf = features.make_transforms(cfg, rate, device)
print({name: type(t).__name__ for name, t in tf.items()})
with torch.inference_mode():
    mono, logmel, mfcc = features.featurise(wave.to(device), tf)
print(f"mono {list(mono.shape)} at {RATE} Hz -> log-mel {list(logmel.shape)} (dB), MFCC {list(mfcc.shape)}")
rtf = features.realtime_factor(wave.to(device), wave.shape[1] / rate, tf, device, cfg.repeats)
print(f"featurising runs {rtf:,.0f}x faster than real time on {device}")

# %% [markdown]
# ## 3) Where is the speech?
# Silero VAD scores 32 ms windows; a small rule turns the scores into segments (start, end) in seconds.

# %%
vad = load_vad()
segments = detect_speech(vad, mono, cfg.threshold)
print(f"speech found at {segments} s")

# %% [markdown]
# ## The whole stop
# `audio.run(cfg)` adds the checks against physics (a tone keeps its pitch through resampling and lands in the
# right mel band; SpecAugment masks only what they say) and scores the detector on a clip whose truth is known.
# Its Result shows the waveform with the detected speech and the log-mel picture.

# %%
result = audio.run(cfg)
print(f"audio: {len(result.vad.segments)} speech segment(s); "
      f"detector's worst boundary error {result.vad.vad_max_error_s:.3f} s")
result
