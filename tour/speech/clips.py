"""The speech stop's audio: clips in (your files at any rate and channel count, or
the tour's clip plus sentences espeak-ng speaks, so every word is known), which of them hold speech (Silero VAD),
the long-form input past Whisper's 30 s window, and the word picture out. Imports no torch at the top (the stop's
import must stay light).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

from tour.core.audio_io import mono_at, read_audio
from tour.speech.config import CLIP_TEXT, PICTURE_S, RATE, WINDOW_S

# audio in: the core's one reader, mixed down and resampled to 16 kHz ---------------------------------------------
def load_audio(path: Path):
    """(16 kHz mono float32 NumPy array, rate in, channels in), read by tour.core.audio_io like the audio stop."""
    wave, rate = read_audio(path)
    return mono_at(wave, rate, RATE).numpy(), rate, wave.shape[0]


def espeak(text: str, path: Path) -> Path:
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True,
                   capture_output=True, timeout=60)
    return path


def read_clips(named: list[tuple[Path, str | None]]) -> list[dict]:
    clips = []
    for path, text in named:
        audio, rate, channels = load_audio(path)
        clips.append({"name": path.name, "seconds": round(len(audio) / RATE, 2), "rate_in": rate,
                      "channels_in": channels, "text": text, "audio": audio})
    return clips


def tour_clips(sentences: list[str]) -> list[dict]:
    """The shipped clip, plus the sentences espeak-ng speaks when it is installed: audio whose words are known."""
    from tour.core import assets

    with tempfile.TemporaryDirectory() as tmp:
        named = [(assets.speech_clip(), CLIP_TEXT)]
        if shutil.which("espeak-ng"):  # Debian's espeak-ng speaks known sentences: more clips, known text
            named += [(espeak(s, Path(tmp) / f"sentence_{i}.wav"), s) for i, s in enumerate(sentences)]
        else:
            print("  (espeak-ng is not installed: only the tour's own clip; apt-get install espeak-ng)")
        return read_clips(named)


def gather_clips(audio: list[str], text: list[str], sentences: list[str]) -> list[dict]:
    """Your files with their texts (`--audio`, `--text`), or without any the tour's clips: every clip read before
    the model loads, so a bad file fails fast with nothing written."""
    if not audio:
        return tour_clips(sentences)
    return read_clips([(Path(a), text[i] if text else None) for i, a in enumerate(audio)])


# which clips hold speech: Whisper is asked only about those --------------------------------------------------------
def with_speech(clips: list[dict]) -> tuple[list[dict], list[str]]:
    """(the clips with speech, the names of those without), each kept clip with `speech_s`, the seconds Silero VAD
    hears as speech. Whisper given a tone, music or silence does not say "nothing": it invents words, often one
    repeated to its token limit ("beep beep beep ..."), and is slow doing it."""
    from tour.core.vad import load_vad, speech_seconds

    vad = load_vad()
    marked = [{**c, "speech_s": speech_seconds(vad, c["audio"])} for c in clips]
    return [c for c in marked if c["speech_s"] > 0], [c["name"] for c in marked if c["speech_s"] == 0]


def speech_or_tours(clips: list[dict], yours: bool, sentences: list[str]) -> tuple[list[dict], list[str], bool]:
    """(the clips to transcribe, your files without speech, whether those clips are yours): `clips` that hold
    speech, or the tour's clips (`sentences` spoken) when none of your files does, saying so."""
    spoken, none = with_speech(clips)
    for name in none:
        print(f"  {name}: Silero VAD hears no speech in it, so Whisper is not asked (on a tone, music or silence it "
              "invents words)")
    if spoken or not yours:
        return spoken, none, yours
    print("  none of your files holds speech: the parts below run on the tour's own clips")
    return with_speech(tour_clips(sentences))[0], none, False


# long-form audio: past Whisper's 30 s window ----------------------------------------------------------------------
def back_to_back(clips: list[dict], seconds: float = 0.0):
    """The clips one after another with half a second of silence, repeated until `seconds` long (0: once); and
    their words (None unless every clip's are known)."""
    import numpy as np

    gap = np.zeros(RATE // 2, dtype=np.float32)
    parts, texts, i = [], [], 0
    while i < len(clips) or sum(map(len, parts)) < seconds * RATE:
        c = clips[i % len(clips)]
        parts += [gap, c["audio"]] if parts else [c["audio"]]  # silence between clips, none at the ends
        texts.append(c["text"])
        i += 1
    return np.concatenate(parts), None if None in texts else " ".join(texts)


def long_input(clips: list[dict], yours: bool, sentences: list[str], long_seconds: float):
    """(audio, its words or None, where it came from). Your own files once, back to back, when that is over 30 s;
    a short clip repeated is no long-form test (Whisper loops on the repeats), so otherwise the tour's clips
    (`sentences` spoken), repeated to `long_seconds`. `yours`: the clips are the user's own files."""
    total = sum(c["seconds"] for c in clips)
    if yours and total > WINDOW_S:
        audio, text = back_to_back(clips)
        what = clips[0]["name"] if len(clips) == 1 else f"your {len(clips)} files back to back"
        return audio, text, f"{what} ({total:.1f} s)"
    # last clip first: in tour order tiny.en's chunked run hears "brown fox" as a rude word (any order is fair)
    audio, text = back_to_back(tour_clips(sentences)[::-1] if yours else clips[::-1], long_seconds)
    source = f"the tour's {len(audio) / RATE:.1f} s clip (its own clips back to back, repeated to --long-seconds)"
    if yours:
        what = "your clip is" if len(clips) == 1 else f"your {len(clips)} clips are"
        source = f"{what} {total:.1f} s; long-form shown on {source}"
    return audio, text, source


# the picture ---------------------------------------------------------------------------------------------------
def transcript_png(clip: dict, transcript: str, words: list[dict], path: Path) -> Path:
    """The clip's waveform with each recognised word under the stretch of sound it came from: the first PICTURE_S
    seconds, as a longer clip's words would pile up unreadably under it. `transcript`: what Whisper heard in it."""
    import numpy as np

    from tour.core import plots

    audio = clip["audio"][:int(PICTURE_S * RATE)]
    cut = len(audio) < len(clip["audio"])
    words = [w for w in words if w["start"] < len(audio) / RATE]
    fig = plots.figure(10, 3.2)
    ax = fig.subplots()
    ax.plot(np.arange(len(audio)) / RATE, audio, linewidth=0.4, color="0.3")
    for i, w in enumerate(words):
        end = w["end"] if w["end"] is not None else w["start"]
        ax.axvspan(w["start"], end, color=f"C{i % 10}", alpha=0.15)
        ax.text((w["start"] + end) / 2, -1.05 + 0.12 * (i % 2), w["word"], ha="center", fontsize=8)
    ax.set_ylim(-1.1, 1.0)
    ax.set_xlabel("seconds")
    said = " ".join(w["word"] for w in words) + " ..." if cut else transcript
    title = f"{clip['name']}" + (f", the first {PICTURE_S:.0f} s of {clip['seconds']} s" if cut else "") + f": {said!r}"
    ax.set_title(textwrap.fill(title, 150), fontsize=9)  # ~150 characters fit the width at 9 pt
    plots.save(fig, path)
    return path
