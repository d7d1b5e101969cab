"""Audio stop: torchaudio's transforms on real speech, checked against physics, and Silero VAD finding the speech.

Resample, downmix, mel spectrogram, dB, MFCC and SpecAugment masks run on the picked device; a pretrained speech
detector marks where the speech is. Run: `tour run audio` (or `python -m tour.audio`, `python examples/audio.py`);
`--audio FILE` for your own recording (wav, flac, ogg, mp3; any rate and channel count); `--quick` for a short run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tour.audio import detection, features  # light at import: their heavy imports are inside
from tour.audio.config import NAME, RATE, Config
from tour.audio.detection import Detection
from tour.audio.physics import Physics, physics_part
from tour.core.audio_io import read_audio
from tour.core.cli import stop_main
from tour.core.config import out_dir
from tour.core.errors import require
from tour.core.results import BaseResult, labelled
from tour.core.state import keeps_caller_state


@dataclass
class Result(BaseResult):
    device: str
    audio_path: str
    sample_rate_in: int = labelled("input sample rate", "Hz")
    channels_in: int
    duration_s: float = labelled("input duration", "s")
    sample_rate_out: int = labelled("resampled to", "Hz")
    waveform_shape: list[int]  # mono, resampled
    mel_shape: list[int]  # (1, n_mels, frames)
    mfcc_shape: list[int]  # (1, n_mfcc, frames)
    physics: Physics  # 3) the transforms against physics: resampling, mel bands, SpecAugment
    vad: Detection  # 4) Silero VAD on the input, on a clip of known truth and on noise
    # seconds of audio featurised per second of compute
    realtime_factor: float = labelled("featurised per second of compute", "× real time", 0.0)
    waveform_png: str = labelled("waveforms with the speech Silero VAD found", "", "")
    mel_png: str = labelled("the input's log-mel spectrogram", "", "")


# 5) pictures --------------------------------------------------------------------------------------------------
def save_pictures(folder: Path, panels: list, logmel) -> tuple[Path, Path]:
    """waveform.png: one row per (title, audio, detected, truth); log_mel.png: the input's log-mel."""
    import numpy as np

    from tour.core import plots

    wave_fig = plots.figure(10, 2.6 * len(panels), dpi=110)
    axes = wave_fig.subplots(len(panels), 1, squeeze=False)
    for ax, (title, audio, found, truth) in zip(axes[:, 0], panels):
        y = audio.flatten().cpu().numpy()
        ax.plot(np.arange(len(y)) / RATE, y, lw=0.4, color="tab:blue")
        for i, (s, e) in enumerate(found):
            ax.axvspan(s, e, color="tab:orange", alpha=0.3, label="detected speech" if i == 0 else None)
        for i, t in enumerate(x for seg in truth for x in seg):
            ax.axvline(t, color="k", ls="--", lw=1, label="true boundary" if i == 0 else None)
        ax.set(title=title, xlim=(0, len(y) / RATE), xlabel="time (s)", ylabel="amplitude")
        if found or truth:
            ax.legend(loc="upper right", fontsize=8)
    mel_fig = plots.figure(10, 3.5, dpi=110)
    ax = mel_fig.subplots()
    img = ax.imshow(logmel[0].cpu().numpy(), origin="lower", aspect="auto", cmap="magma",
                    extent=(0, panels[0][1].numel() / RATE, 0, logmel.shape[1]))
    ax.set(xlabel="time (s)", ylabel="mel band", title=f"log-mel spectrogram ({logmel.shape[1]} bands)")
    mel_fig.colorbar(img, ax=ax, label="dB")
    paths = folder / "waveform.png", folder / "log_mel.png"
    for fig, path in zip((wave_fig, mel_fig), paths):
        plots.save(fig, path)
    return paths


@keeps_caller_state
def run(cfg: Config) -> Result:
    require("torchaudio", "soundfile", "silero_vad", stop="the audio stop")
    import torch

    from tour.core import device as dev
    from tour.core.assets import speech_clip

    device = dev.get_device(cfg.device)
    dev.seed_everything(cfg.seed)
    print(f"[audio] {dev.describe(cfg.device)}")
    path = Path(cfg.audio) if cfg.audio else speech_clip()
    wave, rate = read_audio(path)  # (channels, samples) float32 tensor, the file's own rate
    print(f"1) audio in: {path.name}: {rate} Hz, {wave.shape[0]} channel(s), {wave.shape[1] / rate:.2f} s (soundfile)")
    tf = features.make_transforms(cfg, rate, device)
    with torch.inference_mode():
        audio, logmel, mfcc = features.featurise(wave.to(device), tf)
    print(f"2) transforms on {device}: downmix + Resample {rate} -> {RATE} Hz gives {list(audio.shape)}; "
          f"MelSpectrogram + AmplitudeToDB {list(logmel.shape)}; MFCC {list(mfcc.shape)}")
    rtf = features.realtime_factor(wave.to(device), wave.shape[1] / rate, tf, device, cfg.repeats)
    print(f"  real-time factor: {rtf:,.0f} s of audio featurised per second on {device}")
    print("3) physics checks")
    physics = physics_part(cfg, tf, logmel, device)
    print("4) Silero VAD (pretrained, TorchScript) finds the speech")
    vad, clip = detection.vad_section(cfg, audio, path.name)
    print("5) pictures")
    panels = [(f"{path.name}: detected speech", audio, vad.segments, []),
              ("built clip: detected speech vs true boundaries", clip, vad.vad_detected, vad.vad_true)]
    wave_png, mel_png = save_pictures(out_dir(cfg, NAME), panels, logmel)
    print(f"  {wave_png}\n  {mel_png}")
    return Result(device=str(device), audio_path=str(path), sample_rate_in=rate, channels_in=wave.shape[0],
                  duration_s=round(wave.shape[1] / rate, 3), sample_rate_out=RATE,
                  waveform_shape=list(audio.shape), mel_shape=list(logmel.shape), mfcc_shape=list(mfcc.shape),
                  physics=physics, vad=vad, realtime_factor=rtf, waveform_png=str(wave_png), mel_png=str(mel_png))


def main(argv: list[str] | None = None) -> int:
    return stop_main(NAME, Config, run, argv, __doc__)
