"""Checks upernet.py against mmsegmentation's own code (run from the repo root):

    pip install --no-deps mmsegmentation==0.30.0   # 0.28 refuses mmcv 1.7; the head code is the same
    python Tests/PyTorchReference/check_upernet_mmseg.py

mmseg's EncoderDecoder, UPerHead and FCNHead are built from a config through its registry, with
this folder's MLLABackbone registered as `MLLA` (pip's mmseg has no MLLA; the backbone is the
MLLA authors'), given upernet.EncoderDecoder's random weights, and run on images through mmseg's
own test pipeline (LoadImageFromFile, MultiScaleFlipAug, Resize, Normalize, ImageToTensor).
Compared: state-dict names, the pipeline's tensor against upernet.preprocess, the softmax of
mmseg's inference() against upernet.whole_inference, simple_test's labels against
segment_labels, and the heads alone at odd sizes. Everything must agree exactly.
mmseg 0.28's uper_head.py, psp_head.py, ops/wrappers.py and the test pipeline's files are
byte-identical to 0.30's; fcn_head.py differs by a refactoring that builds the same modules for
num_convs=1, encoder_decoder.py by two added *_logits methods.

mmcv 1.x without compiled ops cannot import mmseg.models' package files (some heads and losses
import mmcv.ops), so the modules used are imported one by one under empty parent packages.
Needs torch, numpy, opencv, pillow, scikit-learn (for the photograph), mmcv 1.x, mmsegmentation 0.x.
"""
import importlib
import os
import sys
import tempfile
import types

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))


def import_mmseg():
    ops = types.ModuleType("mmcv.ops")
    ops.__getattr__ = lambda name: None  # only imported by modules not used here
    sys.modules["mmcv.ops"] = ops
    import mmseg

    root = os.path.dirname(mmseg.__file__)
    for package in ["models", "models.decode_heads", "models.segmentors", "models.backbones", "datasets", "datasets.pipelines"]:
        module = types.ModuleType(f"mmseg.{package}")
        module.__path__ = [os.path.join(root, *package.split("."))]
        sys.modules[f"mmseg.{package}"] = module
    for name in ["models.decode_heads.uper_head", "models.decode_heads.fcn_head", "models.segmentors.encoder_decoder",
                 "datasets.pipelines.compose", "datasets.pipelines.loading", "datasets.pipelines.transforms",
                 "datasets.pipelines.test_time_aug", "datasets.pipelines.formatting"]:
        importlib.import_module(f"mmseg.{name}")
    return mmseg, sys.modules["mmseg.models.builder"], sys.modules["mmseg.datasets.pipelines.compose"].Compose


def main():
    import mmcv
    from PIL import Image
    from sklearn.datasets import images as sklearn_images

    import upernet
    from make_seg_fixtures import randomise
    from mlla import MLLABackbone

    torch.set_num_threads(1)
    mmseg, builder, Compose = import_mmseg()
    builder.BACKBONES.register_module(name="MLLA", module=MLLABackbone)
    print("mmseg", mmseg.__version__, "mmcv", mmcv.__version__)

    norm = dict(type="BN", requires_grad=True)
    loss = dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)
    config = dict(type="EncoderDecoder",
                  backbone=dict(type="MLLA", embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4], mlp_ratio=4.0),
                  decode_head=dict(type="UPerHead", in_channels=[16, 32, 64, 128], in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6),
                                   channels=32, dropout_ratio=0.1, num_classes=7, norm_cfg=norm, align_corners=False,
                                   loss_decode=loss),
                  auxiliary_head=dict(type="FCNHead", in_channels=64, in_index=2, channels=16, num_convs=1, concat_input=False,
                                      dropout_ratio=0.1, num_classes=7, norm_cfg=norm, align_corners=False,
                                      loss_decode=dict(loss, loss_weight=0.4)),
                  train_cfg=mmcv.ConfigDict(), test_cfg=mmcv.ConfigDict(mode="whole"))
    theirs = builder.build_segmentor(config).eval()
    torch.manual_seed(0)
    ours = upernet.EncoderDecoder(16, [1, 1, 1, 1], [1, 2, 2, 4], 4.0, 32, (1, 2, 3, 6), 7, 16).eval()
    randomise(ours, torch.randn(2, 3, 96, 128))
    names = set(theirs.state_dict()) ^ set(ours.state_dict())
    assert not names, f"state-dict names differ: {sorted(names)}"
    theirs.load_state_dict(ours.state_dict())
    print(f"state dict: {len(ours.state_dict())} entries, same names")

    for h, w in [(11, 8), (26, 37), (2, 1)]:
        features = [torch.randn(2, 16 * 2 ** s, -(-h // 2 ** s), -(-w // 2 ** s)) for s in range(4)]
        with torch.no_grad():
            for name in ["decode_head", "auxiliary_head"]:
                a, b = getattr(theirs, name)(features), getattr(ours, name)(features)
                assert torch.equal(a, b), f"{name} at s1 {h}x{w}: max |diff| {(a - b).abs().max()}"
        print(f"heads at s1 = {h}x{w}: equal")

    pipeline = Compose([
        dict(type="LoadImageFromFile"),
        dict(type="MultiScaleFlipAug", img_scale=upernet.TEST_SCALE, flip=False,
             transforms=[dict(type="Resize", keep_ratio=True), dict(type="RandomFlip"),
                         dict(type="Normalize", mean=list(upernet.MEAN), std=list(upernet.STD), to_rgb=True),
                         dict(type="ImageToTensor", keys=["img"]), dict(type="Collect", keys=["img"])])])
    photo = os.path.join(os.path.dirname(sklearn_images.__file__), "china.jpg")
    with tempfile.TemporaryDirectory() as folder:
        paths = [photo]
        for size, orientation in [((40, 20), 6), ((33, 70), 1)]:  # (w, h) as stored
            path = os.path.join(folder, f"small_{orientation}.jpg")
            exif = Image.Exif()
            exif[0x0112] = orientation
            Image.open(photo).convert("RGB").resize(size).save(path, quality=90, exif=exif.tobytes())
            paths.append(path)
        for path in paths:
            data = pipeline(dict(img_info=dict(filename=path), img_prefix=None))
            image, metas = data["img"][0][None], [data["img_metas"][0].data]
            x, original = upernet.preprocess(path)
            assert torch.equal(image, x) and tuple(metas[0]["ori_shape"][:2]) == original, path
            with torch.no_grad():
                probabilities = theirs.inference(image, metas, rescale=True)
                labels = theirs.simple_test(image, metas, rescale=True)[0]
            full = upernet.whole_inference(ours, x, original)
            assert torch.equal(probabilities, full.softmax(dim=1)), f"{path}: {(probabilities - full.softmax(1)).abs().max()}"
            assert np.array_equal(labels, upernet.segment_labels(ours, path).numpy()), path
            print(f"{os.path.basename(path)}: ori_shape {metas[0]['ori_shape']} img_shape {metas[0]['img_shape']}: "
                  f"input, softmax and labels equal")
    print("upernet.py agrees with mmseg exactly")


if __name__ == "__main__":
    main()
