"""Writes the checkpoint-layout fixtures (run from the repo root):

    python Tests/PyTorchReference/make_checkpoint_fixtures.py

Every file is written by the software that writes such files for real users, called the way
they call it: the MLLA authors' training-checkpoint layout (`utils.py save_checkpoint`: the
state dict under `model`, AdamW state, a timm cosine scheduler's state, accuracies, the epoch and
the run's yacs `CfgNode`) saved by `torch.save` with pickle protocols 2 to 5 and in the legacy
(pre-1.6) format; a DataParallel model's state dict; fp16 and bf16 weights; non-contiguous and
storage-sharing tensors; an mmcv 1.x `save_checkpoint` file (`meta` with CLASSES / PALETTE /
config text / env info, `state_dict`, `optimizer`); a timm `CheckpointSaver` file with EMA
weights. The network is a tiny MLLA (embed 16, two stages) from this folder's reference, with
random weights; its PyTorch logits for one input batch are stored beside the files, one set per
distinct weights (fp32, EMA, fp16-rounded, bf16-rounded).

Also writes pickles of plain Python values (every protocol 0 to 5, by Python's own `pickle`)
with numpy scalars, torch.Size, argparse.Namespace, OrderedDict, yacs CfgNode, sets, big ints,
for the unpickler's tests, and `values.json`: what a reader that executes nothing should see.

Needs torch, numpy, yacs, timm, mmcv 1.x (`pip install "setuptools<70" && MMCV_WITH_OPS=0 pip
install --no-build-isolation mmcv==1.7.2`). None of it is needed to build or test the engine.
"""
import argparse
import collections
import json
import os
import pickle
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from make_fixtures import randomize  # noqa: E402
from mlla import MLLA  # noqa: E402

OUT = os.path.join("Tests", "MilaModelTests", "Fixtures", "checkpoints")
PICKLES = os.path.join("Tests", "MilaWeightsTests", "Fixtures", "pickles")
CONFIG = dict(embed_dim=16, depths=[1, 1], num_heads=[2, 2], num_classes=7)


def training_config():
    """The training run's configuration as the authors' config.py builds it: a tree of yacs
    CfgNodes with defaults, merged with the model's yaml, then frozen."""
    from yacs.config import CfgNode as CN

    c = CN()
    c.BASE = [""]
    c.DATA = CN()
    c.DATA.BATCH_SIZE = 128
    c.DATA.DATASET = "imagenet"
    c.DATA.IMG_SIZE = 224
    c.DATA.INTERPOLATION = "bicubic"
    c.MODEL = CN()
    c.MODEL.TYPE = "swin"
    c.MODEL.NAME = "swin_tiny_patch4_window7_224"
    c.MODEL.NUM_CLASSES = 1000
    c.MODEL.DROP_PATH_RATE = 0.1
    c.MODEL.MLLA = CN()
    c.MODEL.MLLA.PATCH_SIZE = 4
    c.MODEL.MLLA.IN_CHANS = 3
    c.MODEL.MLLA.EMBED_DIM = 96
    c.MODEL.MLLA.DEPTHS = [2, 2, 6, 2]
    c.MODEL.MLLA.NUM_HEADS = [3, 6, 12, 24]
    c.MODEL.MLLA.MLP_RATIO = 4.0
    c.MODEL.MLLA.QKV_BIAS = True
    c.TRAIN = CN()
    c.TRAIN.EPOCHS = 300
    c.TRAIN.BASE_LR = 5e-4
    c.TRAIN.OPTIMIZER = CN()
    c.TRAIN.OPTIMIZER.NAME = "adamw"
    c.TRAIN.OPTIMIZER.BETAS = (0.9, 0.999)
    c.TEST = CN()
    c.TEST.CROP = True
    c.AMP = False
    c.OUTPUT = ""
    c.SEED = 0
    config = c.clone()
    config.merge_from_other_cfg(CN.load_cfg(
        "MODEL:\n  TYPE: mlla\n  NAME: mlla_tiny_fixture\n  NUM_CLASSES: %d\n  DROP_PATH_RATE: 0.2\n"
        "  MLLA:\n    EMBED_DIM: %d\n    DEPTHS: %s\n    NUM_HEADS: %s\nDATA:\n  IMG_SIZE: 64\n"
        % (CONFIG["num_classes"], CONFIG["embed_dim"], CONFIG["depths"], CONFIG["num_heads"])))
    config.OUTPUT = "output/mlla_tiny_fixture/default"
    config.freeze()
    return config


def logits_of(state, image):
    model = MLLA(**CONFIG).eval()
    model.load_state_dict({k: v.float() for k, v in state.items()})
    with torch.no_grad():
        return model(image)[0].numpy().astype(np.float32)


def trained_optimizer(model):
    """AdamW with one step's state, as a training checkpoint holds it (weights restored after)."""
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    model.train()
    model(torch.randn(1, 3, 32, 32))[0].sum().backward()
    optimizer.step()
    model.eval()
    model.load_state_dict(saved)
    return optimizer


def main():
    from timm.scheduler import CosineLRScheduler
    from timm.utils import CheckpointSaver, ModelEmaV2, get_state_dict, unwrap_model

    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    model = MLLA(**CONFIG).eval()
    randomize(model, bn_weight_jitter=True)
    image = torch.randn(2, 3, 37, 53)
    np.save(os.path.join(OUT, "input.npy"), image.numpy())
    base = {k: v.clone() for k, v in model.state_dict().items()}
    np.save(os.path.join(OUT, "logits.npy"), logits_of(base, image))

    optimizer = trained_optimizer(model)
    scheduler = CosineLRScheduler(optimizer, t_initial=300, lr_min=5e-6, warmup_lr_init=5e-7, warmup_t=20, t_in_epochs=False)
    scheduler.step_update(1234)
    config = training_config()

    # EMA weights that differ from the model's: an EMA copy, then the model moves and the EMA follows halfway.
    ema = ModelEmaV2(model, decay=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ema.update(model)
    model.load_state_dict(base)
    ema_state = get_state_dict(ema, unwrap_model)
    np.save(os.path.join(OUT, "logits_ema.npy"), logits_of(ema_state, image))

    manifest = []

    def add(name, logits="logits.npy", state_dict=None, format="pytorch", config_from_file=False, stripped=False):
        manifest.append(dict(file=name, logits=logits, state_dict=state_dict, format=format,
                             config_from_file=config_from_file, stripped_prefix=stripped))

    def authors_checkpoint(with_optimizer=True, state=None, ema_entry=False):
        """utils.py save_checkpoint (save_checkpoint_ema adds state_dict_ema)."""
        save_state = {"model": state if state is not None else model.state_dict(),
                      "optimizer": optimizer.state_dict() if with_optimizer else {},
                      "lr_scheduler": scheduler.state_dict(),
                      "max_accuracy": 81.25,
                      "max_accuracy_e": 287,
                      "epoch": 299,
                      "config": config}
        if ema_entry:
            save_state["state_dict_ema"] = ema_state
        return save_state

    torch.save(authors_checkpoint(), os.path.join(OUT, "mlla_training_p2.pth"))
    add("mlla_training_p2.pth", config_from_file=True)
    for protocol in (3, 4, 5):
        name = f"mlla_training_p{protocol}.pth"
        torch.save(authors_checkpoint(with_optimizer=False, ema_entry=protocol == 4), os.path.join(OUT, name), pickle_protocol=protocol)
        add(name, config_from_file=True)
    add("mlla_training_p4.pth", logits="logits_ema.npy", state_dict="state_dict_ema", config_from_file=True)

    # The legacy format (what PyTorch 1.0-1.5 wrote, and torch.save still writes on request).
    torch.save(authors_checkpoint(with_optimizer=False), os.path.join(OUT, "legacy_training.pth"), _use_new_zipfile_serialization=False)
    add("legacy_training.pth", format="pytorch-legacy", config_from_file=True)

    # A DataParallel model's state dict: every name under `module.`.
    wrapped = torch.nn.DataParallel(model)
    torch.save({"model": wrapped.state_dict(), "epoch": 3}, os.path.join(OUT, "dataparallel.pth"))
    add("dataparallel.pth", stripped=True)
    torch.save(wrapped.state_dict(), os.path.join(OUT, "legacy_dataparallel_p4.pth"), pickle_protocol=4,
               _use_new_zipfile_serialization=False)
    add("legacy_dataparallel_p4.pth", format="pytorch-legacy", stripped=True)

    # Half-precision weights (the model converted, then saved as a bare state dict / under model).
    half = MLLA(**CONFIG).eval()
    half.load_state_dict(base)
    half.half()
    torch.save(half.state_dict(), os.path.join(OUT, "fp16.pth"))
    np.save(os.path.join(OUT, "logits_fp16.npy"), logits_of(half.state_dict(), image))
    add("fp16.pth", logits="logits_fp16.npy")
    bf = MLLA(**CONFIG).eval()
    bf.load_state_dict(base)
    bf.to(torch.bfloat16)
    torch.save({"model": bf.state_dict()}, os.path.join(OUT, "bf16.pth"))
    np.save(os.path.join(OUT, "logits_bf16.npy"), logits_of(bf.state_dict(), image))
    add("bf16.pth", logits="logits_bf16.npy")

    # Views: 2-D+ weights saved as transposed views of transposed copies (non-contiguous strides),
    # 1-D tensors as slices of one shared flat storage (offsets into a storage others use too).
    flat = torch.cat([v.flatten() for v in base.values() if v.dim() == 1 and v.is_floating_point()])
    views, offset = {}, 0
    for k, v in base.items():
        if v.dim() >= 2:
            views[k] = v.transpose(0, 1).contiguous().transpose(0, 1)
        elif v.dim() == 1 and v.is_floating_point():
            views[k] = flat[offset:offset + v.numel()]
            offset += v.numel()
        else:
            views[k] = v
    assert sum(not v.is_contiguous() for v in views.values()) >= 5
    torch.save({"model": views}, os.path.join(OUT, "views.pth"))
    add("views.pth")

    # mmcv 1.x save_checkpoint, with the meta an mmseg/mmcls training run records.
    from mmcv.runner import save_checkpoint as mmcv_save
    classes = tuple(f"class {i}" for i in range(CONFIG["num_classes"]))
    palette = [[(37 * i) % 256, (91 * i) % 256, (151 * i) % 256] for i in range(CONFIG["num_classes"])]
    meta = dict(env_info="sys.platform: linux\nPython: 3.11\nPyTorch: %s" % torch.__version__, seed=0,
                exp_name="mlla_tiny_fixture.py", mmseg_version="0.30.0",
                config="model = dict(type='EncoderDecoder', backbone=dict(type='MLLA', embed_dim=16))\n",
                CLASSES=classes, PALETTE=palette, epoch=12, iter=16000)
    mmcv_save(model, os.path.join(OUT, "mmcv.pth"), optimizer=optimizer, meta=meta)
    add("mmcv.pth")

    # timm's CheckpointSaver with an EMA model (state_dict, state_dict_ema, args, optimizer, ...).
    with tempfile.TemporaryDirectory() as folder:
        args = argparse.Namespace(model="mlla_tiny_fixture", lr=5e-4, epochs=300, model_ema=True, model_ema_decay=0.5)
        saver = CheckpointSaver(model, optimizer, args=args, model_ema=ema, checkpoint_dir=folder, recovery_dir=folder, max_history=1)
        saver.save_checkpoint(epoch=0, metric=12.5)
        with open(os.path.join(folder, "last.pth.tar"), "rb") as f:
            data = f.read()
    with open(os.path.join(OUT, "timm_ema.pth.tar"), "wb") as f:
        f.write(data)
    add("timm_ema.pth.tar")
    add("timm_ema.pth.tar", logits="logits_ema.npy", state_dict="state_dict_ema")

    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(dict(config=CONFIG, input="input.npy", fixtures=manifest), f, indent=1)
    sizes = {m["file"]: os.path.getsize(os.path.join(OUT, m["file"])) for m in manifest}
    print("wrote", OUT, sizes)


def pickle_fixtures():
    """Plain values pickled by Python at every protocol, and what a non-executing reader sees."""
    from yacs.config import CfgNode as CN

    cfg = CN({"LR": 0.5, "SUB": CN({"NAME": "x", "DEPTHS": [1, 2]})})
    cfg.freeze()
    shared = [1, 2]
    value = collections.OrderedDict([
        ("int", 7), ("negative", -300000), ("big", 2 ** 70), ("big_negative", -(2 ** 65) - 3), ("float", 1.5),
        ("text", "h\u00e9llo\n\u2603 'q' \\ \"d\""), ("bytes", b"\x00\xffab"), ("tuple", (1, 2, 3)), ("empty_tuple", ()),
        ("list", [1, [2, 3], None]), ("none", None), ("true", True), ("false", False),
        ("set", {4}), ("frozenset", frozenset({5})), ("ordered", collections.OrderedDict(a=1, b=2)),
        ("np_float64", np.float64(0.25)), ("np_int64", np.int64(-5)), ("np_float32", np.float32(2.5)),
        ("size", torch.Size([2, 3])), ("namespace", argparse.Namespace(lr=0.1, model="mlla_t")),
        ("cfg", cfg), ("shared_a", shared), ("shared_b", shared),
    ])
    # What the reader should see: dicts and dict-like inert objects as dicts (with their class for
    # objects), numbers, strings, bytes as lists of ints, tuples/lists/sets as lists.
    expected = collections.OrderedDict([
        ("int", 7), ("negative", -300000), ("big", {"bigint": str(2 ** 70)}), ("big_negative", {"bigint": str(-(2 ** 65) - 3)}),
        ("float", 1.5), ("text", value["text"]), ("bytes", {"bytes": [0, 255, 97, 98]}), ("tuple", [1, 2, 3]), ("empty_tuple", []),
        ("list", [1, [2, 3], None]), ("none", None), ("true", True), ("false", False),
        ("set", [4]), ("frozenset", [5]), ("ordered", {"a": 1, "b": 2}),
        ("np_float64", 0.25), ("np_int64", -5), ("np_float32", 2.5), ("size", [2, 3]),
        ("namespace", {"class": "argparse.Namespace", "state": {"lr": 0.1, "model": "mlla_t"}}),
        ("cfg", {"class": "yacs.config.CfgNode", "items": {"LR": 0.5, "SUB": {"class": "yacs.config.CfgNode",
                                                                            "items": {"NAME": "x", "DEPTHS": [1, 2]}}}}),
        ("shared_a", [1, 2]), ("shared_b", [1, 2]),
    ])
    os.makedirs(PICKLES, exist_ok=True)
    for protocol in range(6):
        with open(os.path.join(PICKLES, f"values_p{protocol}.pkl"), "wb") as f:
            pickle.dump(value, f, protocol=protocol)
    with open(os.path.join(PICKLES, "values_p5_bytearray.pkl"), "wb") as f:
        pickle.dump({"data": bytearray(b"xyz")}, f, protocol=5)
    with open(os.path.join(PICKLES, "values.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
    print("wrote", PICKLES)


if __name__ == "__main__":
    main()
    pickle_fixtures()
