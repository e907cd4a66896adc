import MilaCore

/// Builds the MLLA graph for a (batch, height, width) input from the configuration and the
/// prepared weights' shapes (names from WeightBinding).
public enum ModelGraph {
    /// The padding rules of the official dense-prediction backbones: the image is padded at the
    /// bottom and right to a multiple of 4; an odd map is padded by one row / column before
    /// each downsample.
    /// `fused`: run the scheduler's fusion pass (the default; the unfused graph is for tests).
    public static func build(config: ModelConfig, weightShapes: [String: [Int]], batch: Int, height: Int, width: Int,
                             fused: Bool = true) throws -> Graph {
        let graph = try unfused(config: config, weightShapes: weightShapes, batch: batch, height: height, width: width)
        return fused ? try Fusion.fuse(graph) : graph
    }

    /// Every op on its own: convolutions and linear layers without epilogues, followed by
    /// activation, multiply and add nodes.
    static func unfused(config: ModelConfig, weightShapes: [String: [Int]], batch: Int, height: Int, width: Int) throws -> Graph {
        guard batch >= 1, height >= 1, width >= 1 else {
            throw MilaError.invalidArgument(op: "model", message: "input \(batch)x\(height)x\(width) must be at least 1x1x1")
        }
        var g = Graph(batch: batch, height: height, width: width, weightShapes: weightShapes)
        var x = try g.add("input", .input(shape: [batch, height, width, 3]), inputs: [])
        let (h4, w4) = ((height + 3) / 4 * 4, (width + 3) / 4 * 4)
        if (h4, w4) != (height, width) { x = try g.add("patch_embed.pad", .pad(height: h4, width: w4), inputs: [x]) }
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
        let c1 = try conv("patch_embed.conv1", x, stride: 2, .relu)
        let c2 = try conv("patch_embed.conv2.0", c1, stride: 1, .relu)
        let c3 = try conv("patch_embed.conv2.1", c2, stride: 1, .none, residual: c1)
        let c4 = try conv("patch_embed.conv3.0", c3, stride: 2, .relu)
        x = try linear("patch_embed.conv3.1", c4, weight: "patch_embed.conv3.1#folded")

        for s in 0..<config.stages {
            for j in 0..<config.depths[s] {
                let p = "layers.\(s).blocks.\(j)"
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
            g.markOutput("stage\(s)", config.backbone ? try norm("norm\(s)", x) : x)
            if s < config.stages - 1 {
                let d = "layers.\(s).downsample"
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
