"""faster-whisper on the same CTranslate2 Whisper tiny.en folder the speech stop converts, against the speech stop's
own transcripts part (tour.speech.whisper): greedy, the speech stop's clips, one at a time and as one batch, the
same threads; the word error rate of each against the clips' known words."""

from __future__ import annotations

import time
from pathlib import Path

from tour.core.results import BenchRow, BenchSettings
from tour.tools.peers import SECTION, THREADS, ratio_note, with_threads
from tour.tools.registry import part

WER_MARGIN = 0.10  # agreement: the peer's word error rate within one word in ten of the tour's on the same clips


def _config(settings: BenchSettings, clips: int):
    Config = part("speech", "config").Config

    return Config(quick=settings.quick, device="cpu", out=settings.out, seed=settings.seed, num_beams=1,
                  batch_size=clips, repeats=max(1, settings.repeats // 3))


def prepare(settings: BenchSettings, work: Path) -> dict:
    """The speech stop's clips (its shipped clip, espeak-ng's sentences) as .npy files, and the CTranslate2 folder."""
    import numpy as np

    from tour.core.assets import whisper_tiny_en_dir

    audio_in = part("speech", "clips")
    SENTENCES = part("speech", "config").SENTENCES

    clips = audio_in.gather_clips([], [], SENTENCES)
    paths = []
    for i, c in enumerate(clips):
        paths.append(str(work / f"clip_{i}.npy"))
        np.save(paths[-1], c["audio"])
    return {"model": str(whisper_tiny_en_dir()), "audios": paths, "texts": [c["text"] for c in clips],
            "threads": THREADS, "repeats": _config(settings, len(clips)).repeats}


def _one_at_a_time(model, audios) -> list[str]:
    """faster-whisper's own transcribe, greedy, no timestamps, no VAD, no temperature fallback (as the tour's)."""
    return ["".join(s.text for s in model.transcribe(a, language="en", beam_size=1, temperature=0.0,
                                                     without_timestamps=True, vad_filter=False,
                                                     condition_on_previous_text=False)[0]).strip() for a in audios]


def _batched(model, audios) -> list[str]:
    """Every clip's 30 s window in one CTranslate2 call (what BatchedInferencePipeline does with one long audio's
    chunks): the encoder and greedy decoder run once for the batch."""
    import numpy as np
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer

    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="en")
    feats = np.stack([pad_or_trim(model.feature_extractor(a)[..., :-1]) for a in audios])
    prompt = model.get_prompt(tokenizer, [], without_timestamps=True)
    out = model.model.generate(model.encode(feats), [prompt] * len(audios), beam_size=1, suppress_blank=True,
                               suppress_tokens=[-1], max_length=model.max_length)
    return [tokenizer.decode([t for t in r.sequences_ids[0] if t < tokenizer.eot]).strip() for r in out]


def child(payload: dict) -> dict:
    """In faster-whisper's own process: int8 and float32, one at a time and batched; each timed, the median counts."""
    import statistics

    import faster_whisper
    import numpy as np
    from faster_whisper import WhisperModel

    audios = [np.load(p) for p in payload["audios"]]
    found = {}
    for compute in ("int8", "float32"):
        model = WhisperModel(payload["model"], device="cpu", compute_type=compute, cpu_threads=payload["threads"])
        for how, fn in (("one at a time", _one_at_a_time), (f"batch of {len(audios)}", _batched)):
            texts = fn(model, audios)  # the warm-up
            times = []
            for _ in range(payload["repeats"]):
                start = time.perf_counter()
                fn(model, audios)
                times.append((time.perf_counter() - start) * 1e3)
            found[f"{compute}, {how}"] = {"ms_per_clip": statistics.median(times) / len(audios), "texts": texts}
            print(f"faster-whisper {compute}, {how}: {found[f'{compute}, {how}']['ms_per_clip']:.0f} ms per clip")
    return {"version": faster_whisper.__version__, "settings": found}


def tour(settings: BenchSettings, payload: dict) -> dict:
    """The speech stop's Whisper (its pipeline, dtype choice and transcripts part) one at a time and batched."""
    import numpy as np
    import torch

    from tour.core import dtypes

    whisper = part("speech", "whisper")

    with_threads()
    device, audios = torch.device("cpu"), [np.load(p) for p in payload["audios"]]
    cfg = _config(settings, len(audios))
    dtype, _ = dtypes.choose_dtype(cfg.dtype, device)
    asr, folder = whisper.load_pipeline(device, dtype)
    whisper.transcribe(asr, audios[:1], cfg)  # the warm-up
    clips = [{"name": f"clip {i + 1}", "seconds": round(len(a) / 16000, 2), "rate_in": 16000, "channels_in": 1,
              "text": t, "audio": a} for i, (a, t) in enumerate(zip(audios, payload["texts"]))]
    said = whisper.transcripts_part(asr, clips, cfg, device, folder)
    seconds = sum(c["seconds"] for c in clips)
    ms = {f"{dtypes.dtype_name(dtype)}, one at a time": seconds / said.rtf_single * 1e3 / len(clips),
          f"{dtypes.dtype_name(dtype)}, batch of {cfg.batch_size}": seconds / said.rtf_batched * 1e3 / len(clips)}
    return {"ms": ms, "best": min(ms, key=ms.get), "wer": said.wer, "texts": [c["transcript"] for c in said.clips],
            "batch_same": said.batch_same}


def row(settings: BenchSettings, payload: dict, peer: dict, ours: dict) -> BenchRow:
    from tour.tools.peers import where

    whisper = part("speech", "whisper")
    normalise, wer = whisper.normalise, whisper.wer

    refs = payload["texts"]
    known = [i for i, t in enumerate(refs) if t]
    rates = {k: wer([refs[i] for i in known], [s["texts"][i] for i in known]) if known else None
             for k, s in peer["settings"].items()}
    best = min(peer["settings"], key=lambda k: peer["settings"][k]["ms_per_clip"])
    peer_ms, tour_ms = peer["settings"][best]["ms_per_clip"], ours["ms"][ours["best"]]
    same = sum(normalise(a) == normalise(b) for a, b in zip(peer["settings"][best]["texts"], ours["texts"]))
    agree = (rates[best] is not None and ours["wer"] is not None
             and rates[best] <= ours["wer"] + WER_MARGIN)
    wers = ", ".join(f"{k} {s['ms_per_clip']:.0f} ms WER {rates[k]:.2f}" for k, s in peer["settings"].items())
    why = where("the tour's bf16 GEMMs run on AMX tiles and one batch feeds them every clip, so the tour leads "
                "(Whisper's encoder is GEMM-bound)",
                "bf16 has no matrix tiles (AVX-512 dot products at best), so CTranslate2's int8 GEMMs (VNNI) "
                "are level with it or ahead")
    note = (f"{ratio_note('faster-whisper', 1 / peer_ms, 1 / tour_ms, 'clips/s')}; {why}; "
            f"WER {rates[best]:.2f} vs the tour's {ours['wer']:.2f} ({same}/{len(refs)} transcripts the same "
            f"after normalising); faster-whisper's settings: {wers}; the tour's: "
            + ", ".join(f"{k} {v:.0f} ms" for k, v in ours["ms"].items()))
    print(f"  faster-whisper {best} {peer_ms:.0f} ms per clip vs the tour's {ours['best']} {tour_ms:.0f}")
    for i, (a, b) in enumerate(zip(peer["settings"][best]["texts"], ours["texts"])):
        if normalise(a) != normalise(b):
            print(f"    clip {i + 1}: faster-whisper {a!r}, the tour {b!r}")
    return BenchRow(SECTION, f"Whisper tiny.en greedy, {len(refs)} clips, ms per clip, {THREADS} threads",
                    f"tour: transformers {ours['best']}", f"faster-whisper {peer['version']}: {best}",
                    tour_ms, peer_ms, tour_ms / peer_ms, agree, note)
