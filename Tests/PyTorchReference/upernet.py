"""MLLA + UperNet semantic segmentation written from ../../../shared/spec/upernet-segmentation.md in
plain PyTorch (inference only): the engine's independent reference for the segmentation path.

The blocks are mlla.py's. Module and parameter names give exactly the state-dict names of the
mmseg checkpoints (spec section 5): `backbone.*` (MLLABackbone), `decode_head.*` (UPerHead),
`auxiliary_head.*` (FCNHead, spec section 4: it holds tensors but no inference path calls it).
ConvModule is mmcv's: a bias-free conv, `bn`, ReLU.

Legend: N batch, K classes, C channels; s1..s4 the stage grids of an h x w input,
s1 = (ceil(h/4), ceil(w/4)), s(k+1) = ceil(sk/2); (H0, W0) the decoded image's size.

    model = EncoderDecoder(**mlla_b_upernet()).eval()
    model.load_state_dict(torch.load(path)["state_dict"])   # an mmseg 0.x checkpoint
    labels = segment_labels(model, "photo.jpg")             # (H0, W0) int64, label i = CLASSES[i]

Run as a script, it checks the MLLA-B + UperNet configuration on the meta device against the
spec's tables (state-dict entries, parameters, MACs). Needs torch, numpy, opencv-python(-headless);
mmcv 1.x is optional (when present, preprocess() also runs mmcv's own functions and asserts they
agree with the formulas written here).
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from mlla import MLLABackbone  # noqa: E402

MEAN = (123.675, 116.28, 103.53)  # RGB order (mmseg's ADE20K img_norm_cfg)
STD = (58.395, 57.12, 57.375)
TEST_SCALE = (2048, 512)  # ADE20K test pipeline: MultiScaleFlipAug img_scale, Resize(keep_ratio=True)


def resize(x, size):
    """mmseg's resize with align_corners=False and an explicit size (spec section 7.1)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class ConvModule(nn.Module):
    """mmcv ConvModule with norm_cfg set: conv (no bias), BatchNorm (eps 1e-5), ReLU."""

    def __init__(self, cin, cout, kernel):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5)
        self.activate = nn.ReLU()

    def forward(self, x):
        return self.activate(self.bn(self.conv(x)))


class UPerHead(nn.Module):
    """Spec section 3, layers 1-9 in execution order. inputs: [C1..C4] -> (N, K, s1)."""

    def __init__(self, in_channels=(96, 192, 384, 768), channels=512, pool_scales=(1, 2, 3, 6), num_classes=150):
        super().__init__()
        top = in_channels[-1]
        self.psp_modules = nn.ModuleList([nn.Sequential(nn.AdaptiveAvgPool2d(scale), ConvModule(top, channels, 1))
                                          for scale in pool_scales])
        self.bottleneck = ConvModule(top + len(pool_scales) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList([ConvModule(c, channels, 1) for c in in_channels[:-1]])
        self.fpn_convs = nn.ModuleList([ConvModule(channels, channels, 3) for _ in in_channels[:-1]])
        self.fpn_bottleneck = ConvModule(len(in_channels) * channels, channels, 3)
        self.dropout = nn.Dropout2d(0.1)  # identity in eval
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, inputs):
        c4 = inputs[-1]
        pooled = [resize(module(c4), c4.shape[2:]) for module in self.psp_modules]  # P1, P2, P3, P6 at s4
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs[:-1])]  # L1, L2, L3
        laterals.append(self.bottleneck(torch.cat([c4] + pooled, dim=1)))  # L4
        for i in range(len(laterals) - 1, 0, -1):  # L3 += up(L4), then L2 += up(L3), then L1 += up(L2)
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[2:])
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals[:-1])] + [laterals[-1]]  # F1, F2, F3, F4 = L4
        s1 = outs[0].shape[2:]
        outs = [outs[0]] + [resize(x, s1) for x in outs[1:]]  # each straight to s1
        features = self.fpn_bottleneck(torch.cat(outs, dim=1))
        return self.conv_seg(self.dropout(features))


class FCNHead(nn.Module):
    """The auxiliary head (spec section 4): one 3x3 ConvModule on C3, conv_seg. Training only."""

    def __init__(self, in_channels=384, channels=256, num_classes=150, in_index=2):
        super().__init__()
        self.in_index = in_index
        self.convs = nn.Sequential(ConvModule(in_channels, channels, 3))
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, inputs):
        return self.conv_seg(self.dropout(self.convs(inputs[self.in_index])))


class EncoderDecoder(nn.Module):
    """mmseg's EncoderDecoder: backbone, decode_head, auxiliary_head (None: no such tensors)."""

    def __init__(self, embed_dim=96, depths=(3, 6, 21, 6), num_heads=(3, 6, 12, 24), mlp_ratio=4.0, channels=512,
                 pool_scales=(1, 2, 3, 6), num_classes=150, auxiliary_channels=256, img_size=224):
        super().__init__()
        widths = [embed_dim * 2 ** s for s in range(len(depths))]
        self.backbone = MLLABackbone(embed_dim, depths, num_heads, mlp_ratio, img_size)
        self.decode_head = UPerHead(widths, channels, pool_scales, num_classes)
        self.auxiliary_head = FCNHead(widths[2], auxiliary_channels, num_classes) if auxiliary_channels else None

    def forward(self, image):
        """image (N, 3, h, w) -> decode-head logits (N, K, s1)."""
        return self.decode_head(self.backbone(image))


def mlla_b_upernet(num_classes=150):
    """The released configuration (configs/mlla/mlla_b_upernet.py), as EncoderDecoder arguments."""
    return dict(embed_dim=96, depths=(3, 6, 21, 6), num_heads=(3, 6, 12, 24), mlp_ratio=4.0, channels=512,
                pool_scales=(1, 2, 3, 6), num_classes=num_classes, auxiliary_channels=256)


def head_logits(model, x):
    """(N, 3, h, w) float -> decode-head logits (N, K, ceil(h/4), ceil(w/4))."""
    with torch.no_grad():
        return model(x)


def whole_inference(model, x, out_size):
    """mmseg test_cfg mode='whole' with rescale=True: head logits, resized to (h, w) (encode_decode),
    then again to out_size = (H0, W0) (whole_inference). Two resizes: they do not compose into one.
    mmseg then takes a softmax over classes; it is left out because the argmax does not change
    (up to exact ties that rounding in the softmax could create; make_seg_fixtures.py counts them)."""
    with torch.no_grad():
        logits = resize(model(x), x.shape[2:])
        return resize(logits, out_size)


def rescale_size(h0, w0, scale=TEST_SCALE):
    """mmcv.rescale_size for keep_ratio: the largest factor with long side <= max(scale) and short
    side <= min(scale), sides rounded half up (Python float64)."""
    s = min(max(scale) / max(h0, w0), min(scale) / min(h0, w0))
    return int(h0 * s + 0.5), int(w0 * s + 0.5)


def _mmcv():
    try:
        import mmcv
    except ImportError:
        return None
    return mmcv


def load_resized(path_or_bytes, scale=TEST_SCALE):
    """Spec section 1 steps 1-3: decode like LoadImageFromFile (cv2.imdecode IMREAD_COLOR, BGR u8, EXIF
    orientation applied), then Resize(keep_ratio=True) with cv2 INTER_LINEAR on uint8 (a copy when the
    size is unchanged). Returns the resized image as RGB uint8 (h, w, 3) and (H0, W0)."""
    import cv2

    if isinstance(path_or_bytes, (bytes, bytearray)):
        data = bytes(path_or_bytes)
    else:
        with open(path_or_bytes, "rb") as f:
            data = f.read()
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("cv2.imdecode could not decode the image")
    h0, w0 = bgr.shape[:2]
    h, w = rescale_size(h0, w0, scale)
    resized = bgr.copy() if (h, w) == (h0, w0) else cv2.resize(bgr, (w, h), interpolation=cv2.INTER_LINEAR)
    mmcv = _mmcv()
    if mmcv is not None:
        theirs = mmcv.imfrombytes(data, flag="color", backend="cv2")
        assert np.array_equal(theirs, bgr), "mmcv.imfrombytes disagrees with cv2.imdecode"
        theirs = mmcv.imrescale(theirs, scale, interpolation="bilinear", backend="cv2")
        assert theirs.shape == resized.shape and np.array_equal(theirs, resized), "mmcv.imrescale disagrees"
    return np.ascontiguousarray(resized[..., ::-1]), (h0, w0)


def normalise(rgb):
    """Spec section 1 steps 5-6 on RGB uint8 (h, w, 3) or (N, h, w, 3): float32 (x - mean) / std,
    HWC -> CHW. Returns (N, 3, h, w) float32."""
    x = rgb.astype(np.float32)
    x = (x - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    x = x.reshape((-1,) + x.shape[-3:]).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(x))


def preprocess(path_or_bytes, scale=TEST_SCALE):
    """The ADE20K test pipeline: an image file (path or bytes) -> (1, 3, h, w) float32 tensor, (H0, W0).
    With mmcv installed, mmcv.imnormalize (what mmseg's Normalize calls: float32 mean/std, to_rgb) is
    run too and must agree bit for bit."""
    rgb, original = load_resized(path_or_bytes, scale)
    x = normalise(rgb)
    mmcv = _mmcv()
    if mmcv is not None:
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        theirs = mmcv.imnormalize(bgr, np.array(MEAN, np.float32), np.array(STD, np.float32), to_rgb=True)
        assert np.array_equal(theirs.transpose(2, 0, 1)[None], x.numpy()), "mmcv.imnormalize disagrees"
    return x, original


def segment_labels(model, path_or_bytes, scale=TEST_SCALE):
    """preprocess + whole_inference to (H0, W0) + argmax over classes (first maximum on ties) -> (H0, W0) int64."""
    x, original = preprocess(path_or_bytes, scale)
    return whole_inference(model, x, original)[0].argmax(dim=0)


def check_against_spec():
    """MLLA-B + UperNet on the meta device: state-dict entries, parameters and MACs from the spec."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = EncoderDecoder(**mlla_b_upernet()).eval()
    state = model.state_dict()
    params = sum(p.numel() for p in model.parameters())
    head = sum(p.numel() for p in model.decode_head.parameters())
    aux = sum(p.numel() for p in model.auxiliary_head.parameters())
    nbytes = sum(t.numel() * t.element_size() for t in state.values())
    print(f"state dict: {len(state)} entries (spec 1053), {params / 1e6:.3f} M parameters (spec 127.637), "
          f"{nbytes / 2 ** 20:.1f} MiB (spec 500.7); decode head {head / 1e6:.3f} M (spec 31.497), aux {aux / 1e6:.3f} M (spec 0.924)")
    rotations = [k for k in state if k.endswith("attn.rope.rotations")]
    print(f"rope.rotations: {len(rotations)} (spec 36), {rotations[0]} {list(state[rotations[0]].shape)} (spec [56, 56, 48, 2])")
    for prefix in ["backbone.patch_embed", "backbone.layers", "decode_head.psp_modules", "decode_head.bottleneck",
                   "decode_head.lateral_convs", "decode_head.fpn_convs", "decode_head.fpn_bottleneck", "decode_head.conv_seg",
                   "auxiliary_head"]:
        print(f"  {prefix}: {sum(k.startswith(prefix + '.') for k in state)} entries")
    for h, w in [(512, 512), (512, 683), (512, 2048)]:
        x = torch.empty(1, 3, h, w, device="meta")
        with torch.device("meta"), FlopCounterMode(display=False) as counter:  # rope() makes its angles on the default device
            features = model.backbone(x)
        backbone = counter.get_total_flops() / 2
        with torch.device("meta"), FlopCounterMode(display=False) as counter:
            model.decode_head(features)
        decode = counter.get_total_flops() / 2
        print(f"  {h}x{w}: MACs backbone {backbone / 1e9:.1f} G, decode head {decode / 1e9:.1f} G, "
              f"total {(backbone + decode) / 1e9:.1f} G; s1..s4 {[tuple(f.shape[2:]) for f in features]}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    check_against_spec()
