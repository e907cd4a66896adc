import MilaCore

/// Which kernel computes the forget-gated attention (Kernels/forget_gate_attention.cl).
public enum ForgetGateKernel: Equatable, Sendable, CustomStringConvertible {
    /// The chunked parallel algorithm with chunks of this many tokens.
    case chunked(chunk: Int)
    /// The sequential scan, token by token (the baseline).
    case recurrent

    public var description: String {
        switch self {
        case let .chunked(chunk): "chunked T=\(chunk)"
        case .recurrent: "recurrent"
        }
    }
}

extension CLContext {
    /// Forget-gated linear attention without LePE (`ForgetGateAttentionSpec`): qk (B, L, 2C),
    /// v (B, L, C), logGate (B, L, heads); log a = gateScale[h] * logGate (gateScale defaults to
    /// ones, so logGate is log a itself); output (B, L, C).
    public func forgetGateAttention(qk: DeviceTensor, v: DeviceTensor, logGate: DeviceTensor, gateScale: CLBuffer? = nil, heads: Int,
                                    bidirectional: Bool, normalize: Bool, kernel: ForgetGateKernel = .chunked(chunk: 32),
                                    output: DeviceTensor? = nil) throws -> DeviceTensor {
        let spec = try ForgetGateAttentionSpec(qk: qk.shape, v: v.shape, logGate: logGate.shape, heads: heads)
        let d = spec.headDim
        let columns = d + (normalize ? 1 : 0)
        var defines = ["DHEAD=\(d)", "NORMALIZE=\(normalize ? 1 : 0)", "BIDIRECTIONAL=\(bidirectional ? 1 : 0)"]
        let name: String
        switch kernel {
        case let .chunked(chunk):
            guard (1...128).contains(chunk) else {
                throw MilaError.invalidArgument(op: "forget_gate_attention", message: "chunk size \(chunk) must be 1...128")
            }
            defines.append("CHUNK=\(chunk)")
            name = "fgla_chunked"
        case .recurrent:
            name = "fgla_recurrent"
        }
        let y = try output ?? empty([spec.batch, spec.tokens, spec.channels])
        let den = try buffer(count: spec.batch * spec.tokens * heads)
        let scale = try gateScale ?? upload([Float](repeating: 1, count: heads))
        defer { recycle(den); if gateScale == nil { recycle(scale) } }
        try launch(try self.kernel(.forgetGateAttention, name, defines: defines), global: [columns, heads, spec.batch],
                   local: [columns, 1, 1],
                   arguments: [.int(Int32(spec.tokens)), .int(Int32(spec.channels)), .buffer(qk.buffer), .buffer(v.buffer),
                               .buffer(logGate.buffer), .buffer(scale), .buffer(y.buffer), .buffer(den)])
        return y
    }
}
