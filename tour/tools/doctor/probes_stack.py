"""The doctor's library probes: torchvision, torchaudio, audio file I/O, transformers, datasets, Hugging Face's offline
mode. Each checks one concrete fact (an op's output, a round trip, a shape); see probes_core.py for the contract.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tour.core.errors import is_available
from tour.tools.doctor.rows import LIBRARY_LOAD, NOT_INSTALLED, Fact, Skip, expect, classify, one_line, truthy


# -- torchvision --------------------------------------------------------------------------------------------------
def vision_model_probe():
    import torch
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()  # built from code: no download
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    expect(tuple(out.shape) == (2, 10) and bool(out.isfinite().all()), f"resnet18 gave {tuple(out.shape)}, not (2, 10)")
    return f"torchvision {torchvision.__version__}: resnet18 forward gives (2, 10) finite logits"


def nms_probe():
    import torch
    import torchvision
    from torchvision.ops import nms

    # Box 1 overlaps box 0 (IoU 0.68) and has a lower score, so it goes; box 2 stands apart.
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5).tolist()
    expect(keep == [0, 2], f"ops.nms kept {keep}, expected [0, 2]")
    return f"C++ ops load (torchvision {torchvision.__version__} works with torch {torch.__version__}); " \
           "nms keeps [0, 2]"


def transforms_probe():
    import torch
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    image = tv_tensors.Image(torch.randint(0, 256, (3, 100, 80), dtype=torch.uint8))
    boxes = tv_tensors.BoundingBoxes([[10, 20, 30, 40]], format="XYXY", canvas_size=(100, 80))
    pipeline = v2.Compose([v2.RandomHorizontalFlip(p=1.0), v2.Resize((50, 40)), v2.ToDtype(torch.float32, scale=True)])
    img, out = pipeline(image, boxes)
    expect(tuple(img.shape) == (3, 50, 40) and float(img.max()) <= 1.0, f"image came out {tuple(img.shape)}")
    expect(out.tolist() == [[25, 10, 35, 20]], f"box came out {out.tolist()}, expected [[25, 10, 35, 20]]")
    return "v2 flip+resize+ToDtype: image (3, 50, 40) in [0, 1], its box flipped and scaled with it"


def vision_io_probe():
    import torch
    from torchvision.io import decode_jpeg, encode_jpeg

    image = torch.full((3, 16, 16), 128, dtype=torch.uint8)
    back = decode_jpeg(encode_jpeg(image, quality=95))
    err = (back.int() - image.int()).abs().max().item()
    expect(back.shape == image.shape and err <= 4, f"JPEG round trip changed the image (max diff {err})")
    return f"image extension loads: JPEG encode/decode round trip (max diff {err})"


# -- audio --------------------------------------------------------------------------------------------------------
def torchaudio_ext_probe():
    import torch
    import torchaudio
    import torchaudio.functional as AF

    ext = getattr(getattr(torchaudio, "_extension", None), "_IS_TORCHAUDIO_EXT_AVAILABLE", None)
    expect(ext is not False, "torchaudio's C++ extension did not load")
    impulse = torch.zeros(1, 8)
    impulse[0, 0] = 1.0
    # y[n] = x[n] + 0.5 y[n-1]: the impulse response is 0.5^n. lfilter runs torchaudio's C++ loop on CPU.
    y = AF.lfilter(impulse, torch.tensor([1.0, -0.5]), torch.tensor([1.0, 0.0]), clamp=False)
    err = (y[0] - 0.5 ** torch.arange(8.0)).abs().max().item()
    expect(err < 1e-6, f"lfilter impulse response is off from 0.5^n by {err:.2e}")
    return f"C++ extension loads (torchaudio {torchaudio.__version__} with torch {torch.__version__}); " \
           "lfilter impulse response is 0.5^n"


def mel_probe():
    import torch
    import torchaudio.functional as AF
    import torchaudio.transforms as AT

    sr, n_fft, n_mels = 16000, 400, 40
    wave = torch.sin(2 * torch.pi * 1000 * torch.arange(sr) / sr).unsqueeze(0)  # 1 s of a 1 kHz tone
    spec = AT.MelSpectrogram(sample_rate=sr, n_fft=n_fft, n_mels=n_mels)(wave)
    peak = int(spec[0].mean(-1).argmax())
    bank = AF.melscale_fbanks(n_fft // 2 + 1, 0.0, sr / 2, n_mels, sr)  # (freq bins, mel bins)
    centre = float(bank[:, peak].argmax()) * sr / n_fft
    expect(tuple(spec.shape) == (1, n_mels, 81), f"MelSpectrogram shape {tuple(spec.shape)}, expected (1, 40, 81)")
    expect(abs(centre - 1000) < 150, f"a 1 kHz tone peaks in the mel band centred at {centre:.0f} Hz")
    return f"MelSpectrogram (1, 40, 81); a 1 kHz tone peaks in the band centred at {centre:.0f} Hz"


def _tone(sr: int = 16000):
    import numpy as np

    return (0.5 * np.sin(2 * np.pi * 440 * np.arange(sr // 2) / sr)).astype("float32")


def soundfile_probe():
    import numpy as np
    import soundfile as sf

    wave, parts = _tone(), []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("wav", "flac"):
            path = Path(tmp) / f"tone.{fmt}"
            sf.write(path, wave, 16000, subtype="PCM_16")
            back, sr = sf.read(path, dtype="float32")
            err = float(np.abs(back - wave).max())
            expect(sr == 16000 and back.shape == wave.shape and err < 1e-3, f"{fmt} round trip is off by {err:.1e}")
            parts.append(fmt)
    return f"libsndfile {sf.__libsndfile_version__}: {' and '.join(parts)} write/read round trips"


def torchcodec_hint() -> str:
    """The install line for the torchcodec that pairs with the installed torch (and its CUDA build's index)."""
    import torch

    from tour.tools.doctor.fixes import local_index, pip_line

    return pip_line(torch.__version__, ("torchcodec",), index=local_index(torch.__version__))


def torchcodec_probe():
    import numpy as np
    import soundfile as sf

    if not is_available("torchcodec"):
        raise Skip(f"torchcodec is not installed (torchaudio.load/save use it); run: {torchcodec_hint()}",
                   NOT_INSTALLED)
    try:
        from torchcodec.decoders import AudioDecoder
    except (ImportError, RuntimeError, OSError) as e:  # its native part did not load: which .so, when the loader said
        kind, data = classify(e)
        kind = kind if data.get("missing_libraries") else LIBRARY_LOAD
        raise Fact(f"{one_line(e)[:200]} (torchaudio.load/save need it)", kind, data) from None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tone.wav"
        sf.write(path, _tone(), 16000)
        samples = AudioDecoder(str(path)).get_all_samples()
    err = float(np.abs(samples.data[0].numpy() - _tone()).max())
    expect(samples.sample_rate == 16000 and err < 1e-3, f"torchcodec decoded the tone off by {err:.1e}")
    return "torchcodec + FFmpeg decode a wav written by soundfile (what torchaudio.load uses)"


# -- Hugging Face -------------------------------------------------------------------------------------------------
def transformers_probe():
    import torch
    import transformers
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=3)
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).eval()  # from a config: no weights to download
    ids = torch.randint(0, 100, (2, 8))
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        model.save_pretrained(tmp)  # safetensors on disk, then back, as every fine-tuning run does
        reloaded = BertForSequenceClassification.from_pretrained(tmp).eval()
        logits, again = model(ids).logits, reloaded(ids).logits
    expect(tuple(logits.shape) == (2, 3), f"logits shape {tuple(logits.shape)}, expected (2, 3)")
    expect(torch.allclose(logits, again), "the reloaded model gives different logits")
    return f"transformers {transformers.__version__}: a tiny BERT from a config runs, saves and reloads identically"


def datasets_probe():
    import datasets

    ds = datasets.Dataset.from_dict({"text": ["a b", "c d e", "f"]})
    ds = ds.map(lambda batch: {"words": [len(t.split()) for t in batch["text"]]}, batched=True)
    expect(ds["words"] == [2, 3, 1], f"map gave {ds['words']}, expected [2, 3, 1]")
    column = ds.with_format("torch")[:]["words"]
    expect(column.tolist() == [2, 3, 1], "with_format('torch') did not give the column as a tensor")
    return f"datasets {datasets.__version__}: batched map and with_format('torch') give [2, 3, 1]"


def hf_offline_probe():
    from huggingface_hub import constants

    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
    env = {n: os.environ.get(n) for n in names}
    caches = {"hub": constants.HF_HUB_CACHE}
    seen = {"huggingface_hub": constants.HF_HUB_OFFLINE}
    if is_available("transformers"):
        import transformers.utils.hub as tf_hub  # transformers 5 reuses huggingface_hub's; 4.x had its own

        seen["transformers"] = tf_hub.is_offline_mode()
    if is_available("datasets"):
        import datasets.config

        seen["datasets"] = datasets.config.HF_HUB_OFFLINE
        caches["datasets"] = str(datasets.config.HF_DATASETS_CACHE)
    where = ", ".join(f"{k} {v}" for k, v in caches.items())
    data = {"env": env, "libraries_offline": seen, "caches": caches}
    if not truthy(env["HF_HUB_OFFLINE"]):
        return f"online mode (HF_HUB_OFFLINE unset; the tour's defaults load from local packages anyway); " \
               f"caches: {where}", data
    ignored = [lib for lib, offline in seen.items() if not offline]
    expect(not ignored, f"HF_HUB_OFFLINE=1 but {', '.join(ignored)} would still go online")
    return f"offline: HF_HUB_OFFLINE=1 honoured by {', '.join(seen)}; caches: {where}", data


