import MilaCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Reference {
    /// Forget-gated linear attention per head (../shared/spec/mila-fg.md), in its recurrent form
    /// with Float64 state: the ground truth for the chunked kernels.
    ///
    /// qk (B, L, 2C) before the feature map (q, k = ELU + 1 of its halves), v (B, L, C),
    /// logGate (B, L, heads) = log a <= 0. Causal: S_i = a_i S_{i-1} + k_i^T v_i, num_i = q_i S_i.
    /// Bidirectional adds the backward scan R_i = a_{i+1} R_{i+1} + k_i^T v_i and subtracts the
    /// diagonal counted twice. The normaliser is the same with v = 1; out = num / (den + 1e-6).
    /// Returns (B, L, C) without LePE.
    public static func forgetGateAttention(qk: Tensor, v: Tensor, logGate: Tensor, heads: Int,
                                           bidirectional: Bool, normalize: Bool) throws -> Tensor {
        let spec = try ForgetGateAttentionSpec(qk: qk.shape, v: v.shape, logGate: logGate.shape, heads: heads)
        let (batch, l, c, d) = (spec.batch, spec.tokens, spec.channels, spec.headDim)
        var out = try Tensor(zeros: [batch, l, c])
        func elu1(_ t: Float) -> Double { let x = Double(t); return x > 0 ? x + 1 : exp(x) }
        for b in 0..<batch {
            for h in 0..<heads {
                var q = [[Double]](), k = [[Double]](), vs = [[Double]](), a = [Double]()
                for t in 0..<l {
                    let row = (b * l + t) * 2 * c
                    q.append((0..<d).map { elu1(qk.data[row + h * d + $0]) })
                    k.append((0..<d).map { elu1(qk.data[row + c + h * d + $0]) })
                    vs.append((0..<d).map { Double(v.data[(b * l + t) * c + h * d + $0]) } + [1])  // last column: den
                    a.append(exp(Double(logGate.data[(b * l + t) * heads + h])))
                }
                let columns = d + 1
                var result = [[Double]](repeating: [Double](repeating: 0, count: columns), count: l)
                // Forward scan.
                var state = [Double](repeating: 0, count: d * columns)
                for t in 0..<l {
                    for i in 0..<(d * columns) { state[i] *= a[t] }
                    for m in 0..<d { for e in 0..<columns { state[m * columns + e] += k[t][m] * vs[t][e] } }
                    for e in 0..<columns {
                        var acc = 0.0
                        for m in 0..<d { acc += q[t][m] * state[m * columns + e] }
                        result[t][e] += acc
                    }
                }
                if bidirectional {
                    state = [Double](repeating: 0, count: d * columns)
                    for t in stride(from: l - 1, through: 0, by: -1) {
                        if t + 1 < l { for i in 0..<(d * columns) { state[i] *= a[t + 1] } }
                        for m in 0..<d { for e in 0..<columns { state[m * columns + e] += k[t][m] * vs[t][e] } }
                        var qk = 0.0
                        for m in 0..<d { qk += q[t][m] * k[t][m] }
                        for e in 0..<columns {
                            var acc = 0.0
                            for m in 0..<d { acc += q[t][m] * state[m * columns + e] }
                            result[t][e] += acc - qk * vs[t][e]  // the diagonal was counted by both scans
                        }
                    }
                }
                for t in 0..<l {
                    for e in 0..<d {
                        let y = normalize ? result[t][e] / (result[t][d] + 1e-6) : result[t][e]
                        out.data[(b * l + t) * c + h * d + e] = Float(y)
                    }
                }
            }
        }
        return out
    }
}
