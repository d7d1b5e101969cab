"""Silero VAD, the tour's one speech detector: where in 16 kHz mono audio someone speaks.

The audio stop shows it at work; the speech stop asks it first whether a clip has any speech, because Whisper
given a tone, music or silence invents words ("beep beep beep ..." to its token limit) instead of saying nothing
(faster-whisper's `vad_filter` does the same). Imports no torch at the top.
"""

from __future__ import annotations

import warnings

RATE = 16_000  # Silero decides on 16 kHz audio
VAD_WINDOW = 512  # samples per Silero decision at 16 kHz: 32 ms
THRESHOLD = 0.5  # Silero's own default speech probability to start a segment


def load_vad():
    """Silero VAD's TorchScript file, loaded directly: importing silero_vad would set torch to 1 thread."""
    import torch

    from tour.core.assets import silero_vad_jit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated; Silero ships TorchScript
        return torch.jit.load(str(silero_vad_jit()), map_location="cpu").eval()


def detect_speech(model, audio, threshold: float = THRESHOLD) -> list[list[float]]:
    """Speech segments (s) in 16 kHz mono audio (a tensor or a NumPy array). The model scores 32 ms windows,
    keeping its LSTM state across them (audio_forward); Silero's rule makes segments: enter at p >= threshold,
    leave after 100 ms below threshold - 0.15, drop segments under 250 ms, pad 30 ms each side. It runs on the
    CPU, as Silero intends: one 32 ms step at a time is launch overhead on a GPU."""
    import torch

    from tour.core.device import one_thread  # 32 ms windows are too small to share between threads

    audio = torch.as_tensor(audio)
    with torch.inference_mode(), one_thread():
        probs = model.audio_forward(audio.reshape(1, -1).float().cpu(), RATE)[0].tolist()
    step, total = VAD_WINDOW / RATE, audio.numel() / RATE
    segments, start, quiet = [], None, None
    for i, p in enumerate(probs):
        t = i * step
        if start is None:
            start = t if p >= threshold else None
        elif p >= threshold:
            quiet = None
        elif p < threshold - 0.15:
            quiet = t if quiet is None else quiet
            if t - quiet >= 0.1:
                segments.append((start, quiet))
                start, quiet = None, None
    if start is not None:
        segments.append((start, total))
    return [[round(max(0.0, s - 0.03), 3), round(min(total, e + 0.03), 3)] for s, e in segments if e - s >= 0.25]


def speech_seconds(model, audio, threshold: float = THRESHOLD) -> float:
    """How many seconds of `audio` Silero hears as speech (0.0: none), with the audio scaled to a 0.9 peak first:
    Silero missed the tour's clip at -60 dB, which Whisper (its features are normalised) still transcribes."""
    import torch

    audio = torch.as_tensor(audio).float()
    peak = audio.abs().max()
    scaled = audio * (0.9 / peak) if peak > 0 else audio
    return round(sum(e - s for s, e in detect_speech(model, scaled, threshold)), 3)
