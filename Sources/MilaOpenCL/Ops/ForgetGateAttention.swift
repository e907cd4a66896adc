import MilaCore

/// The forget-gated attention's LePE: depthwise 3x3 weights and the token grid they convolve.
public struct ForgetGateLePE {
    public let weights: Conv3x3Weights
    public let height: Int
    public let width: Int
    public init(weights: Conv3x3Weights, height: Int, width: Int) {
        (self.weights, self.height, self.width) = (weights, height, width)
    }
}

/// Which kernel computes the forget-gated attention (Kernels/forget_gate_attention.cl).
public enum ForgetGateKernel: Equatable, Sendable, CustomStringConvertible {
    /// The chunked parallel algorithm with chunks of this many tokens.
    case chunked(chunk: Int)
    /// The sequential scan, token by token (the baseline).
    case recurrent
    /// Phases (the state entering each chunk, then the outputs), vectorised over the head
    /// dimension; needs d % 16 == 0.
    case phased(chunk: Int)

    public var description: String {
        switch self {
        case let .chunked(chunk): "chunked T=\(chunk)"
        case .recurrent: "recurrent"
        case let .phased(chunk): "phased T=\(chunk)"
        }
    }
}

extension CLContext {
    /// Forget-gated linear attention (`ForgetGateAttentionSpec`): qk (B, L, 2C), v (B, L, C),
    /// logGate (B, L, heads); log a = gateScale[h] * logGate (gateScale defaults to ones, so
    /// logGate is log a itself); output (B, L, C). With `lepe` (depthwise weights and the
    /// (height, width) of the token grid) the output adds LePE, dwconv3x3 of v seen as that
    /// image: inside fgla_output_vec for the phased CPU kernels, else a depthwise conv after.
    public func forgetGateAttention(qk: DeviceTensor, v: DeviceTensor, logGate: DeviceTensor, gateScale: CLBuffer? = nil, heads: Int,
                                    bidirectional: Bool, normalize: Bool, kernel: ForgetGateKernel = .chunked(chunk: 32),
                                    lepe: ForgetGateLePE? = nil, output: DeviceTensor? = nil) throws -> DeviceTensor {
        let spec = try ForgetGateAttentionSpec(qk: qk.shape, v: v.shape, logGate: logGate.shape, heads: heads)
        let scale = try gateScale ?? upload([Float](repeating: 1, count: heads))
        defer { if gateScale == nil { recycle(scale) } }
        if let lepe {
            guard lepe.weights.depthwise, lepe.weights.outChannels == spec.channels, lepe.height * lepe.width == spec.tokens else {
                throw MilaError.invalidArgument(op: "forget_gate_attention", message: "LePE needs depthwise weights of \(spec.channels) channels "
                                                + "and a grid of \(spec.tokens) tokens, not \(lepe.height)x\(lepe.width)")
            }
        }
        switch kernel {
        case let .phased(chunk):
            return try phasedForgetGate(qk: qk, v: v, gate: logGate, scale: scale, spec: spec, bidirectional: bidirectional,
                                        normalize: normalize, chunk: chunk, lepe: lepe, output: output)
        case let .chunked(chunk):
            guard (1...128).contains(chunk) else {
                throw MilaError.invalidArgument(op: "forget_gate_attention", message: "chunk size \(chunk) must be 1...128")
            }
            return try thenLePE(lepe, v: v, spec: spec, output: output) { attention in
                try perHeadForgetGate("fgla_chunked", chunk: chunk, qk: qk, v: v, gate: logGate, scale: scale, spec: spec,
                                      bidirectional: bidirectional, normalize: normalize, output: attention)
            }
        case .recurrent:
            return try thenLePE(lepe, v: v, spec: spec, output: output) { attention in
                try perHeadForgetGate("fgla_recurrent", chunk: nil, qk: qk, v: v, gate: logGate, scale: scale, spec: spec,
                                      bidirectional: bidirectional, normalize: normalize, output: attention)
            }
        }
    }

    /// For the kernels that do not add LePE themselves: `attention` computes the attention alone
    /// (into `output` when there is no LePE, else into a temporary that the depthwise conv after
    /// it reads as its residual).
    private func thenLePE(_ lepe: ForgetGateLePE?, v: DeviceTensor, spec: ForgetGateAttentionSpec, output: DeviceTensor?,
                          attention: (DeviceTensor?) throws -> DeviceTensor) throws -> DeviceTensor {
        guard let lepe else { return try attention(output) }
        let alone = try attention(nil)
        defer { recycle(alone) }
        let result = try output ?? empty([spec.batch, spec.tokens, spec.channels])
        try addLePE(v: v, lepe: lepe.weights, height: lepe.height, width: lepe.width, attention: alone, output: result)
        return result
    }

    /// fgla_chunked / fgla_recurrent: one work-group per (head, batch), a work-item per value
    /// column plus one for the normaliser.
    private func perHeadForgetGate(_ name: String, chunk: Int?, qk: DeviceTensor, v: DeviceTensor, gate: DeviceTensor, scale: CLBuffer,
                                   spec: ForgetGateAttentionSpec, bidirectional: Bool, normalize: Bool,
                                   output: DeviceTensor?) throws -> DeviceTensor {
        let (d, heads) = (spec.headDim, spec.heads)
        let columns = d + (normalize ? 1 : 0)
        let defines = ["DHEAD=\(d)", "NORMALIZE=\(normalize ? 1 : 0)", "BIDIRECTIONAL=\(bidirectional ? 1 : 0)"]
            + (chunk.map { ["CHUNK=\($0)"] } ?? [])
        let y = try output ?? empty([spec.batch, spec.tokens, spec.channels])
        let den = try buffer(count: spec.batch * spec.tokens * heads)
        defer { recycle(den) }
        try launch(try self.kernel(.forgetGateAttention, name, defines: defines), global: [columns, heads, spec.batch],
                   local: [columns, 1, 1],
                   arguments: [.int(Int32(spec.tokens)), .int(Int32(spec.channels)), .buffer(qk.buffer), .buffer(v.buffer),
                               .buffer(gate.buffer), .buffer(scale), .buffer(y.buffer), .buffer(den)])
        return y
    }

    /// Tokens per work-item of fgla_output_vec (its FG_TB): each k, v and state row it loads
    /// serves this many tokens (one token per work-item ran at ~25 GFLOP/s on PoCL; 8 ran as
    /// fast as 4, Zen 4).
    static let forgetGateTokensPerItem = 4

    private func phasedForgetGate(qk: DeviceTensor, v: DeviceTensor, gate: DeviceTensor, scale: CLBuffer, spec: ForgetGateAttentionSpec,
                                  bidirectional: Bool, normalize: Bool, chunk: Int, lepe: ForgetGateLePE?,
                                  output: DeviceTensor?) throws -> DeviceTensor {
        let (batch, l, c, heads, d) = (spec.batch, spec.tokens, spec.channels, spec.heads, spec.headDim)
        guard d % 16 == 0 else {
            throw MilaError.unsupported(op: "forget_gate_attention", message: "the phased kernels need a head dimension divisible by 16, not \(d)")
        }
        guard (1...256).contains(chunk) else {
            throw MilaError.invalidArgument(op: "forget_gate_attention", message: "chunk size \(chunk) must be 1...256")
        }
        let tokens = Self.forgetGateTokensPerItem
        let phases = ["DHEAD=\(d)", "CHUNK=\(chunk)", "FG_BIDIR=\(bidirectional ? 1 : 0)", "FG_TB=\(tokens)"]
        if variant == .gpu, let group = ForgetGateTiles.workGroup(headDim: d, chunk: chunk, localMemory: Int(device.localMemory),
                                                                  maxWorkGroup: device.maxWorkGroupSize) {
            // fgla_output_wg leaves LePE to a depthwise conv after it.
            return try thenLePE(lepe, v: v, spec: spec, output: output) { attention in
                try phasedForgetGateGPU(qk: qk, v: v, gate: gate, scale: scale, spec: spec, bidirectional: bidirectional,
                                        normalize: normalize, chunk: chunk, group: group, defines: phases, output: attention)
            }
        }
        let defines = phases + (lepe?.weights.precision.kernelDefines ?? [])
        let chunks = ceilDiv(l, chunk)
        let kfeat = try buffer(count: batch * chunks * c * ((chunk + 15) / 16 * 16))  // k transposed per chunk (FG_CHUNK16)
        let factors = try buffer(count: batch * l * heads)
        let forward = try buffer(count: batch * chunks * c * (d + 1))
        let backward = bidirectional ? try buffer(count: batch * chunks * c * (d + 1)) : forward
        defer {
            for b in [kfeat, factors, forward] { recycle(b) }
            if bidirectional { recycle(backward) }
        }
        // One walk over the chunks per (head, direction, batch), a work-item each.
        try launch(try kernel(.forgetGateAttention, "fgla_states_seq", defines: defines), global: [heads, bidirectional ? 2 : 1, batch],
                   local: [1, 1, 1],
                   arguments: [.int(Int32(l)), .int(Int32(c)), .buffer(qk.buffer), .buffer(v.buffer), .buffer(gate.buffer),
                               .buffer(scale), .buffer(forward), .buffer(backward), .buffer(kfeat), .buffer(factors)])
        let y = try output ?? empty([batch, l, c])
        // FG_TB tokens per work-item; work-groups of 8 (PoCL's own choice of a large group
        // overflowed its stack with the kernel's private arrays).
        let blocks = chunks * ceilDiv(chunk, tokens)
        try launch(try kernel(.forgetGateAttention, "fgla_output_vec", defines: defines), global: [ceilDiv(blocks, 8) * 8, heads, batch],
                   local: [8, 1, 1],
                   arguments: [.int(Int32(l)), .int(Int32(c)), .int(normalize ? 1 : 0), .buffer(qk.buffer), .buffer(kfeat), .buffer(v.buffer),
                               .buffer(gate.buffer), .buffer(scale), .buffer(forward), .buffer(backward), .buffer(factors), .buffer(y.buffer),
                               .int(Int32(lepe?.width ?? 1)), .buffer(lepe?.weights.packed ?? scale), .buffer(lepe?.weights.bias ?? scale),
                               .int(lepe == nil ? 0 : lepe!.weights.bias == nil ? 1 : 2)])
        return y
    }

    /// The GPU phases (fgla_state_wg, fgla_state_scan, fgla_output_wg): work-groups of `group`
    /// work-items per (head, chunk) with the chunk in local memory.
    private func phasedForgetGateGPU(qk: DeviceTensor, v: DeviceTensor, gate: DeviceTensor, scale: CLBuffer, spec: ForgetGateAttentionSpec,
                                     bidirectional: Bool, normalize: Bool, chunk: Int, group: Int, defines: [String],
                                     output: DeviceTensor?) throws -> DeviceTensor {
        let (batch, l, c, heads, d) = (spec.batch, spec.tokens, spec.channels, spec.heads, spec.headDim)
        let chunks = ceilDiv(l, chunk)
        let tiled = defines + ["FG_WG=\(group)", "FG_OPW=\(ceilDiv(d * d, group))"]
        let decay = try buffer(count: batch * chunks * heads)
        let forward = try buffer(count: batch * chunks * c * (d + 1))
        let backward = bidirectional ? try buffer(count: batch * chunks * c * (d + 1)) : forward
        defer {
            for b in [decay, forward] { recycle(b) }
            if bidirectional { recycle(backward) }
        }
        let (lTokens, channels) = (Int32(l), Int32(c))
        try launch(try kernel(.forgetGateAttention, "fgla_state_wg", defines: tiled), global: [group * heads, chunks, batch],
                   local: [group, 1, 1],
                   arguments: [.int(lTokens), .int(channels), .buffer(qk.buffer), .buffer(v.buffer), .buffer(gate.buffer), .buffer(scale),
                               .buffer(forward), .buffer(backward), .buffer(decay)])
        try launch(try kernel(.forgetGateAttention, "fgla_state_scan", defines: tiled),
                   global: [heads * d * (d + 1) / 16, batch, bidirectional ? 2 : 1],
                   arguments: [.int(channels), .int(Int32(chunks)), .buffer(forward), .buffer(backward), .buffer(decay)])
        let y = try output ?? empty([batch, l, c])
        try launch(try kernel(.forgetGateAttention, "fgla_output_wg", defines: tiled), global: [group * chunks, heads, batch],
                   local: [group, 1, 1],
                   arguments: [.int(lTokens), .int(channels), .int(normalize ? 1 : 0), .buffer(qk.buffer), .buffer(v.buffer),
                               .buffer(gate.buffer), .buffer(scale), .buffer(forward), .buffer(backward), .buffer(y.buffer)])
        return y
    }
}

/// Work-group size of the GPU forget-gate phases: 256 work-items (or the device's maximum, a
/// power of two), when fgla_output_wg's local arrays (q, k, v rows, the chunk's score matrix,
/// four per-token values; 17 KiB at d = 32, T = 32) fit the device's local memory; nil otherwise
/// (the CPU phases run, correct on any device).
enum ForgetGateTiles {
    static func workGroup(headDim d: Int, chunk: Int, localMemory: Int, maxWorkGroup: Int) -> Int? {
        let bytes = (3 * chunk * d + chunk * (chunk + 1) + 4 * chunk) * 4
        guard bytes <= localMemory else { return nil }
        var group = 1
        while group * 2 <= min(256, maxWorkGroup) { group *= 2 }
        return group
    }
}
