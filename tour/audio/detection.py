"""The audio stop's speech detection: Silero VAD (tour.core.vad, which the speech stop asks too) on the input, on a
clip built with known speech boundaries, and on white noise."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tour.audio.config import RATE, VAD_TOL_S, Config
from tour.core.audio_io import mono_at, read_audio
from tour.core.results import check, labelled
from tour.core.vad import detect_speech, load_vad


@dataclass
class Detection:
    """Section 4: where Silero VAD hears speech, and how close it comes on a clip of known truth
    (`result.vad.vad_max_error_s`)."""

    segments: list[list[float]] = field(default_factory=list)  # detected speech in the input, seconds
    vad_true: list[list[float]] = field(default_factory=list)  # known speech in the built check clip
    vad_detected: list[list[float]] = field(default_factory=list)  # what Silero found there
    # worst boundary error (inf if the segment counts differ)
    vad_max_error_s: float = labelled("VAD's worst boundary error", "s", math.inf)
    # segments found in pure noise (should be 0)
    noise_segments: int = labelled("speech segments found in pure noise", "", -1)
    vad_finds_speech: bool | None = check(f"Silero VAD finds the built clip's speech within {VAD_TOL_S:g} s of the "
                                          "true boundaries", None)
    vad_ignores_noise: bool | None = check("Silero VAD finds no speech in white noise", None)


# 4) a pretrained speech detector (Silero VAD itself is in tour/core/vad.py) ---------------------------------------
def speech_bounds(audio, floor: float = 0.02) -> tuple[int, int]:
    """First and last sample above `floor` x the peak: where a clean clip's speech starts and ends."""
    loud = (audio.flatten().abs() > floor * audio.abs().max()).nonzero().flatten()
    return loud[0].item(), loud[-1].item() + 1


def check_clip(speech, seed: int, gaps_s=(0.8, 1.2, 0.6)):
    """silence + speech + silence + speech + silence, with quiet noise throughout; returns it and the truth.
    `speech`: one clean utterance at 16 kHz (trimmed here to its loud part)."""
    import torch

    lo, hi = speech_bounds(speech)
    speech = speech.flatten()[lo:hi].cpu()
    parts, truth, at = [], [], 0
    for i, gap in enumerate(int(g * RATE) for g in gaps_s):
        parts.append(torch.zeros(gap))
        at += gap
        if i < len(gaps_s) - 1:
            parts.append(speech)
            truth.append([round(at / RATE, 3), round((at + len(speech)) / RATE, 3)])
            at += len(speech)
    noise = 1e-3 * torch.randn(at, generator=torch.Generator().manual_seed(seed))  # a quiet room, not zeros
    return torch.cat(parts) + noise, truth


def boundary_error(truth: list, found: list) -> float:
    """Worst start/end error in seconds; infinite when the detector found a different number of segments."""
    if len(found) != len(truth):
        return math.inf
    return max((abs(a - b) for t, f in zip(truth, found) for a, b in zip(t, f)), default=0.0)


def judged(cfg: Config, segments: list, truth: list, found: list, noise: int) -> Detection:
    """The record from what Silero found: the VAD checks hold the tour's threshold to its tolerance (None on yours)."""
    error, stock = boundary_error(truth, found), cfg.stock("threshold")
    return Detection(segments=segments, vad_true=truth, vad_detected=found, vad_max_error_s=error,
                     noise_segments=noise, vad_finds_speech=error <= VAD_TOL_S if stock else None,
                     vad_ignores_noise=noise == 0 if stock else None)


def vad_section(cfg: Config, audio, name: str):
    """Silero on the input, then on a clip with known truth (built from the shipped clip), then on noise:
    (the record, the built clip for the picture)."""
    import torch

    from tour.core.assets import speech_clip

    vad = load_vad()
    segments = detect_speech(vad, audio, cfg.threshold)
    print(f"  speech in {name}: {segments} s" if segments else f"  no speech in {name} (a tone, music or silence?)")
    if cfg.audio:  # the truth is known only for the tour's own clip, whatever --audio holds
        audio = mono_at(*read_audio(speech_clip()), RATE)
    clip, truth = check_clip(audio, cfg.seed)
    found = detect_speech(vad, clip, cfg.threshold)
    error = boundary_error(truth, found)
    made_from = "the tour's clean clip, not yours: its true bounds are known" if cfg.audio else name
    print(f"  built clip silence+speech+silence+speech (from {made_from}): true {truth}, detected {found}, "
          f"worst boundary error {error:.3f} s")
    noise = len(detect_speech(vad, 0.1 * torch.randn(3 * RATE), cfg.threshold))  # loud white noise, no speech
    print(f"  3 s of white noise: {noise} segment(s)")
    return judged(cfg, segments, truth, found, noise), clip
