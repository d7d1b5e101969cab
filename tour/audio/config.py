"""The audio stop's Config, the rate every clip is resampled to and the tolerances its checks use; every part of the
stop imports them from here."""

from __future__ import annotations

from dataclasses import dataclass

from tour.core.config import BaseConfig, arg
from tour.core.errors import TourError

NAME = "audio"
RATE = 16_000  # every clip is resampled to 16 kHz: speech models (Silero VAD too) expect it
PEAK_TOL_HZ = 1.0  # a resampled tone's FFT peak vs its frequency: 1 Hz bins for 1 s of audio
ALIAS_DB = -40.0  # a tone above the new Nyquist must come out below this (unfiltered, it would fold back at ~0 dB)
VAD_TOL_S = 0.15  # Silero's worst boundary error on the built clip (speech and silence of known length)


@dataclass
class Config(BaseConfig):
    audio: str = arg("", "your recording to analyse (wav, flac, ogg, mp3); empty: the tour's own espeak-ng speech clip")
    n_fft: int = arg(400, "STFT window in samples (400 = 25 ms at 16 kHz)", min=16)
    hop: int = arg(160, "STFT hop in samples (160 = 10 ms at 16 kHz)", min=1)
    n_mels: int = arg(64, "mel bands", min=2)
    n_mfcc: int = arg(13, "MFCC coefficients kept, at most --n-mels", min=1)
    freq_mask: int = arg(8, "SpecAugment: widest frequency mask, in mel bands", min=0)
    time_mask: int = arg(30, "SpecAugment: widest time mask, in frames", min=0)
    threshold: float = arg(0.5, "Silero speech probability that starts a segment", min=0.0, max=1.0)
    repeats: int = arg(10, "timed runs of the feature pipeline for the real-time factor", min=1, quick=3)

    def validate(self) -> None:
        if self.n_mfcc > self.n_mels:
            raise TourError(f"--n-mfcc {self.n_mfcc} is more than --n-mels {self.n_mels}: MFCCs are taken from the "
                            "mel bands")
