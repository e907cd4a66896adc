/// The one place where BatchNorm is folded into the convolution before it (a load-time transform).
///
/// BN(conv(x)) = (conv(x) + b - mean) * gamma / sqrt(var + eps) + beta, so with
/// s = gamma / sqrt(var + eps): W' = W * s (per output channel), b' = (b - mean) * s + beta.
public enum BatchNormFolding {
    public static func fold(weight: Tensor, bias: Tensor?, gamma: Tensor, beta: Tensor,
                            runningMean: Tensor, runningVar: Tensor, eps: Double = 1e-5) throws -> (weight: Tensor, bias: Tensor) {
        let op = "batchnorm_fold"
        let outChannels = weight.shape[0]
        for (name, t) in [("gamma", gamma), ("beta", beta), ("running_mean", runningMean), ("running_var", runningVar)] + (bias.map { [("bias", $0)] } ?? []) {
            guard t.shape == [outChannels] else {
                throw MilaError.shapeMismatch(op: op, tensor: name, expected: Shape.describe([outChannels]), actual: t.shape)
            }
        }
        let perChannel = weight.count / outChannels
        var w = weight
        var b = [Float](repeating: 0, count: outChannels)
        for o in 0..<outChannels {
            let s = Double(gamma.data[o]) / (Double(runningVar.data[o]) + eps).squareRoot()
            for i in 0..<perChannel { w.data[o * perChannel + i] = Float(Double(weight.data[o * perChannel + i]) * s) }
            let b0 = Double(bias?.data[o] ?? 0)
            b[o] = Float((b0 - Double(runningMean.data[o])) * s + Double(beta.data[o]))
        }
        return (w, try Tensor(shape: [outChannels], data: b))
    }
}
