# %% [markdown]
# # Speech recognition with Whisper
# Whisper tiny.en, shipped by a PyPI package in CTranslate2's format, converted once into a transformers folder,
# then run with `pipeline("automatic-speech-recognition")`. Each cell calls one function of the stop's parts
# (`tour/speech/`).
# Runs as a script too: `python examples/speech.py [your.wav ...]` (any rate, any channels; `TOUR_TEXT="what is
# said"` gives one file's reference transcript for a word error rate; `TOUR_QUICK=1` for a short run, `TOUR_OUT` for
# the output folder).

# %%
# Start-up first, before torch starts: on a busy machine, the idle cores' threads, which sleep while they wait
# (the `tour` command does this itself; a notebook or script calls it; see tour/core/startup.py).
from tour.core import startup

startup.start_up()

import os
from pathlib import Path

from tour import speech
from tour.speech import clips as audio_in
from tour.speech import whisper
from tour.core import dtypes
from tour.core.config import out_dir

# your own recordings from the command line (none in a notebook); none: the tour's clips
files = [a for a in startup.script_args() if Path(a).suffix.lower() in {".wav", ".flac", ".ogg", ".mp3"}]
text = [os.environ["TOUR_TEXT"]] if os.environ.get("TOUR_TEXT") and len(files) == 1 else []  # the reference
# quick with TOUR_QUICK=1; writes to $TOUR_OUT (tour-output)
cfg = startup.example_config(speech.Config, audio=files, text=text)
device = startup.example_device(cfg, seed=False)
dtype, why = dtypes.choose_dtype(cfg.dtype, device)  # --dtype auto: bf16 where the hardware has a bf16 fast path
print("Whisper runs in", why)

# %% [markdown]
# ## 1) Audio in
# soundfile reads the file; the channels are averaged and torchaudio resamples to the 16 kHz Whisper expects.
# Without files of your own: the tour's clip plus sentences espeak-ng speaks, so every word is known.

# %%
clips = audio_in.gather_clips(cfg.audio, cfg.text, cfg.sentences)
for c in clips:
    print(f"{c['name']}: {c['seconds']} s, was {c['rate_in']} Hz x{c['channels_in']} channels; text: {c['text']}")

# %% [markdown]
# Whisper given a tone, music or silence does not say "nothing": it invents words. Silero VAD (the audio stop's
# speech detector) is asked first; a file with no speech in it is named and left out (none of yours has speech:
# the tour's clips stand in).

# %%
clips, no_speech, yours = audio_in.speech_or_tours(clips, bool(cfg.audio), cfg.sentences)
print("speech heard (s):", {c["name"]: c["speech_s"] for c in clips}, "| no speech:", no_speech)

# %% [markdown]
# ## 2) The model
# `tour/speech/convert.py` reads CTranslate2's `model.bin` (a header, then named float16/float32 arrays), splits
# the fused attention projections back apart and saves a `WhisperForConditionalGeneration` folder. It is built
# once into the tour's cache; the pipeline loads it like any Hub checkpoint, and the model is cast to the chosen
# dtype (the pipeline casts its log-mel features to match).

# %%
asr, folder = whisper.load_pipeline(device, dtype)
print(sorted(p.name for p in folder.iterdir()))

# %% [markdown]
# ## 3) Words and when they were said
# Word times come from the cross-attention of a few "alignment heads", matched to the audio frames.

# %%
words = whisper.timestamps_part(asr, clips[0], cfg)  # [{"word", "start", "end"}, ...]

# %% [markdown]
# ## 4) Transcripts, word error rate, speed
# Every clip alone, then in batches (the transcripts must be identical: Whisper pads each clip to 30 s). WER
# counts substituted, dropped and inserted words over the number of words said (jiwer), after lower-casing.

# %%
said = whisper.transcripts_part(asr, clips, cfg, device, folder)  # the clips with transcripts, WER, real-time factors

# %% [markdown]
# ## 5) Longer than 30 s
# Whisper hears 30 s at a time. `chunk_length_s=30` cuts longer audio into overlapping windows, transcribes them
# as a batch and stitches the text where they overlap. The input is your own audio when it is over 30 s in all;
# otherwise the tour's clips back to back (a short clip looped is no test: Whisper would loop on the repeats).

# %%
long = whisper.long_part(asr, clips, cfg, yours, folder)  # prints each timestamped segment

# %% [markdown]
# ## The waveform with its words
# `speech.run(cfg)` does every step above and builds the stop's Result from what they return (in a notebook: a
# table, the picture inline).

# %%
png = out_dir(cfg, speech.NAME) / "transcript.png"
print(audio_in.transcript_png(clips[0], said.clips[0]["transcript"], words, png))
print(f"WER {said.wer}, long-form WER {long.wer}, batched transcripts identical: {said.batch_same}")
