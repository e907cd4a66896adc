"""Writes the segmentation fixtures (MLLA + UperNet, upernet.py) the Swift tests compare against.
Run from the repo root:

    python Tests/PyTorchReference/make_seg_fixtures.py      # about a minute on one core

Into Tests/MilaModelTests/Fixtures/segmentation/:
- tiny_upernet.pth: a tiny MLLA + UperNet (embed 16, one block per stage, head channels 32,
  7 classes, auxiliary head 16 channels) with seeded random weights and randomised BatchNorm
  statistics, written the way an mmseg 0.x training run writes its checkpoints: mmcv 1.x's
  IterBasedRunner with mmseg's hooks (AdamW from mmcv's build_optimizer with the config's
  paramwise_cfg, poly lr with warmup, CheckpointHook every iteration, meta from tools/train.py:
  env_info, seed, exp_name, and mmseg_version / config text / CLASSES / PALETTE), run for two
  iterations on random batches; the file is the second checkpoint (iter_2.pth), so `meta` also
  carries hook_msgs. The config text is mmcv Config.pretty_text of a config file loaded with
  Config.fromfile. The golden outputs below are those of the weights read back from the file.
- seg_<H>x<W>.{input,head,full,labels}.npy for four input sizes: random normal inputs
  (N, 3, H, W), decode-head logits (N, K, ceil(H/4), ceil(W/4)), whole_inference logits at the
  case's output size (N, K, H0, W0), and their argmax (N, H0, W0) int32. float32, as the model
  runs; manifest.json records how far a float64 run of the same model lies from them.
- photo.jpg (scikit-learn's china.jpg, CC BY 2.0, unchanged bytes) and photo_exif6.jpg (a crop
  stored rotated with EXIF orientation 6, written by PIL): the preprocessed tensor's shape,
  SHA-256, sum and first values, the cv2-resized RGB image of photo.jpg, and their labels
  through the whole test pipeline (segment_labels).
- manifest.json, README.txt (provenance and licence of the photograph).
Needs torch, numpy, opencv-python(-headless), pillow, scikit-learn (for the photograph), mmcv 1.x
(`pip install "setuptools<70" wheel && MMCV_WITH_OPS=0 pip install --no-build-isolation mmcv==1.7.2`).
"""
import copy
import hashlib
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from make_fixtures import randomize  # noqa: E402
from upernet import (MEAN, STD, TEST_SCALE, ConvModule, EncoderDecoder, head_logits, load_resized,  # noqa: E402
                     preprocess, resize, segment_labels, whole_inference)

OUT = os.path.join("Tests", "MilaModelTests", "Fixtures", "segmentation")
# ADE20K's first seven classes and colours (spec section 6), as a 7-class dataset would declare them.
CLASSES = ("wall", "building", "sky", "floor", "tree", "ceiling", "road")
PALETTE = [[120, 120, 120], [180, 120, 120], [6, 230, 230], [80, 50, 50], [4, 200, 3], [120, 120, 80], [140, 140, 140]]
# (N, H, W) of the random input batch, (H0, W0) of the whole_inference output.
CASES = [((1, 101, 147), (150, 100)), ((1, 41, 29), (41, 29)), ((2, 64, 96), (48, 72)), ((1, 383, 509), (300, 400))]

# The training configuration file, in the shape of the MLLA authors' configs/mlla/mlla_b_upernet.py
# merged with its _base_ files (models/upernet_swin.py, a dataset file, schedule_160k.py,
# default_runtime.py), for the tiny model and a two-iteration run.
CONFIG_FILE = """\
norm_cfg = dict(type='SyncBN', requires_grad=True)
backbone_norm_cfg = dict(type='LN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    pretrained=None,
    backbone=dict(
        type='MLLA',
        pretrain_img_size=224,
        embed_dims=96,
        patch_size=4,
        window_size=7,
        mlp_ratio=4.0,
        depths=[1, 1, 1, 1],
        num_heads=[1, 2, 2, 4],
        strides=(4, 2, 2, 2),
        out_indices=(0, 1, 2, 3),
        qkv_bias=True,
        qk_scale=None,
        patch_norm=True,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.2,
        use_abs_pos_embed=False,
        act_cfg=dict(type='GELU'),
        norm_cfg=backbone_norm_cfg,
        embed_dim=16,
        ape=False,
        use_checkpoint=False),
    decode_head=dict(
        type='UPerHead',
        in_channels=[16, 32, 64, 128],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=32,
        dropout_ratio=0.1,
        num_classes=7,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=64,
        in_index=2,
        channels=16,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=7,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
dataset_type = 'TinyScenesDataset'
data_root = 'data/tiny_scenes'
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
crop_size = (64, 64)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='Resize', img_scale=(2048, 512), ratio_range=(0.5, 2.0)),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size=crop_size, pad_val=0, seg_pad_val=255),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_semantic_seg']),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='MultiScaleFlipAug',
        img_scale=(2048, 512),
        flip=False,
        transforms=[
            dict(type='Resize', keep_ratio=True),
            dict(type='RandomFlip'),
            dict(type='Normalize', **img_norm_cfg),
            dict(type='ImageToTensor', keys=['img']),
            dict(type='Collect', keys=['img']),
        ]),
]
data = dict(
    samples_per_gpu=2,
    workers_per_gpu=0,
    train=dict(type=dataset_type, data_root=data_root, img_dir='images/training',
               ann_dir='annotations/training', pipeline=train_pipeline),
    val=dict(type=dataset_type, data_root=data_root, img_dir='images/validation',
             ann_dir='annotations/validation', pipeline=test_pipeline),
    test=dict(type=dataset_type, data_root=data_root, img_dir='images/validation',
              ann_dir='annotations/validation', pipeline=test_pipeline))
log_config = dict(interval=1, hooks=[dict(type='TextLoggerHook', by_epoch=False)])
dist_params = dict(backend='nccl')
log_level = 'INFO'
load_from = None
resume_from = None
workflow = [('train', 1)]
cudnn_benchmark = True
optimizer = dict(
    type='AdamW',
    lr=6e-05,
    betas=(0.9, 0.999),
    weight_decay=0.01,
    paramwise_cfg=dict(custom_keys=dict(
        absolute_pos_embed=dict(decay_mult=0.0),
        relative_position_bias_table=dict(decay_mult=0.0),
        norm=dict(decay_mult=0.0))))
optimizer_config = dict()
lr_config = dict(policy='poly', warmup='linear', warmup_iters=1500, warmup_ratio=1e-06, power=1.0, min_lr=0.0,
                 by_epoch=False)
runner = dict(type='IterBasedRunner', max_iters=2)
checkpoint_config = dict(by_epoch=False, interval=1)
evaluation = dict(interval=16000, metric='mIoU', pre_eval=True)
"""


def model_arguments(model_cfg):
    """EncoderDecoder arguments from the config's `model` dict (what the registry would build)."""
    backbone, head, aux = model_cfg["backbone"], model_cfg["decode_head"], model_cfg["auxiliary_head"]
    return dict(embed_dim=backbone["embed_dim"], depths=list(backbone["depths"]), num_heads=list(backbone["num_heads"]),
                mlp_ratio=backbone["mlp_ratio"], channels=head["channels"], pool_scales=tuple(head["pool_scales"]),
                num_classes=head["num_classes"], auxiliary_channels=aux["channels"],
                img_size=224)  # MLLA's own img_size default sizes the rope tables; the config's pretrain_img_size is swallowed


class TrainableSegmentor(EncoderDecoder):
    """EncoderDecoder with mmseg's train_step (decode-head and 0.4 x auxiliary cross entropy on
    logits resized to the label size, ignore index 255), for mmcv's IterBasedRunner."""

    def train_step(self, data_batch, optimizer=None, **kwargs):
        image, target = data_batch["img"], data_batch["gt_semantic_seg"][:, 0]
        features = self.backbone(image)
        losses = {}
        for name, head, weight in [("decode", self.decode_head, 1.0), ("aux", self.auxiliary_head, 0.4)]:
            logits = resize(head(features), target.shape[-2:])
            losses[f"{name}.loss_ce"] = weight * F.cross_entropy(logits, target, ignore_index=255)
            valid = target != 255
            losses[f"{name}.acc_seg"] = 100.0 * (logits.argmax(1) == target)[valid].float().mean().detach()
        loss = losses["decode.loss_ce"] + losses["aux.loss_ce"]
        log_vars = {k: v.item() for k, v in losses.items()}
        log_vars["loss"] = loss.item()
        return dict(loss=loss, log_vars=log_vars, num_samples=image.shape[0])


def randomise(model, calibration):
    """Weights with variance 1/fan-in (make_fixtures.randomize), times 2 for the head's convs (each
    is followed by BatchNorm and ReLU, so activations stay O(1)); every BatchNorm with running_mean
    ~ N(0, 0.5), running_var ~ U(0.5, 2), weight ~ U(0.5, 1.5), bias ~ N(0, 0.3). conv_seg is then
    scaled so that every class logit has standard deviation 1.5 over a calibration batch and
    biased so that each has mean ~0 there: no class dominates the labels."""
    randomize(model)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, ConvModule) and not name.startswith("backbone"):
                m.conv.weight.mul_(2 ** 0.5)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.5 * torch.randn_like(m.running_mean))
                m.running_var.copy_(0.5 + 1.5 * torch.rand_like(m.running_var))
                m.weight.copy_(0.5 + torch.rand_like(m.weight))
                m.bias.copy_(0.3 * torch.randn_like(m.bias))
        seen = {}
        handle = model.decode_head.fpn_bottleneck.register_forward_hook(lambda m, i, o: seen.setdefault("f", o))
        model.eval()(calibration)
        handle.remove()
        f = seen["f"]  # (N, C, s1)
        mu = f.mean(dim=(0, 2, 3))
        weight = model.decode_head.conv_seg.weight[:, :, 0, 0]  # (K, C)
        spread = torch.einsum("kc,nchw->nkhw", weight, f - mu[None, :, None, None]).std(dim=(0, 2, 3))
        weight.mul_(1.5 / spread[:, None])
        model.decode_head.conv_seg.bias.copy_(-(weight @ mu) + 0.1 * torch.randn_like(mu[:weight.shape[0]]))


def env_info():
    """What mmseg's collect_env records: mmcv's collect_env plus the MMSegmentation line."""
    from mmcv.utils import collect_env

    info = collect_env()
    info["MMSegmentation"] = "0.28.0"
    return "\n".join(f"{k}: {v}" for k, v in info.items())


def write_checkpoint(path):
    """An mmseg 0.x training run (tools/train.py -> apis/train_segmentor) on mmcv's runner, for two
    iterations of random batches; copies its second checkpoint to `path`. Returns the config."""
    import logging

    from mmcv import Config
    from mmcv.parallel import MMDataParallel
    from mmcv.runner import build_optimizer, build_runner

    here = os.getcwd()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        try:
            with open("tiny_upernet.py", "w") as f:
                f.write(CONFIG_FILE)
            cfg = Config.fromfile("tiny_upernet.py")
            cfg.work_dir = "./work_dirs/tiny_upernet"  # what tools/train.py sets, in this order
            cfg.gpu_ids = [0]
            cfg.auto_resume = False
            cfg.device = "cpu"
            cfg.seed = 0
            meta = dict(env_info=env_info(), seed=0, exp_name="tiny_upernet.py")

            torch.manual_seed(0)
            model = TrainableSegmentor(**model_arguments(cfg.model))
            randomise(model, torch.randn(2, 3, 96, 128))
            model.CLASSES, model.PALETTE = CLASSES, PALETTE
            cfg.checkpoint_config.meta = dict(mmseg_version="0.28.0", config=cfg.pretty_text, CLASSES=CLASSES, PALETTE=PALETTE)

            batches = [dict(img=torch.randn(3, 64, 64), gt_semantic_seg=torch.randint(0, 7, (1, 64, 64))) for _ in range(4)]
            for b in batches:
                b["gt_semantic_seg"][:, :4] = 255  # padding as the train pipeline's Pad leaves it
            loader = torch.utils.data.DataLoader(batches, batch_size=cfg.data.samples_per_gpu, shuffle=False)
            wrapped = MMDataParallel(model, dim=0, device_ids=cfg.gpu_ids)  # mmseg's build_dp on CPU
            optimizer = build_optimizer(wrapped, cfg.optimizer)
            logger = logging.getLogger("mmseg")
            logger.setLevel(logging.WARNING)
            runner = build_runner(cfg.runner, default_args=dict(model=wrapped, batch_processor=None, optimizer=optimizer,
                                                                work_dir=cfg.work_dir, logger=logger, meta=meta))
            runner.register_training_hooks(cfg.lr_config, cfg.optimizer_config, cfg.checkpoint_config, cfg.log_config,
                                           cfg.get("momentum_config", None))
            runner.timestamp = "20240101_000000"
            runner.run([loader], cfg.workflow)
            shutil.copyfile(os.path.join(cfg.work_dir, "iter_2.pth"), os.path.join(here, path))
        finally:
            os.chdir(here)
    return cfg


def rel_l2(a, b):
    return float(torch.linalg.vector_norm((a.double() - b.double()).flatten()) / torch.linalg.vector_norm(b.double().flatten()))


def compare(model32, model64, x, out_size):
    """float32 outputs and how a float64 run of the same weights differs from them."""
    head = head_logits(model32, x)
    full = whole_inference(model32, x, out_size)
    head64 = head_logits(model64, x.double())
    full64 = whole_inference(model64, x.double(), out_size)
    labels, labels64 = full.argmax(dim=1), full64.argmax(dim=1)
    top2 = full.topk(2, dim=1).values
    softmax_labels = full.softmax(dim=1).argmax(dim=1)
    stats = dict(head_rel_l2_vs_float64=rel_l2(head, head64), full_rel_l2_vs_float64=rel_l2(full, full64),
                 head_max_abs_vs_float64=float((head.double() - head64).abs().max()),
                 label_flips_vs_float64=int((labels != labels64).sum()),
                 label_flip_fraction_vs_float64=float((labels != labels64).double().mean()),
                 min_top2_margin=float((top2[:, 0] - top2[:, 1]).min()),
                 pixels_top2_margin_below={f"{t:g}": int(((top2[:, 0] - top2[:, 1]) < t).sum()) for t in (1e-5, 1e-4, 1e-3)},
                 softmax_argmax_differs=int((softmax_labels != labels).sum()),
                 label_histogram=torch.bincount(labels.flatten(), minlength=full.shape[1]).tolist())
    return head, full, labels, stats


def save(name, array):
    np.save(os.path.join(OUT, name), np.ascontiguousarray(array))
    return name


def exif6_jpeg(photo, path):
    """A 160x120 (w x h) crop of the photograph, stored as a camera in portrait grip stores it: the
    pixels turned 90 degrees counter-clockwise (120x160) with EXIF orientation 6 (turn clockwise to
    view). A reader that honours the tag sees the crop upright, 160 wide and 120 high."""
    from PIL import Image

    crop = Image.open(photo).convert("RGB").crop((260, 150, 420, 270))
    exif = Image.Exif()
    exif[0x0112] = 6
    crop.transpose(Image.Transpose.ROTATE_90).save(path, format="JPEG", quality=90, exif=exif.tobytes())


def photo_record(model32, model64, path, with_resized):
    x, original = preprocess(path)
    data = x.numpy().astype(np.float32)
    stem = os.path.splitext(os.path.basename(path))[0]
    labels = segment_labels(model32, path)
    full = whole_inference(model32, x, original)
    full64 = whole_inference(model64, x.double(), original)
    flips = int((full.argmax(1) != full64.argmax(1)).sum())
    record = dict(file=os.path.basename(path), decoded_size=list(original), preprocessed_shape=list(data.shape),
                  preprocessed_sha256=hashlib.sha256(data.tobytes(order="C")).hexdigest(),
                  preprocessed_sum=float(data.sum(dtype=np.float64)), preprocessed_first8=[float(v) for v in data.flatten()[:8]],
                  labels=save(f"{stem}.labels.npy", labels.numpy().astype(np.int32)), labels_shape=list(labels.shape),
                  full_rel_l2_vs_float64=rel_l2(full, full64), label_flips_vs_float64=flips,
                  label_flip_fraction_vs_float64=flips / labels.numel(),
                  label_histogram=torch.bincount(labels.flatten(), minlength=len(CLASSES)).tolist())
    if with_resized:
        rgb, _ = load_resized(path)
        record["resized"] = save(f"{stem}.resized.npy", rgb)
        record["resized_shape"] = list(rgb.shape)
    return record


README = """\
Segmentation fixtures, written by Tests/PyTorchReference/make_seg_fixtures.py (run from the repo root);
manifest.json lists every file and the figures measured when they were made.

photo.jpg is scikit-learn's sklearn/datasets/images/china.jpg ({size} bytes, copied unchanged).
Its licence and source, as scikit-learn's sklearn/datasets/images/README.txt records them:
  Image: china.jpg
  Released under a creative commons license: Creative Commons Attribution 2.0 Generic (CC BY 2.0),
  https://creativecommons.org/licenses/by/2.0/
  Attribution: Some rights reserved by danielbuechele, https://www.flickr.com/photos/danielbuechele/
  Retrieved 21st August, 2011 from https://www.flickr.com/photos/danielbuechele/6061409035/sizes/z/in/photostream/
  by Robert Layton (for scikit-learn).
photo_exif6.jpg is an adaptation of that photograph (same licence and attribution; changes: a 160x120 crop
at x 260..420, y 150..270, stored turned 90 degrees counter-clockwise with EXIF orientation 6, re-encoded by
Pillow as JPEG quality 90).

tiny_upernet.pth has random weights (no training data); the other files are computed from it.
"""


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    cfg = write_checkpoint(os.path.join(OUT, "tiny_upernet.pth"))
    checkpoint = torch.load(os.path.join(OUT, "tiny_upernet.pth"), map_location="cpu", weights_only=True)
    arguments = model_arguments(cfg.model)
    model = EncoderDecoder(**arguments).eval()
    model.load_state_dict(checkpoint["state_dict"])
    model64 = copy.deepcopy(model).double()
    meta = checkpoint["meta"]
    print("checkpoint:", sorted(checkpoint), "meta:", sorted(meta), "iter", meta["iter"], "epoch", meta["epoch"])

    generator = torch.Generator().manual_seed(1)
    cases = []
    for (n, h, w), out_size in CASES:
        x = torch.randn(n, 3, h, w, generator=generator)
        head, full, labels, stats = compare(model, model64, x, out_size)
        stem = f"seg_{h}x{w}"
        sizes = [(-(-h // 4), -(-w // 4))]
        for _ in range(3):
            sizes.append((-(-sizes[-1][0] // 2), -(-sizes[-1][1] // 2)))
        cases.append(dict(name=stem, input=save(f"{stem}.input.npy", x.numpy()), input_shape=list(x.shape),
                          head=save(f"{stem}.head.npy", head.numpy()), head_shape=list(head.shape),
                          full=save(f"{stem}.full.npy", full.numpy()), full_shape=list(full.shape),
                          labels=save(f"{stem}.labels.npy", labels.numpy().astype(np.int32)), labels_shape=list(labels.shape),
                          out_size=list(out_size), stage_sizes=[list(s) for s in sizes], **stats))
        print(f"{stem} -> {out_size}: head rel L2 vs float64 {stats['head_rel_l2_vs_float64']:.2e}, full "
              f"{stats['full_rel_l2_vs_float64']:.2e}, label flips {stats['label_flips_vs_float64']} "
              f"({stats['label_flip_fraction_vs_float64']:.2e}), min top-2 margin {stats['min_top2_margin']:.2e}, "
              f"softmax/argmax differ {stats['softmax_argmax_differs']}, histogram {stats['label_histogram']}", flush=True)

    from sklearn.datasets import images as sklearn_images

    source = os.path.join(os.path.dirname(sklearn_images.__file__), "china.jpg")
    shutil.copyfile(source, os.path.join(OUT, "photo.jpg"))
    exif6_jpeg(source, os.path.join(OUT, "photo_exif6.jpg"))
    photos = [photo_record(model, model64, os.path.join(OUT, "photo.jpg"), with_resized=True),
              photo_record(model, model64, os.path.join(OUT, "photo_exif6.jpg"), with_resized=False)]
    photos[0].update(source="scikit-learn sklearn/datasets/images/china.jpg (unchanged bytes); Flickr photo 6061409035 by "
                            "danielbuechele, retrieved 2011-08-21 by Robert Layton",
                     licence="CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/), attribution: danielbuechele")
    photos[1].update(source="a 160x120 crop of photo.jpg at x 260..420, y 150..270, stored turned 90 degrees counter-clockwise "
                            "with EXIF orientation 6 (Pillow, JPEG quality 90)",
                     licence="CC BY 2.0, an adaptation of photo.jpg (attribution: danielbuechele)", exif_orientation=6)
    for p in photos:
        print(f"{p['file']}: decoded {p['decoded_size']} -> {p['preprocessed_shape']}, sha256 {p['preprocessed_sha256'][:16]}..., "
              f"label flips vs float64 {p['label_flips_vs_float64']}, histogram {p['label_histogram']}")

    state = checkpoint["state_dict"]
    manifest = dict(
        model="tiny_upernet.pth",
        model_format="mmcv 1.x save_checkpoint via IterBasedRunner's CheckpointHook (torch.save zip): meta, state_dict, optimizer",
        meta_keys=sorted(meta), meta_iter=meta["iter"], meta_epoch=meta["epoch"],
        state_dict_entries=len(state),
        ignored_entries=dict(auxiliary_head=sum(k.startswith("auxiliary_head.") for k in state),
                             num_batches_tracked=sum(k.endswith("num_batches_tracked") for k in state),
                             rope_rotations=sum(k.endswith("attn.rope.rotations") for k in state)),
        config=dict(embed_dim=arguments["embed_dim"], depths=arguments["depths"], num_heads=arguments["num_heads"],
                    mlp_ratio=arguments["mlp_ratio"], channels=arguments["channels"], pool_scales=list(arguments["pool_scales"]),
                    num_classes=arguments["num_classes"], auxiliary_channels=arguments["auxiliary_channels"],
                    rotations_img_size=arguments["img_size"], classes=list(CLASSES), palette=PALETTE),
        preprocessing=dict(mean=list(MEAN), std=list(STD), scale=list(TEST_SCALE), order="RGB",
                           resize="cv2 INTER_LINEAR on uint8, keep ratio (mmcv.imrescale)"),
        outputs=dict(head="decode-head logits (N, K, ceil(H/4), ceil(W/4)) float32",
                     full="whole_inference: head logits resized (bilinear, align_corners=False) to (H, W), then to out_size; "
                          "no softmax (argmax unchanged)",
                     labels="argmax over K of full, int32, first maximum on ties",
                     float64="the same weights and inputs in float64 (model.double()); *_vs_float64 compare float32 to it"),
        cases=cases, photos=photos)
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    with open(os.path.join(OUT, "README.txt"), "w") as f:
        f.write(README.format(size=os.path.getsize(source)))
    total = sum(os.path.getsize(os.path.join(OUT, name)) for name in os.listdir(OUT))
    print(f"wrote {OUT}: {len(os.listdir(OUT))} files, {total / 2 ** 20:.2f} MiB")


if __name__ == "__main__":
    main()
