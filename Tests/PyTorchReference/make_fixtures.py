"""Writes the golden fixtures the Swift tests compare against (run from the repo root):

    python Tests/PyTorchReference/make_fixtures.py

Tiny MLLA (embed 16, one block per stage, 10 classes) with random weights and randomised
BatchNorm statistics, a batch of 2 images at 98x150 (not a multiple of 4 or 32, odd maps before
every downsample), its logits and four stage outputs. The same weights are written as
safetensors with `mila.config` metadata and as a training-style PyTorch checkpoint (state dict
under `model`, AdamW state, a scheduler dict, numbers, and a config object under `config`).
Needs torch, safetensors, numpy, yacs.
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from mlla import MLLA  # noqa: E402

OUT = os.path.join("Tests", "MilaModelTests", "Fixtures", "tiny")
CONFIG = dict(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[2, 2, 4, 4], num_classes=10)


def training_config():
    """The run's configuration as the official checkpoints hold it: a real yacs CfgNode (frozen,
    nested), which the loader must keep inert. It names no MLLA shapes, so the configuration of
    this file still comes from --arch or the tensor shapes (make_checkpoint_fixtures.py has
    checkpoints whose CfgNode describes the model)."""
    from yacs.config import CfgNode as CN

    config = CN()
    config.MODEL = CN({"TYPE": "mlla", "NAME": "tiny"})
    config.TRAIN = CN({"EPOCHS": 300})
    config.freeze()
    return config


def randomize(model, bn_weight_jitter=False):
    """Weights with variance 1/fan-in, norm scales near 1, small biases, A_log = log U(1, 16),
    randomised BatchNorm statistics: the input still matters at the last stage (with tiny norm
    scales the network forgets its input)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("A_log"):
                p.copy_(torch.log(1 + 15 * torch.rand_like(p)))
            elif p.dim() > 1:
                p.copy_(torch.randn_like(p) / p[0].numel() ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.02 * torch.randn_like(p))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn_like(m.running_mean) * 0.1)
                m.running_var.copy_(torch.rand_like(m.running_var) * 0.5 + 0.75)
                if bn_weight_jitter:
                    m.weight.copy_(1 + 0.1 * torch.randn_like(m.weight))


def main():
    torch.manual_seed(0)
    model = MLLA(**CONFIG).eval()
    randomize(model, bn_weight_jitter=True)
    os.makedirs(OUT, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(OUT, "weights.safetensors"), metadata={"mila.config": json.dumps(CONFIG)})

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    model(torch.randn(1, 3, 64, 64))[0].sum().backward()
    optimizer.step()
    model.eval()
    # Restore the exact weights the fixtures use (the step above only fills optimizer state).
    model.load_state_dict(state)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "lr_scheduler": {"last_epoch": 299, "base_lrs": [1e-3]}, "max_accuracy": 12.5, "epoch": 299,
                "config": training_config()}, os.path.join(OUT, "checkpoint.pth"))

    image = torch.randn(2, 3, 98, 150)
    with torch.no_grad():
        logits, stages = model(image)

    # The same network as a dense-prediction backbone, saved the way a detector checkpoint
    # holds it: under "backbone." beside the detector's other parts, with one LayerNorm per
    # stage output (norm0..norm3) and no norm / head.
    backbone = {f"backbone.{k}": v for k, v in state.items() if not k.startswith(("norm.", "head."))}
    for s, t in enumerate(stages):
        c = t.shape[1]
        backbone[f"backbone.norm{s}.weight"] = 1 + 0.1 * torch.randn(c)
        backbone[f"backbone.norm{s}.bias"] = 0.02 * torch.randn(c)
    backbone["neck.lateral_convs.0.conv.weight"] = torch.randn(8, 16, 1, 1)
    save_file(backbone, os.path.join(OUT, "backbone.safetensors"), metadata={"mila.config": json.dumps(CONFIG)})
    with torch.no_grad():
        for s, t in enumerate(stages):
            normed = torch.nn.functional.layer_norm(t.permute(0, 2, 3, 1), (t.shape[1],), backbone[f"backbone.norm{s}.weight"],
                                                    backbone[f"backbone.norm{s}.bias"], eps=1e-5).permute(0, 3, 1, 2)
            np.save(os.path.join(OUT, f"backbone_stage{s}.npy"), normed.numpy().astype(np.float32))
    np.save(os.path.join(OUT, "input.npy"), image.numpy().astype(np.float32))
    np.save(os.path.join(OUT, "logits.npy"), logits.numpy().astype(np.float32))
    for s, t in enumerate(stages):
        np.save(os.path.join(OUT, f"stage{s}.npy"), t.numpy().astype(np.float32))
    print("wrote", OUT, [tuple(t.shape) for t in stages], tuple(logits.shape))


def forget_gate_fixtures():
    """Tiny forget-gated models (bidirectional + normalised, causal + unnormalised): weights as
    safetensors with mila.config, logits and stage outputs for the same input as above."""
    image = torch.from_numpy(np.load(os.path.join(OUT, "input.npy")))
    for name, extra in [("fg_bidirectional", dict(attention="forget_gate", scan="bidirectional", normalize=True)),
                        ("fg_causal", dict(attention="forget_gate", scan="causal", normalize=False))]:
        torch.manual_seed(1)
        model = MLLA(**CONFIG, **extra).eval()
        randomize(model)
        with torch.no_grad():
            logits, stages = model(image)
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        save_file(state, os.path.join(OUT, f"{name}.safetensors"), metadata={"mila.config": json.dumps({**CONFIG, **extra})})
        np.save(os.path.join(OUT, f"{name}_logits.npy"), logits.numpy().astype(np.float32))
        for s, t in enumerate(stages):
            np.save(os.path.join(OUT, f"{name}_stage{s}.npy"), t.numpy().astype(np.float32))
        print("wrote", name, tuple(logits.shape))


if __name__ == "__main__":
    main()
    forget_gate_fixtures()
