"""The tour's one audio reader: a user's file (or the tour's clip) in, one-line errors out.

`read_audio(path)` gives a (channels, samples) float32 tensor and its rate, through soundfile (libsndfile ships
in its wheel: wav, flac, ogg, mp3 and more, any rate, any channel count). `mono_at(wave, rate, target)` mixes
down and resamples, as Whisper and Silero want their 16 kHz mono. The audio and speech stops both read here, so
a bad file reads the same wherever it is passed. Imports no torch at the top.
"""

from __future__ import annotations

from pathlib import Path

from tour.core.errors import TourError

MIN_SECONDS = 0.1  # shorter input fills neither one STFT frame, one VAD window nor a word
FORMATS = "a wav, flac, ogg or mp3 file"  # what to pass instead, in every message
# containers libsndfile cannot open (AAC, WMA, AMR, WebM): a voice memo is .m4a; FFmpeg converts each in one line
NEEDS_CONVERTING = (".m4a", ".aac", ".mp4", ".m4b", ".wma", ".amr", ".3gp", ".webm", ".caf")


def read_audio(path: str | Path, flag: str = "--audio"):
    """(channels, samples) float32 tensor and the file's sample rate. `flag`: the option the path came from,
    named in the one-line TourError for a missing, empty, unreadable, too short, silent or NaN-holding file."""
    import soundfile as sf
    import torch

    path = Path(path)
    where = f"{flag} {path}"
    if not path.exists():
        raise TourError(f"{where}: no such file; pass {FORMATS}")
    if not path.is_file():
        raise TourError(f"{where} is a folder, not a file; pass {FORMATS}")
    if path.stat().st_size == 0:
        raise TourError(f"{where} is empty (0 bytes); pass {FORMATS}")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as e:  # soundfile's LibsndfileError is a RuntimeError
        if path.suffix.lower() in NEEDS_CONVERTING:
            raise TourError(f"{where}: {path.suffix} audio (AAC and the like: a phone's voice memo) is not read by "
                            f"soundfile; convert it first: ffmpeg -i {path} {path.with_suffix('.wav')}") from None
        reason = " ".join(getattr(e, "error_string", str(e)).split())  # libsndfile's words, minus the path
        raise TourError(f"{where} is not audio soundfile can read ({reason}); pass {FORMATS}") from None
    wave = torch.from_numpy(data.T.copy())  # soundfile gives (samples, channels); torchaudio wants channels first
    _check_samples(wave, rate, where)
    return wave, rate


def _check_samples(wave, rate: int, where: str) -> None:
    seconds = wave.shape[1] / rate
    if wave.shape[0] == 0 or seconds < MIN_SECONDS:
        raise TourError(f"{where} holds {wave.shape[1]} samples ({seconds:.3f} s); pass at least "
                        f"{MIN_SECONDS} s of audio")
    if not wave.isfinite().all():
        raise TourError(f"{where} holds NaN or infinite samples; pass a clean recording")
    if not wave.any():
        raise TourError(f"{where} is silent (every sample is 0); pass a recording with sound in it")


def mono_at(wave, rate: int, target: int):
    """A (channels, samples) wave as one channel at `target` Hz (1-D tensor): downmix first, so one channel is
    resampled instead of several."""
    import torchaudio.functional as AF

    return AF.resample(wave.mean(dim=0), rate, target)
