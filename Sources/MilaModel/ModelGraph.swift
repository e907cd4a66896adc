import MilaCore

/// Builds the MLLA graph for a (batch, height, width) input from the configuration and the
/// prepared weights' shapes (names from WeightBinding).
public enum ModelGraph {
    /// The padding rules of the official dense-prediction backbones: the image is padded at the
    /// bottom and right to a multiple of 4; an odd map is padded by one row / column before
    /// each downsample.
    /// `fused`: run the scheduler's fusion pass (the default; the unfused graph is for tests).
    /// What a segmentation graph ends with (classifiers and backbones ignore it).
    public enum SegmentationOutput: Equatable, Sendable {
        /// The decode head's logits (B, ceil(H/4), ceil(W/4), classes): output `logits`.
        case headLogits
        /// Also the logits resized to the input's size, then to (height, width): `full_logits`.
        case fullLogits(height: Int, width: Int)
        /// Also the label map at (height, width) by the fused resize-resize-argmax: `labels`.
        case labels(height: Int, width: Int)
    }

    public static func build(config: ModelConfig, weightShapes: [String: [Int]], batch: Int, height: Int, width: Int,
                             segmentation: SegmentationOutput = .headLogits, fused: Bool = true) throws -> Graph {
        var graph = try unfused(config: config, weightShapes: weightShapes, batch: batch, height: height, width: width)
        if let head = config.segmentation { try addUPerHead(head, config: config, to: &graph, output: segmentation) }
        return fused ? try Fusion.fuse(graph) : graph
    }

    /// The UPerHead on the four normalised stage outputs (../shared/spec/upernet-segmentation.md
    /// section 3): PPM on C4 -> bottleneck = L4; laterals L1..L3 with the top-down sums fused into
    /// their GEMMs' residual; fpn convs; F2..F4 resized to s1; fpn_bottleneck; conv_seg. Both
    /// concats are filled in place by their producers. BatchNorm is folded (`#folded`), ReLU fused.
    static func addUPerHead(_ head: ModelConfig.SegmentationHead, config: ModelConfig, to g: inout Graph,
                            output: SegmentationOutput) throws {
        let n = config.stages
        guard n >= 2 else { throw ModelError.config("an UPerHead needs at least 2 backbone stages, not \(n)") }
        let stages = (0..<n).map { g.outputs["stage\($0)"]! }
        func size(_ id: Int) -> (Int, Int) { (g.nodes[id].shape[1], g.nodes[id].shape[2]) }
        func module(_ scope: String, _ input: Int, kernel: Int, residual: Int? = nil) throws -> Int {
            let (w, b) = ("\(scope)#folded.weight", "\(scope)#folded.bias")
            let op: Op = kernel == 1 ? .linear(weight: w, bias: b, activation: .relu)
                : .conv3x3(weight: w, bias: b, stride: 1, activation: .relu, depthwise: false)
            return try g.add(scope, op, inputs: [input], residual: residual)
        }
        func resize(_ scope: String, _ input: Int, to target: (Int, Int)) throws -> Int {
            try g.add(scope, .resize(height: target.0, width: target.1), inputs: [input])
        }
        let top = stages[n - 1], topSize = size(top)
        var pyramid = [top]
        for (k, scale) in head.poolScales.enumerated() {
            let p = "decode_head.psp_modules.\(k)"
            let pooled = try g.add("\(p).0", .adaptiveAvgPool(size: scale), inputs: [top])
            pyramid.append(try resize("\(p).up", try module("\(p).1", pooled, kernel: 1), to: topSize))
        }
        let ppm = try g.add("decode_head.psp_cat", .concat, inputs: pyramid)
        var laterals = [Int](repeating: 0, count: n)
        laterals[n - 1] = try module("decode_head.bottleneck", ppm, kernel: 3)
        // Top-down: L_i = lateral_i(C_i) + up(L_{i+1}), each from the already-updated level above.
        for i in stride(from: n - 2, through: 0, by: -1) {
            let up = try resize("decode_head.lateral_convs.\(i).up", laterals[i + 1], to: size(stages[i]))
            laterals[i] = try module("decode_head.lateral_convs.\(i)", stages[i], kernel: 1, residual: up)
        }
        let s1 = size(stages[0])
        var outs = [try module("decode_head.fpn_convs.0", laterals[0], kernel: 3)]
        for i in 1..<n {
            let f = i < n - 1 ? try module("decode_head.fpn_convs.\(i)", laterals[i], kernel: 3) : laterals[i]
            outs.append(try resize("decode_head.fpn_convs.\(i).up", f, to: s1))
        }
        let fpn = try g.add("decode_head.fpn_cat", .concat, inputs: outs)
        let fused = try module("decode_head.fpn_bottleneck", fpn, kernel: 3)
        let logits = try g.add("decode_head.conv_seg", .linear(weight: "decode_head.conv_seg.weight", bias: "decode_head.conv_seg.bias",
                                                                activation: .none), inputs: [fused])
        g.markOutput("logits", logits)
        switch output {
        case .headLogits:
            break
        case let .fullLogits(height, width):
            let mid = try resize("resize.input", logits, to: (g.height, g.width))
            g.markOutput("full_logits", try resize("resize.output", mid, to: (height, width)))
        case let .labels(height, width):
            g.markOutput("labels", try g.add("resize_argmax", .resizeArgmax(midHeight: g.height, midWidth: g.width, height: height, width: width),
                                             inputs: [logits]))
        }
    }

    /// Every op on its own: convolutions and linear layers without epilogues, followed by
    /// activation, multiply and add nodes.
    static func unfused(config: ModelConfig, weightShapes: [String: [Int]], batch: Int, height: Int, width: Int) throws -> Graph {
        guard batch >= 1, height >= 1, width >= 1 else {
            throw MilaError.invalidArgument(op: "model", message: "input \(batch)x\(height)x\(width) must be at least 1x1x1")
        }
        var g = Graph(batch: batch, height: height, width: width, weightShapes: weightShapes)
        var x = try g.add("input", .input(shape: [batch, height, width, 3]), inputs: [])
        let root = ModelLayout.backbonePrefix(config)
        let (h4, w4) = ((height + 3) / 4 * 4, (width + 3) / 4 * 4)
        if (h4, w4) != (height, width) { x = try g.add("\(root)patch_embed.pad", .pad(height: h4, width: w4), inputs: [x]) }
        func activate(_ x: Int, _ activation: Activation, _ scope: String) throws -> Int {
            activation == .none ? x : try g.add("\(scope).act", .activation(activation), inputs: [x])
        }
        func plus(_ x: Int, _ residual: Int?, _ scope: String) throws -> Int {
            guard let residual else { return x }
            return try g.add("\(scope).add", .add, inputs: [residual, x])
        }
        func conv(_ scope: String, _ input: Int, stride: Int, _ activation: Activation, residual: Int? = nil) throws -> Int {
            let y = try g.add(scope, .conv3x3(weight: "\(scope)#folded.weight", bias: "\(scope)#folded.bias", stride: stride,
                                              activation: .none, depthwise: false), inputs: [input])
            return try plus(try activate(y, activation, scope), residual, scope)
        }
        func depthwise(_ scope: String, _ input: Int, stride: Int = 1, _ activation: Activation = .none, residual: Int? = nil) throws -> Int {
            let y = try g.add(scope, .conv3x3(weight: "\(scope).weight", bias: "\(scope).bias", stride: stride, activation: .none, depthwise: true),
                              inputs: [input])
            return try plus(try activate(y, activation, scope), residual, scope)
        }
        func linear(_ scope: String, _ input: Int, _ activation: Activation = .none, weight: String? = nil,
                    multiply: Int? = nil, residual: Int? = nil) throws -> Int {
            let w = weight ?? scope
            var y = try activate(try g.add(scope, .linear(weight: "\(w).weight", bias: "\(w).bias", activation: .none), inputs: [input]),
                                 activation, scope)
            if let multiply { y = try g.add("\(scope).mul", .multiply, inputs: [y, multiply]) }
            return try plus(y, residual, scope)
        }
        func norm(_ scope: String, _ input: Int) throws -> Int {
            try g.add(scope, .layerNorm(weight: "\(scope).weight", bias: "\(scope).bias"), inputs: [input])
        }

        // Stem: stride 4.
        let c1 = try conv("\(root)patch_embed.conv1", x, stride: 2, .relu)
        let c2 = try conv("\(root)patch_embed.conv2.0", c1, stride: 1, .relu)
        let c3 = try conv("\(root)patch_embed.conv2.1", c2, stride: 1, .none, residual: c1)
        let c4 = try conv("\(root)patch_embed.conv3.0", c3, stride: 2, .relu)
        x = try linear("\(root)patch_embed.conv3.1", c4, weight: "\(root)patch_embed.conv3.1#folded")

        for s in 0..<config.stages {
            for j in 0..<config.depths[s] {
                let p = "\(root)layers.\(s).blocks.\(j)"
                let x1 = try depthwise("\(p).cpe1", x, residual: x)
                let h = try norm("\(p).norm1", x1)
                let a = try linear("\(p).in_proj", h)
                let v = try depthwise("\(p).dwc", a, .silu)
                let qk = try linear("\(p).attn.qk", v)
                let attention: Int
                switch config.attention {
                case .mlla:
                    attention = try g.add("\(p).attn", .linearAttention(heads: config.numHeads[s], lepeWeight: "\(p).attn.lepe.weight",
                                                                     lepeBias: "\(p).attn.lepe.bias"),
                                          inputs: [qk, v])
                case .forgetGate:
                    // dt = softplus(gate(v)), fused into the gate GEMM; log a = -exp(A_log) * dt inside the attention.
                    let gate = try linear("\(p).attn.gate", v, .softplus)
                    attention = try g.add("\(p).attn", .forgetGateAttention(
                        heads: config.numHeads[s], bidirectional: config.bidirectional, normalize: config.normalize,
                        aLog: "\(p).attn.A_log", lepeWeight: "\(p).attn.lepe.weight", lepeBias: "\(p).attn.lepe.bias"),
                        inputs: [qk, v, gate])
                }
                // SiLU(act_proj(h)) * attention, then out_proj with the block's shortcut.
                let gated = try linear("\(p).act_proj", h, .silu, multiply: attention)
                let x2 = try linear("\(p).out_proj", gated, residual: x1)
                let x3 = try depthwise("\(p).cpe2", x2, residual: x2)
                let hidden = try linear("\(p).mlp.fc1", try norm("\(p).norm2", x3), .gelu)
                x = try linear("\(p).mlp.fc2", hidden, residual: x3)
            }
            // Stage output s; a backbone normalises it with its own norm{s} (the stream goes on un-normalised).
            g.markOutput("stage\(s)", config.backbone ? try norm("\(root)norm\(s)", x) : x)
            if s < config.stages - 1 {
                let d = "\(root)layers.\(s).downsample"
                let shape = g.nodes[x].shape
                let (hs, ws) = (shape[1], shape[2])
                if hs % 2 == 1 || ws % 2 == 1 {
                    x = try g.add("\(d).pad", .pad(height: hs + hs % 2, width: ws + ws % 2), inputs: [x])
                }
                let expanded = try linear("\(d).conv.0", x, .relu, weight: "\(d).conv.0.conv")
                let reduced = try depthwise("\(d).conv.1.conv", expanded, stride: 2, .relu)
                x = try linear("\(d).conv.2", reduced, weight: "\(d).conv.2#folded")
            }
        }
        if !config.backbone {
            let pooled = try g.add("avgpool", .meanTokens, inputs: [try norm("norm", x)])
            g.markOutput("logits", try linear("head", pooled))
        }
        return g
    }
}
