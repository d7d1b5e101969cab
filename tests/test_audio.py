"""The audio stop against physics and known truth: tone frequencies through resampling and mel bands, masks that
zero exactly what they say, Silero VAD within 0.15 s of true speech boundaries, and bad files as one-line errors."""

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

from tour import audio
from tour.audio import detection, physics
from tour.audio.config import RATE, VAD_TOL_S
from tour.core.assets import speech_clip
from tour.core.audio_io import read_audio
from tour.core.vad import detect_speech, load_vad

TOLERANCE_S = VAD_TOL_S  # the bound on VAD boundary error


@pytest.fixture(scope="module")
def run_once(tmp_path_factory, stop_device):
    """One quick run on the shipped clip, with an unusual thread count set so a leak would show."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        result = audio.run(audio.Config(quick=True, device=stop_device, out=str(tmp_path_factory.mktemp("out"))))
        return result, torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def result(run_once):
    return run_once[0]


@pytest.fixture(scope="module")
def vad():
    return load_vad()


def test_thread_count_unchanged(run_once):
    assert run_once[1] == 3  # neither the VAD nor the 1-thread timing may leave torch on 1 thread


def test_rates_and_feature_shapes(result):
    info = __import__("soundfile").info(str(speech_clip()))
    assert (result.sample_rate_in, result.channels_in, result.sample_rate_out) == (22050, 1, 16000)
    samples = result.waveform_shape[1]
    assert result.waveform_shape[0] == 1 and abs(samples - info.frames * 16000 / 22050) <= 1
    frames = 1 + samples // 160  # centred STFT, 10 ms hop
    assert result.mel_shape == [1, 64, frames] and result.mfcc_shape == [1, 13, frames]


def test_resampling_keeps_tone_frequency_and_filters_aliases(result):
    assert {p["rate_in"] for p in result.physics.resample_peaks} == {44100, 22050, 8000}
    for p in result.physics.resample_peaks:
        assert abs(p["peak_hz"] - p["tone_hz"]) <= 1.0, p  # 1 Hz FFT bins
    assert result.physics.alias_db < -40  # a 12 kHz tone would fold to 4 kHz at full level without the low-pass


def test_tone_energy_peaks_in_the_band_containing_it(result):
    assert len(result.physics.tone_bands) == 4
    for b in result.physics.tone_bands:
        assert b["contained"] and b["band_lo_hz"] < b["tone_hz"] < b["band_hi_hz"], b
    assert [b["band"] for b in result.physics.tone_bands] == sorted({b["band"] for b in result.physics.tone_bands})


def test_mel_band_edges_match_torchaudio_filters():
    """Triangles drawn on the hand-written HTK edges reproduce torchaudio's mel filterbank."""
    import torch
    import torchaudio.functional as F

    cfg = audio.Config()
    fb = F.melscale_fbanks(cfg.n_fft // 2 + 1, 0.0, RATE / 2, cfg.n_mels, RATE)  # (bins, bands)
    hz = torch.linspace(0, RATE / 2, cfg.n_fft // 2 + 1, dtype=torch.float64)[:, None]
    e = torch.tensor(physics.mel_band_edges(cfg), dtype=torch.float64)
    rise, fall = (hz - e[:-2]) / (e[1:-1] - e[:-2]), (e[2:] - hz) / (e[2:] - e[1:-1])
    assert torch.allclose(torch.minimum(rise, fall).clamp(min=0).float(), fb, atol=1e-4)


def test_masks_zero_exactly_what_they_say(result):
    assert len(result.physics.masks) == 4 and all(m["exact"] for m in result.physics.masks)
    assert any(m["bands"] for m in result.physics.masks) and any(m["frames"] for m in result.physics.masks)
    for m in result.physics.masks:
        if m["bands"]:
            assert m["bands"][1] - m["bands"][0] < 8
        if m["frames"]:
            assert m["frames"][1] - m["frames"][0] < 30


def test_every_check_passes(result):
    assert set(result.checks()) >= {"physics.resample_keeps_tones", "physics.filtered_not_aliased",
                                    "physics.tones_in_their_band", "physics.masks_exact", "vad.vad_finds_speech",
                                    "vad.vad_ignores_noise"}
    assert result.failed_checks() == []


def test_a_missed_segment_fails_the_vad_check():
    rows = dict(peaks=[{"peak_hz": 1000.0, "tone_hz": 1000.0}], alias_db=-80.0, bands=[{"contained": True}],
                masks=[{"exact": True}])
    cfg = audio.Config(quick=True)
    held = physics.judged(cfg, **rows)
    assert all((held.resample_keeps_tones, held.filtered_not_aliased, held.tones_in_their_band, held.masks_exact))
    assert physics.judged(audio.Config(quick=True, n_mels=32), **rows).tones_in_their_band is None  # your STFT
    truth = [[0.8, 2.0], [3.2, 4.4]]
    found = detection.judged(cfg, [[0.8, 4.4]], truth, [[0.85, 2.0], [3.2, 4.45]], 0)
    assert found.vad_finds_speech and found.vad_ignores_noise and found.vad_max_error_s == pytest.approx(0.05)
    failed = detection.judged(cfg, [], truth, truth[:1], 1)  # a missed segment, and speech heard in noise
    assert failed.vad_max_error_s == math.inf and not failed.vad_finds_speech and not failed.vad_ignores_noise
    yours = detection.judged(audio.Config(quick=True, threshold=0.9), [], truth, truth[:1], 1)
    assert yours.vad_finds_speech is None and yours.vad_ignores_noise is None  # your threshold: VAD checks not run



def test_mask_check_catches_a_mask_that_touches_more(monkeypatch):
    """If masking also changed cells outside the zeroed block, the check must say so."""
    import torch
    import torchaudio.transforms as T

    class Leaky(T.FrequencyMasking):
        def forward(self, spec, mask_value=0.0):
            return super().forward(spec, mask_value) * 1.001

    monkeypatch.setattr(T, "FrequencyMasking", Leaky)
    logmel = torch.linspace(-50, 20, 64 * 100).reshape(1, 64, 100)
    assert not any(m["exact"] for m in physics.masking_checks(audio.Config(), logmel))


def test_a_time_mask_over_a_whole_short_clip_is_exact():
    """0.1 s of audio is 11 frames and the time mask reaches 30: masking every frame zeroes every band too, and
    that must not read as a frequency mask 64 bands wide (the check failed on a user's 0.1 s clip)."""
    import torch

    torch.manual_seed(0)
    logmel = torch.linspace(-50, 20, 64 * 11).reshape(1, 64, 11)
    rows = physics.masking_checks(audio.Config(), logmel)
    assert all(m["exact"] for m in rows)
    assert any(m["frames"] == [0, 10] and m["bands"] == [] for m in rows)  # this seed draws a mask over all 11


def test_vad_finds_true_boundaries_and_nothing_in_noise(result):
    assert len(result.vad.vad_true) == 2 and len(result.vad.vad_detected) == 2
    assert result.vad.vad_max_error_s <= TOLERANCE_S
    assert result.vad.noise_segments == 0
    assert len(result.vad.segments) == 1 and result.vad.segments[0][0] < 0.2 and result.vad.segments[0][1] > 4.0


def test_vad_on_a_fresh_espeak_clip(tmp_path, vad):
    """Another sentence, another voice, made now: the detector is not tuned to the shipped clip."""
    import torchaudio.functional as F

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (Debian: apt-get install espeak-ng); the shipped clip covers the rest")
    wav = tmp_path / "said.wav"
    subprocess.run(["espeak-ng", "-v", "en-gb", "-s", "170", "-w", str(wav), "Seven loud birds sang at dawn"],
                   check=True, capture_output=True)
    wave, rate = read_audio(wav)
    clip, truth = detection.check_clip(F.resample(wave.mean(0), rate, RATE), seed=1, gaps_s=(0.5, 0.9, 0.4))
    found = detect_speech(vad, clip, 0.5)
    assert len(found) == 2 and detection.boundary_error(truth, found) <= TOLERANCE_S, (truth, found)


def test_pictures_are_real_pngs(result):
    import matplotlib.image

    for path in (result.waveform_png, result.mel_png):
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = matplotlib.image.imread(path)
        assert img.shape[1] >= 800 and img[..., :3].std() > 0.05  # wide, and not a blank canvas


def test_realtime_factor_is_measured(result):
    assert math.isfinite(result.realtime_factor) and result.realtime_factor > 1  # faster than real time


def test_stereo_8khz_file_through_the_cli(tmp_path, capsys):
    """Two channels at 8 kHz, written with soundfile: downmixed, upsampled, and the speech still found."""
    import soundfile as sf
    import torch
    import torchaudio.functional as F

    wave, rate = read_audio(speech_clip())
    low = F.resample(wave[0], rate, 8000)
    path = tmp_path / "stereo8k.flac"
    sf.write(str(path), torch.stack([low, 0.5 * low], dim=1).numpy(), 8000)
    assert audio.main(["--quick", "--device", "cpu", "--out", str(tmp_path), "--audio", str(path)]) == 0
    saved = json.loads((tmp_path / "audio" / "result.json").read_text())
    assert (saved["sample_rate_in"], saved["channels_in"]) == (8000, 2)
    assert abs(saved["waveform_shape"][1] - 2 * len(low)) <= 1  # 8 kHz -> 16 kHz doubles the samples
    lo, hi = detection.speech_bounds(F.resample(low, 8000, RATE))  # where the speech really is
    (start, end), = saved["vad"]["segments"]
    assert abs(start - lo / RATE) <= TOLERANCE_S and abs(end - hi / RATE) <= TOLERANCE_S
    assert "s of audio featurised per second" in capsys.readouterr().out


def _bad_files(folder: Path) -> dict:
    import numpy as np
    import soundfile as sf

    good = speech_clip().read_bytes()
    files = {"missing": folder / "nope.wav", "folder": folder}
    for name, data in {"empty.wav": b"", "truncated.wav": good[:30], "no_samples.wav": good[:44],
                       "noise_bytes.wav": np.random.default_rng(0).bytes(4000),
                       "notes.flac": b"this is a text file, not audio\n" * 40,
                       "memo.m4a": b"\0\0\0\x20ftypM4A " + bytes(200)}.items():
        (folder / name).write_bytes(data)
        files[name] = folder / name
    sf.write(str(folder / "blip.wav"), np.full(50, 0.1, dtype="float32"), 16000)  # 3 ms
    sf.write(str(folder / "silence.wav"), np.zeros(16000, dtype="float32"), 16000)  # 1 s of digital silence
    files["blip.wav"], files["silence.wav"] = folder / "blip.wav", folder / "silence.wav"
    return files


# what each bad file's one line must say: the trouble in words a person can act on
BAD_FILE_WORDS = {"missing": "no such file", "folder": "is a folder", "empty.wav": "is empty",
                  "truncated.wav": "not audio soundfile can read", "no_samples.wav": "holds 0 samples",
                  "noise_bytes.wav": "not audio soundfile can read", "notes.flac": "not audio soundfile can read",
                  "blip.wav": "pass at least 0.1 s", "silence.wav": "is silent",
                  "memo.m4a": "convert it first: ffmpeg -i "}


def test_bad_files_are_one_line_errors(tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, path in _bad_files(inputs).items():
        out = tmp_path / f"out-{name}"
        assert audio.main(["--device", "cpu", "--out", str(out), "--audio", str(path)]) == 2, name
        err = capsys.readouterr().err.strip()
        assert err.startswith("tour run audio: error:") and "\n" not in err and str(path) in err, err
        assert BAD_FILE_WORDS[name] in err, err
        assert "Traceback" not in err and not out.exists(), name  # nothing half-written


def test_both_audio_stops_share_one_reader_and_its_messages(tmp_path, capsys):
    """The audio and speech stops read through tour.core.audio_io: the same bad file, the same one line."""
    pytest.importorskip("transformers")
    from tour import speech

    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("missing", "empty.wav", "notes.flac", "silence.wav"):
        path = _bad_files(inputs)[name]
        lines = []
        for stop in (audio, speech):
            assert stop.main(["--device", "cpu", "--out", str(tmp_path / "out"), "--audio", str(path)]) == 2
            lines.append(capsys.readouterr().err.strip().split(": error: ", 1)[1])
        assert lines[0] == lines[1] and BAD_FILE_WORDS[name] in lines[0], lines
