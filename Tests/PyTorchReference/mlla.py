"""MLLA written from ../../../shared/spec/mlla-architecture.md in plain PyTorch (inference only).

It is the engine's independent reference: the Swift engine must reproduce its logits and stage
outputs. Any input size works (the padding rules of the official dense-prediction backbones);
RoPE is computed for each stage's own grid, non-square included. Tensor names are those of the
released checkpoints.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvLayer(nn.Module):
    def __init__(self, cin, cout, kernel, stride=1, groups=1, bias=True, norm=True, act=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=bias)
        self.norm = nn.BatchNorm2d(cout, eps=1e-5) if norm else None
        self.act = nn.ReLU() if act else None

    def forward(self, x):
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        return self.act(x) if self.act is not None else x


class Stem(nn.Module):
    def __init__(self, c0):
        super().__init__()
        self.conv1 = ConvLayer(3, c0 // 2, 3, 2, bias=False)
        self.conv2 = nn.Sequential(ConvLayer(c0 // 2, c0 // 2, 3, bias=False),
                                   ConvLayer(c0 // 2, c0 // 2, 3, bias=False, act=False))
        self.conv3 = nn.Sequential(ConvLayer(c0 // 2, c0 * 4, 3, 2, bias=False),
                                   ConvLayer(c0 * 4, c0, 1, bias=False, act=False))

    def forward(self, x):
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (-w) % 4, 0, (-h) % 4))
        x = self.conv1(x)
        x = self.conv2(x) + x
        return self.conv3(x)


def rope(x):
    """x: (B, H, W, C). Pair (2p, 2p+1) turns by y*theta_p (p < C/4) or x*theta_(p-C/4)."""
    b, h, w, c = x.shape
    k_max = c // 4
    theta = 1.0 / (10000.0 ** (torch.arange(k_max, dtype=torch.float64) / k_max))
    ys = torch.arange(h, dtype=torch.float64)[:, None, None] * theta  # (H, 1, k_max)
    xs = torch.arange(w, dtype=torch.float64)[None, :, None] * theta  # (1, W, k_max)
    angles = torch.cat([ys.expand(h, w, k_max), xs.expand(h, w, k_max)], dim=-1)  # (H, W, C/2)
    cos, sin = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)  # float32 for float32 x, as before
    re, im = x[..., 0::2], x[..., 1::2]
    out = torch.stack([re * cos - im * sin, re * sin + im * cos], dim=-1)
    return out.reshape(b, h, w, c)


class LinearAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qk = nn.Linear(dim, dim * 2)
        self.lepe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x, h, w):
        b, n, c = x.shape
        d = c // self.heads
        q, k = self.qk(x).chunk(2, dim=-1)
        q, k = F.elu(q) + 1.0, F.elu(k) + 1.0
        qr = rope(q.reshape(b, h, w, c)).reshape(b, n, self.heads, d).transpose(1, 2)
        kr = rope(k.reshape(b, h, w, c)).reshape(b, n, self.heads, d).transpose(1, 2)
        q = q.reshape(b, n, self.heads, d).transpose(1, 2)
        k = k.reshape(b, n, self.heads, d).transpose(1, 2)
        v = x.reshape(b, n, self.heads, d).transpose(1, 2)
        z = 1.0 / (q @ k.mean(dim=-2, keepdim=True).transpose(-2, -1) + 1e-6)
        kv = (kr.transpose(-2, -1) @ v) / n
        out = (qr @ kv) * z
        out = out.transpose(1, 2).reshape(b, n, c)
        v_map = x.transpose(1, 2).reshape(b, c, h, w)
        return out + self.lepe(v_map).permute(0, 2, 3, 1).reshape(b, n, c)


class ForgetGateAttention(nn.Module):
    """../../../shared/spec/mila-fg.md, as the quadratic masked form in float64 (exact, O(L^2)).
    Training may set `compute_dtype = torch.float32` on the class for speed."""

    compute_dtype = torch.float64

    def __init__(self, dim, heads, bidirectional=True, normalize=True):
        super().__init__()
        self.heads, self.bidirectional, self.normalize = heads, bidirectional, normalize
        self.qk = nn.Linear(dim, dim * 2)
        self.gate = nn.Linear(dim, heads)
        self.A_log = nn.Parameter(torch.zeros(heads))
        self.lepe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x, h, w):
        b, n, c = x.shape
        d = c // self.heads
        q, k = self.qk(x).chunk(2, dim=-1)
        dt = self.compute_dtype
        q = (F.elu(q) + 1.0).reshape(b, n, self.heads, d).transpose(1, 2).to(dt)
        k = (F.elu(k) + 1.0).reshape(b, n, self.heads, d).transpose(1, 2).to(dt)
        v = x.reshape(b, n, self.heads, d).transpose(1, 2).to(dt)
        loga = (-torch.exp(self.A_log) * F.softplus(self.gate(x))).transpose(1, 2).to(dt)  # (b, heads, n)
        cum = torch.cumsum(loga, dim=-1)
        diff = cum[..., :, None] - cum[..., None, :]  # sum_{t=j+1..i} log a for j <= i
        if self.bidirectional:
            mask = torch.exp(-diff.abs())
        else:
            mask = torch.exp(torch.where(torch.ones(n, n, dtype=torch.bool).tril(), diff, torch.full_like(diff, -torch.inf)))
        scores = (q @ k.transpose(-2, -1)) * mask
        out = scores @ v
        if self.normalize:
            out = out / (scores.sum(dim=-1, keepdim=True) + 1e-6)
        out = out.float().transpose(1, 2).reshape(b, n, c)
        v_map = x.transpose(1, 2).reshape(b, c, h, w)
        return out + self.lepe(v_map).permute(0, 2, 3, 1).reshape(b, n, c)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio=4.0, attention="mlla", bidirectional=True, normalize=True):
        super().__init__()
        self.cpe1 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.act_proj = nn.Linear(dim, dim)
        self.in_proj = nn.Linear(dim, dim)
        self.dwc = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.attn = LinearAttention(dim, heads) if attention == "mlla" else ForgetGateAttention(dim, heads, bidirectional, normalize)
        self.out_proj = nn.Linear(dim, dim)
        self.cpe2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    @staticmethod
    def dw(conv, x, h, w):
        b, n, c = x.shape
        return conv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)

    def forward(self, x, h, w):
        x = x + self.dw(self.cpe1, x, h, w)
        shortcut = x
        t = self.norm1(x)
        g = F.silu(self.act_proj(t))
        t = F.silu(self.dw(self.dwc, self.in_proj(t), h, w))
        t = self.attn(t, h, w)
        x = shortcut + self.out_proj(t * g)
        x = x + self.dw(self.cpe2, x, h, w)
        return x + self.mlp(self.norm2(x))


class Downsample(nn.Module):
    def __init__(self, dim):
        super().__init__()
        hidden = dim * 8
        self.conv = nn.Sequential(ConvLayer(dim, hidden, 1, norm=False),
                                  ConvLayer(hidden, hidden, 3, 2, groups=hidden, norm=False),
                                  ConvLayer(hidden, dim * 2, 1, act=False))

    def forward(self, x, h, w):
        b, n, c = x.shape
        x = x.transpose(1, 2).reshape(b, c, h, w)
        x = F.pad(x, (0, w % 2, 0, h % 2))
        x = self.conv(x)
        return x.flatten(2).transpose(1, 2), x.shape[2], x.shape[3]


class Stage(nn.Module):
    def __init__(self, dim, depth, heads, downsample, mlp_ratio, **attention):
        super().__init__()
        self.blocks = nn.ModuleList([Block(dim, heads, mlp_ratio, **attention) for _ in range(depth)])
        self.downsample = Downsample(dim) if downsample else None


class MLLA(nn.Module):
    def __init__(self, embed_dim=64, depths=(2, 4, 8, 4), num_heads=(2, 4, 8, 16), num_classes=1000, mlp_ratio=4.0,
                 attention="mlla", scan="bidirectional", normalize=True):
        super().__init__()
        self.patch_embed = Stem(embed_dim)
        extra = dict(attention=attention, bidirectional=scan == "bidirectional", normalize=normalize)
        self.layers = nn.ModuleList([
            Stage(embed_dim * 2 ** s, depths[s], num_heads[s], s < len(depths) - 1, mlp_ratio, **extra) for s in range(len(depths))])
        last = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(last, eps=1e-5)
        self.head = nn.Linear(last, num_classes)

    def forward(self, image):
        """image (B, 3, H, W) -> logits (B, classes), [stage outputs (B, C_s, H_s, W_s)]."""
        x = self.patch_embed(image)
        h, w = x.shape[2], x.shape[3]
        x = x.flatten(2).transpose(1, 2)
        stages = []
        for stage in self.layers:
            for block in stage.blocks:
                x = block(x, h, w)
            stages.append(x.transpose(1, 2).reshape(x.shape[0], -1, h, w))
            if stage.downsample is not None:
                x, h, w = stage.downsample(x, h, w)
        logits = self.head(self.norm(x).mean(dim=1))
        return logits, stages


class RotationTable(nn.Module):
    """The `attn.rope` module of the released dense-prediction backbones: one buffer `rotations`
    (H, W, C/2, 2) holding (cos, sin) of rope()'s angles for the grid of a fixed input size
    (img_size 224: 56, 28, 14, 7). The forward never reads it (rope() recomputes the angles for
    each input's own grid); it exists so that state dicts carry the tensor real checkpoints carry."""

    def __init__(self, h, w, c):
        super().__init__()
        k_max = c // 4
        theta = 1.0 / (10000.0 ** (torch.arange(k_max, dtype=torch.float64) / k_max))
        ys = torch.arange(h, dtype=torch.float64)[:, None, None] * theta
        xs = torch.arange(w, dtype=torch.float64)[None, :, None] * theta
        angles = torch.cat([ys.expand(h, w, k_max), xs.expand(h, w, k_max)], dim=-1)  # (H, W, C/2)
        self.register_buffer("rotations", torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1).float())


class MLLABackbone(nn.Module):
    """The dense-prediction MLLA (detection and segmentation, ../../../shared/spec/upernet-segmentation.md
    section 2): the classifier's stem and stages, a LayerNorm `norm{s}` on every stage output, no
    `norm` / `head`. State-dict names are those of the released checkpoints without their `backbone.`
    prefix, `layers.*.blocks.*.attn.rope.rotations` included (built for `img_size`, unused)."""

    def __init__(self, embed_dim=96, depths=(3, 6, 21, 6), num_heads=(3, 6, 12, 24), mlp_ratio=4.0, img_size=224):
        super().__init__()
        self.patch_embed = Stem(embed_dim)
        self.layers = nn.ModuleList([
            Stage(embed_dim * 2 ** s, depths[s], num_heads[s], s < len(depths) - 1, mlp_ratio) for s in range(len(depths))])
        for s, stage in enumerate(self.layers):
            side = img_size // 4 // 2 ** s
            for block in stage.blocks:
                block.attn.rope = RotationTable(side, side, embed_dim * 2 ** s)
        for s in range(len(depths)):
            self.add_module(f"norm{s}", nn.LayerNorm(embed_dim * 2 ** s, eps=1e-5))

    def forward(self, image):
        """image (B, 3, H, W) -> [norm{s}(stage s output) as (B, C_s, H_s, W_s)], H_1 = ceil(H/4), H_(s+1) = ceil(H_s/2)."""
        x = self.patch_embed(image)
        h, w = x.shape[2], x.shape[3]
        x = x.flatten(2).transpose(1, 2)
        outputs = []
        for s, stage in enumerate(self.layers):
            for block in stage.blocks:
                x = block(x, h, w)
            y = getattr(self, f"norm{s}")(x)
            outputs.append(y.transpose(1, 2).reshape(x.shape[0], -1, h, w))
            if stage.downsample is not None:
                x, h, w = stage.downsample(x, h, w)
        return outputs
