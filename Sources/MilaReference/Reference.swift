import MilaCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The CPU reference backend: every op computed the obvious way in plain Swift, accumulating in
/// Float64, as ground truth for the OpenCL kernels. Layouts are those of MilaCore's specs
/// (channels-last maps, PyTorch weight layouts). Not fast, and not meant to be.
public enum Reference {
    /// The activation in Float64; GELU is the exact erf form.
    public static func activate(_ x: Double, _ activation: Activation) -> Double {
        switch activation {
        case .none: x
        case .relu: max(x, 0)
        case .silu: x / (1 + exp(-x))
        case .gelu: 0.5 * x * erfc(-x / 2.0.squareRoot())
        case .softplus: max(x, 0) + log1p(exp(-abs(x)))
        }
    }

    /// y = act(x W^T + b) * multiply + residual. Shapes: GemmSpec.
    public static func gemm(_ x: Tensor, weight: Tensor, bias: Tensor?, activation: Activation = .none,
                            residual: Tensor? = nil, multiply: Tensor? = nil) throws -> Tensor {
        let spec = try GemmSpec(input: x.shape, weight: weight.shape, bias: bias?.shape,
                                residual: residual?.shape, multiply: multiply?.shape)
        let (m, k, n) = (spec.rows, spec.inFeatures, spec.outFeatures)
        var y = try Tensor(zeros: spec.outputShape)
        x.data.withUnsafeBufferPointer { xp in
            weight.data.withUnsafeBufferPointer { wp in
                for row in 0..<m {
                    for col in 0..<n {
                        var acc = Double(bias?.data[col] ?? 0)
                        for i in 0..<k { acc += Double(xp[row * k + i]) * Double(wp[col * k + i]) }
                        var v = activate(acc, activation)
                        if let multiply { v *= Double(multiply.data[row * n + col]) }
                        if let residual { v += Double(residual.data[row * n + col]) }
                        y.data[row * n + col] = Float(v)
                    }
                }
            }
        }
        return y
    }

    /// 3x3 convolution, pad 1, stride 1 or 2, on (B, H, W, C) maps; dense or depthwise
    /// (`Conv3x3Spec`), then bias, activation and residual add.
    public static func conv3x3(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int, depthwise: Bool,
                               activation: Activation = .none, residual: Tensor? = nil) throws -> Tensor {
        let spec = try Conv3x3Spec(input: x.shape, weight: weight.shape, bias: bias?.shape, residual: residual?.shape,
                                   stride: stride, depthwise: depthwise, activation: activation)
        let (h, w, cin, cout) = (spec.height, spec.width, spec.inChannels, spec.outChannels)
        let (ho, wo) = (spec.outHeight, spec.outWidth)
        var y = try Tensor(zeros: spec.outputShape)
        x.data.withUnsafeBufferPointer { xp in
            weight.data.withUnsafeBufferPointer { wp in
                for b in 0..<spec.batch {
                    for oy in 0..<ho {
                        for ox in 0..<wo {
                            for co in 0..<cout {
                                var acc = Double(bias?.data[co] ?? 0)
                                for ky in 0..<3 {
                                    let iy = oy * stride + ky - 1
                                    guard iy >= 0, iy < h else { continue }
                                    for kx in 0..<3 {
                                        let ix = ox * stride + kx - 1
                                        guard ix >= 0, ix < w else { continue }
                                        let pixel = ((b * h + iy) * w + ix) * cin
                                        if depthwise {
                                            acc += Double(xp[pixel + co]) * Double(wp[co * 9 + ky * 3 + kx])
                                        } else {
                                            for ci in 0..<cin {
                                                acc += Double(xp[pixel + ci]) * Double(wp[((co * cin + ci) * 3 + ky) * 3 + kx])
                                            }
                                        }
                                    }
                                }
                                let index = ((b * ho + oy) * wo + ox) * cout + co
                                var v = activate(acc, activation)
                                if let residual { v += Double(residual.data[index]) }
                                y.data[index] = Float(v)
                            }
                        }
                    }
                }
            }
        }
        return y
    }

    /// LayerNorm over the last dimension: (x - mean) / sqrt(var + eps) * weight + bias (biased variance).
    public static func layerNorm(_ x: Tensor, weight: Tensor, bias: Tensor, eps: Double = 1e-5) throws -> Tensor {
        let spec = try LayerNormSpec(input: x.shape, weight: weight.shape, bias: bias.shape)
        let c = spec.channels
        var y = x
        for row in 0..<spec.rows {
            let base = row * c
            var mean = 0.0
            for i in 0..<c { mean += Double(x.data[base + i]) }
            mean /= Double(c)
            var variance = 0.0
            for i in 0..<c { let d = Double(x.data[base + i]) - mean; variance += d * d }
            variance /= Double(c)
            let inv = 1 / (variance + eps).squareRoot()
            for i in 0..<c {
                y.data[base + i] = Float((Double(x.data[base + i]) - mean) * inv * Double(weight.data[i]) + Double(bias.data[i]))
            }
        }
        return y
    }

    /// The released MLLA linear attention with LePE (`LinearAttentionSpec`).
    public static func linearAttention(qk: Tensor, v: Tensor, height: Int, width: Int, heads: Int,
                                       lepeWeight: Tensor, lepeBias: Tensor) throws -> Tensor {
        let spec = try LinearAttentionSpec(qk: qk.shape, v: v.shape, height: height, width: width, heads: heads,
                                           lepeWeight: lepeWeight.shape, lepeBias: lepeBias.shape)
        let (l, c, d) = (spec.tokens, spec.channels, spec.headDim)
        let kMax = c / 4
        func elu1(_ t: Float) -> Double { let x = Double(t); return x > 0 ? x + 1 : exp(x) }
        // Rotates channel pair (2p, 2p+1) of `f` at token (y, x).
        func rope(_ f: [Double], y: Int, x: Int) -> [Double] {
            var r = f
            for p in 0..<(c / 2) {
                let angle = p < kMax ? Double(y) * RoPE.theta(p, channels: c) : Double(x) * RoPE.theta(p - kMax, channels: c)
                let (cs, sn) = (cos(angle), sin(angle))
                r[2 * p] = f[2 * p] * cs - f[2 * p + 1] * sn
                r[2 * p + 1] = f[2 * p] * sn + f[2 * p + 1] * cs
            }
            return r
        }
        let lepe = try conv3x3(try Tensor(shape: [spec.batch, height, width, c], data: v.data),
                               weight: lepeWeight, bias: lepeBias, stride: 1, depthwise: true)
        var out = try Tensor(zeros: spec.outputShape)
        for b in 0..<spec.batch {
            var q = [[Double]](), qr = [[Double]](), kMean = [Double](repeating: 0, count: c)
            var kv = [Double](repeating: 0, count: c * d)  // per head h: kv[h*d*d + i*d + j]
            for t in 0..<l {
                let row = (b * l + t) * 2 * c
                let qt = (0..<c).map { elu1(qk.data[row + $0]) }
                let kt = (0..<c).map { elu1(qk.data[row + c + $0]) }
                let (y, x) = (t / width, t % width)
                q.append(qt)
                qr.append(rope(qt, y: y, x: x))
                let kr = rope(kt, y: y, x: x)
                for i in 0..<c { kMean[i] += kt[i] }
                for h in 0..<heads {
                    for i in 0..<d {
                        for j in 0..<d {
                            kv[h * d * d + i * d + j] += kr[h * d + i] * Double(v.data[(b * l + t) * c + h * d + j])
                        }
                    }
                }
            }
            for i in 0..<c { kMean[i] /= Double(l) }
            for i in 0..<(c * d) { kv[i] /= Double(l) }
            for t in 0..<l {
                for h in 0..<heads {
                    var dot = 0.0
                    for i in 0..<d { dot += q[t][h * d + i] * kMean[h * d + i] }
                    let z = 1 / (dot + 1e-6)
                    for j in 0..<d {
                        var acc = 0.0
                        for i in 0..<d { acc += qr[t][h * d + i] * kv[h * d * d + i * d + j] }
                        let index = (b * l + t) * c + h * d + j
                        out.data[index] = Float(acc * z + Double(lepe.data[index]))
                    }
                }
            }
        }
        return out
    }

    /// Mean over the token axis: (B, L, C) -> (B, C).
    public static func meanTokens(_ x: Tensor) throws -> Tensor {
        guard x.shape.count == 3 else {
            throw MilaError.shapeMismatch(op: "mean_tokens", tensor: "input", expected: "(B, L, C)", actual: x.shape)
        }
        let (batch, l, c) = (x.shape[0], x.shape[1], x.shape[2])
        var y = try Tensor(zeros: [batch, c])
        for b in 0..<batch {
            for i in 0..<c {
                var acc = 0.0
                for t in 0..<l { acc += Double(x.data[(b * l + t) * c + i]) }
                y.data[b * c + i] = Float(acc / Double(l))
            }
        }
        return y
    }

    /// Elementwise a + b or a * b (same shapes).
    public static func elementwise(_ a: Tensor, _ b: Tensor, _ op: ElementwiseOp) throws -> Tensor {
        guard a.shape == b.shape else {
            throw MilaError.shapeMismatch(op: "elementwise_\(op)", tensor: "second operand",
                                          expected: Shape.describe(a.shape), actual: b.shape)
        }
        var y = a
        for i in 0..<a.count {
            y.data[i] = Float(op == .add ? Double(a.data[i]) + Double(b.data[i]) : Double(a.data[i]) * Double(b.data[i]))
        }
        return y
    }

    /// Elementwise activation.
    public static func activation(_ x: Tensor, _ activation: Activation) -> Tensor {
        var y = x
        for i in 0..<x.count { y.data[i] = Float(activate(Double(x.data[i]), activation)) }
        return y
    }

    /// Zero-pads a (B, H, W, C) map at the bottom and right to (B, height, width, C).
    public static func padBottomRight(_ x: Tensor, height: Int, width: Int) throws -> Tensor {
        let spec = try PadSpec(input: x.shape, height: height, width: width)
        var y = try Tensor(zeros: spec.outputShape)
        for b in 0..<spec.batch {
            for yy in 0..<spec.inHeight {
                for xx in 0..<spec.inWidth {
                    for i in 0..<spec.channels {
                        y.data[((b * height + yy) * width + xx) * spec.channels + i] =
                            x.data[((b * spec.inHeight + yy) * spec.inWidth + xx) * spec.channels + i]
                    }
                }
            }
        }
        return y
    }
}
