/// The parameter layout of an MLLA network: every parametrised layer in checkpoint order with
/// its scope and sizes. Binding a checkpoint and making random weights both walk it, so the
/// list of tensor names lives in one place.
protocol LayoutVisitor {
    /// `<scope>.weight` (out, in) or (out, in, 1, 1), `<scope>.bias` (out).
    mutating func linear(_ scope: String, out: Int, in k: Int, kernel1x1: Bool) throws
    /// `<scope>.weight` (c, 1, 3, 3), `<scope>.bias` (c).
    mutating func depthwise(_ scope: String, channels: Int) throws
    /// LayerNorm `<scope>.weight`, `<scope>.bias` (c).
    mutating func norm(_ scope: String, channels: Int) throws
    /// ConvLayer with BatchNorm: `<scope>.conv.weight` [+ `.conv.bias`], `<scope>.<normName>.*`
    /// (`norm` in the backbone, `bn` in mmcv's ConvModule).
    mutating func convBN(_ scope: String, out: Int, in k: Int, kernel: Int, convBias: Bool, normName: String) throws
    /// A bare parameter vector, e.g. `attn.A_log` (heads).
    mutating func vector(_ name: String, count: Int) throws
}

extension LayoutVisitor {
    mutating func convBN(_ scope: String, out: Int, in k: Int, kernel: Int, convBias: Bool) throws {
        try convBN(scope, out: out, in: k, kernel: kernel, convBias: convBias, normName: "norm")
    }
}

enum ModelLayout {
    /// Tensor-name prefix of the backbone: `backbone.` in an mmseg segmentation checkpoint.
    static func backbonePrefix(_ config: ModelConfig) -> String { config.segmentation == nil ? "" : "backbone." }

    static func visit<V: LayoutVisitor>(_ config: ModelConfig, _ v: inout V) throws {
        let c0 = config.embedDim
        let b = backbonePrefix(config)
        try v.convBN("\(b)patch_embed.conv1", out: c0 / 2, in: 3, kernel: 3, convBias: false)
        try v.convBN("\(b)patch_embed.conv2.0", out: c0 / 2, in: c0 / 2, kernel: 3, convBias: false)
        try v.convBN("\(b)patch_embed.conv2.1", out: c0 / 2, in: c0 / 2, kernel: 3, convBias: false)
        try v.convBN("\(b)patch_embed.conv3.0", out: 4 * c0, in: c0 / 2, kernel: 3, convBias: false)
        try v.convBN("\(b)patch_embed.conv3.1", out: c0, in: 4 * c0, kernel: 1, convBias: false)
        for s in 0..<config.stages {
            let c = config.channels(stage: s), hidden = config.hiddenDim(s)
            for j in 0..<config.depths[s] {
                let p = "\(b)layers.\(s).blocks.\(j)"
                try v.depthwise("\(p).cpe1", channels: c)
                try v.norm("\(p).norm1", channels: c)
                try v.linear("\(p).act_proj", out: c, in: c, kernel1x1: false)
                try v.linear("\(p).in_proj", out: c, in: c, kernel1x1: false)
                try v.depthwise("\(p).dwc", channels: c)
                try v.linear("\(p).attn.qk", out: 2 * c, in: c, kernel1x1: false)
                if config.attention == .forgetGate {
                    try v.linear("\(p).attn.gate", out: config.numHeads[s], in: c, kernel1x1: false)
                    try v.vector("\(p).attn.A_log", count: config.numHeads[s])
                }
                try v.depthwise("\(p).attn.lepe", channels: c)
                try v.linear("\(p).out_proj", out: c, in: c, kernel1x1: false)
                try v.depthwise("\(p).cpe2", channels: c)
                try v.norm("\(p).norm2", channels: c)
                try v.linear("\(p).mlp.fc1", out: hidden, in: c, kernel1x1: false)
                try v.linear("\(p).mlp.fc2", out: c, in: hidden, kernel1x1: false)
            }
            if s < config.stages - 1 {
                let d = "\(b)layers.\(s).downsample.conv"
                try v.linear("\(d).0.conv", out: 8 * c, in: c, kernel1x1: true)
                try v.depthwise("\(d).1.conv", channels: 8 * c)
                try v.convBN("\(d).2", out: 2 * c, in: 8 * c, kernel: 1, convBias: true)
            }
        }
        if config.backbone {
            for s in 0..<config.stages { try v.norm("\(b)norm\(s)", channels: config.channels(stage: s)) }
        } else {
            let last = config.channels(stage: config.stages - 1)
            try v.norm("norm", channels: last)
            try v.linear("head", out: config.numClasses, in: last, kernel1x1: false)
        }
        if let head = config.segmentation {
            // UPerHead (../shared/spec/upernet-segmentation.md section 3): ConvModules (conv without
            // bias, BatchNorm `bn`, ReLU), then conv_seg (1x1 with bias).
            let ch = head.channels, top = config.channels(stage: config.stages - 1)
            for k in head.poolScales.indices {
                try v.convBN("decode_head.psp_modules.\(k).1", out: ch, in: top, kernel: 1, convBias: false, normName: "bn")
            }
            try v.convBN("decode_head.bottleneck", out: ch, in: top + head.poolScales.count * ch, kernel: 3, convBias: false, normName: "bn")
            for s in 0..<(config.stages - 1) {
                try v.convBN("decode_head.lateral_convs.\(s)", out: ch, in: config.channels(stage: s), kernel: 1, convBias: false, normName: "bn")
            }
            for s in 0..<(config.stages - 1) {
                try v.convBN("decode_head.fpn_convs.\(s)", out: ch, in: ch, kernel: 3, convBias: false, normName: "bn")
            }
            try v.convBN("decode_head.fpn_bottleneck", out: ch, in: config.stages * ch, kernel: 3, convBias: false, normName: "bn")
            try v.linear("decode_head.conv_seg", out: config.numClasses, in: ch, kernel1x1: true)
        }
    }
}
