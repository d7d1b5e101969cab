"""The audio stop's features: torchaudio's transforms on the picked device (downmix, Resample, MelSpectrogram,
AmplitudeToDB, MFCC) and their real-time factor. Audio comes in through tour.core.audio_io.read_audio, the reader
(and the one-line errors) the speech stop uses too."""

from __future__ import annotations

from tour.audio.config import RATE, Config


# 2) transforms ------------------------------------------------------------------------------------------------
def make_transforms(cfg: Config, rate_in: int, device) -> dict:
    import torchaudio.transforms as T

    # MFCC needs melkwargs: its defaults put 128 mel bands on 201 FFT bins, which leaves some filters empty
    mel_kw = {"n_fft": cfg.n_fft, "hop_length": cfg.hop, "n_mels": cfg.n_mels}
    return {
        "resample": T.Resample(rate_in, RATE).to(device),
        "mel": T.MelSpectrogram(RATE, **mel_kw).to(device),
        "db": T.AmplitudeToDB("power", top_db=80.0).to(device),
        "mfcc": T.MFCC(RATE, n_mfcc=cfg.n_mfcc, melkwargs=mel_kw).to(device),
    }


def featurise(wave, tf: dict):
    """channels x samples -> mono at the target rate, log-mel (dB) and MFCC."""
    mono = wave.mean(dim=0, keepdim=True)  # downmix first: resampling one channel is cheaper than several
    audio = tf["resample"](mono)
    return audio, tf["db"](tf["mel"](audio)), tf["mfcc"](audio)


def realtime_factor(wave, seconds: float, tf: dict, device, repeats: int) -> float:
    """Seconds of audio per second of compute: warm-up once, then the median of `repeats` timed runs."""
    import torch

    from tour.core.timing import median_ms

    with torch.inference_mode():
        return seconds / (median_ms(lambda: featurise(wave, tf), device, repeats) / 1e3)
