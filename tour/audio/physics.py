"""The audio stop's physics checks: torchaudio's transforms must agree with what the signal physically is.

A tone keeps its frequency through Resample (and one above the new Nyquist is filtered, not folded back), lands
in the mel band whose filter spans it, and SpecAugment masks zero exactly the bands and frames they report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tour.audio.config import ALIAS_DB, PEAK_TOL_HZ, RATE, Config
from tour.core.results import check, labelled


@dataclass
class Physics:
    """Section 3: each physical claim's measured rows and its verdict (`result.physics.masks_exact`)."""

    resample_peaks: list[dict] = field(default_factory=list)  # tone in -> FFT peak after resampling
    # a tone above the new Nyquist, after resampling (dB re. input level)
    alias_db: float = labelled("a tone above the new Nyquist, after resampling", "dB", 0.0)
    tone_bands: list[dict] = field(default_factory=list)  # tone -> mel band with most energy, and its edges
    masks: list[dict] = field(default_factory=list)  # per copy: zeroed bands/frames and whether only they changed
    resample_keeps_tones: bool | None = check(f"Resample keeps a tone's frequency (FFT peak within {PEAK_TOL_HZ:g} Hz)",
                                              None)
    filtered_not_aliased: bool | None = check(f"a tone above the new Nyquist is low-passed (< {ALIAS_DB:g} dB), not "
                                              "folded back", None)
    tones_in_their_band: bool | None = check("each tone's energy peaks in a mel band whose filter spans it", None)
    masks_exact: bool | None = check("SpecAugment zeroes one block of bands and frames, no wider than its "
                                     "parameter, and nothing else", None)


def physics_part(cfg: Config, tf: dict, logmel, device) -> Physics:
    """Resampling, the mel bands and SpecAugment, each against what the signal physically is."""
    peaks, alias_db = resample_checks(device)
    return judged(cfg, peaks, alias_db, tone_band_checks(cfg, tf, device), masking_checks(cfg, logmel))


def tone(freq: float, rate: int, device, seconds: float = 1.0):
    import torch

    t = torch.arange(int(rate * seconds), device=device) / rate
    return torch.sin(2 * math.pi * freq * t)[None]


def peak_hz(x, rate: int) -> float:
    """The strongest frequency in x, from its FFT (1 Hz bins for 1 s of audio)."""
    import torch

    spectrum = torch.fft.rfft(x[0] * torch.hann_window(x.shape[-1], device=x.device)).abs()
    return spectrum.argmax().item() * rate / x.shape[-1]


def resample_checks(device) -> tuple[list[dict], float]:
    """Resampling keeps a tone's frequency; a tone above the new Nyquist is filtered out, not folded back."""
    import torchaudio.transforms as T

    peaks = []
    for rate, freq in ((44_100, 1000.0), (22_050, 3000.0), (8_000, 440.0)):
        out = T.Resample(rate, RATE).to(device)(tone(freq, rate, device))
        peaks.append({"rate_in": rate, "tone_hz": freq, "peak_hz": peak_hz(out, RATE)})
        print(f"  {freq:.0f} Hz tone at {rate} Hz, resampled to {RATE}: FFT peak {peaks[-1]['peak_hz']:.1f} Hz")
    high = 0.75 * RATE  # 12 kHz for 16 kHz out: would alias to 4 kHz without the low-pass filter
    out = T.Resample(44_100, RATE).to(device)(tone(high, 44_100, device))
    alias_db = 20 * math.log10(out[:, 1000:-1000].std().item() * math.sqrt(2) + 1e-12)  # vs the input's 1/sqrt(2)
    print(f"  a {high:.0f} Hz tone (above the new Nyquist) comes out at {alias_db:.0f} dB: low-passed, not aliased")
    return peaks, alias_db


def mel_band_edges(cfg: Config) -> list[float]:
    """Edges of the triangular mel filters, written out from the HTK formula (torchaudio's default scale)."""
    top = 2595 * math.log10(1 + RATE / 2 / 700)
    return [700 * (10 ** (top * i / (cfg.n_mels + 1) / 2595) - 1) for i in range(cfg.n_mels + 2)]


def tone_band_checks(cfg: Config, tf: dict, device) -> list[dict]:
    """A pure tone's energy must peak in a mel band whose filter spans the tone's frequency."""
    edges, rows = mel_band_edges(cfg), []
    for freq in (300.0, 1000.0, 3000.0, 6000.0):
        band = tf["mel"](tone(freq, RATE, device)).mean(dim=-1)[0].argmax().item()
        lo, hi = edges[band], edges[band + 2]  # band b rises from edge b, peaks at b+1, falls to b+2
        rows.append({"tone_hz": freq, "band": band, "band_lo_hz": round(lo, 1), "band_hi_hz": round(hi, 1),
                     "contained": lo < freq < hi})
        print(f"  {freq:.0f} Hz tone: most energy in mel band {band} ({lo:.0f}-{hi:.0f} Hz): "
              f"{'contains it' if lo < freq < hi else 'WRONG BAND'}")
    return rows


def masking_checks(cfg: Config, logmel) -> list[dict]:
    """SpecAugment on 4 copies (iid_masks: one draw per copy). Find the all-zero bands and frames, then check
    each is one block no wider than its mask parameter and that nothing outside them changed."""
    import torch
    import torchaudio.transforms as T

    spec = logmel - logmel.max() - 1  # strictly negative, so a zero can only come from a mask
    batch = spec[None].expand(4, -1, -1, -1).clone()  # (copy, channel, band, frame)
    masked = T.TimeMasking(cfg.time_mask, iid_masks=True)(T.FrequencyMasking(cfg.freq_mask, iid_masks=True)(batch))
    rows = []
    for orig, out in zip(batch[:, 0], masked[:, 0]):
        bands, frames = _zeroed(out)
        expected = orig.clone()
        expected[bands, :], expected[:, frames] = 0, 0
        exact = torch.equal(out, expected) and _block(bands, cfg.freq_mask) and _block(frames, cfg.time_mask)
        rows.append({"bands": bands[:1] + bands[-1:], "frames": frames[:1] + frames[-1:], "exact": exact})
        print(f"  SpecAugment copy {len(rows)}: zeroed bands {rows[-1]['bands']}, frames {rows[-1]['frames']}; "
              f"{'nothing else changed' if exact else 'MISMATCH'}")
    return rows


def judged(cfg: Config, peaks: list[dict], alias_db: float, bands: list[dict], masks: list[dict]) -> Physics:
    """The record from the measured rows: each physical claim as one True/False. The tone-band check needs an STFT
    fine enough to tell the bands apart: None on STFT settings of yours."""
    stock_stft = cfg.stock("n_fft", "hop", "n_mels")
    return Physics(resample_peaks=peaks, alias_db=alias_db, tone_bands=bands, masks=masks,
                   resample_keeps_tones=all(abs(p["peak_hz"] - p["tone_hz"]) <= PEAK_TOL_HZ for p in peaks),
                   filtered_not_aliased=alias_db < ALIAS_DB,
                   tones_in_their_band=all(b["contained"] for b in bands) if stock_stft else None,
                   masks_exact=all(m["exact"] for m in masks))


def _zeroed(out) -> tuple[list[int], list[int]]:
    """(bands, frames) that are all zero. A band tells its mask apart only where some frame is left: a time mask
    wider than a short clip (0.1 s is 11 frames; --time-mask 30) zeroes every frame, and so every band too."""
    zero = out == 0
    bands = zero.all(dim=1).nonzero().flatten().tolist()
    frames = zero.all(dim=0).nonzero().flatten().tolist()
    if len(frames) == out.shape[1]:
        return [], frames
    if len(bands) == out.shape[0]:  # the same, a frequency mask over every band (--freq-mask >= --n-mels)
        return bands, []
    return bands, frames


def _block(idx: list[int], widest: int) -> bool:
    """One run of consecutive indices, at most `widest` long (an empty mask is allowed: widths are drawn)."""
    return not idx or (len(idx) <= widest and idx == list(range(idx[0], idx[0] + len(idx))))
