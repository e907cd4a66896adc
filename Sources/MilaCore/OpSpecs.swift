// Shape contracts of the op layer, checked the same way by every backend before any work runs.
//
// Legend: B batch, H/W height/width, L = H*W tokens, C channels, M rows (B*L), K in-features,
// N out-features, nh heads, d = C / nh head dimension.

private func expect(_ op: String, _ name: String, _ actual: [Int], _ expected: [Int]) throws {
    guard actual == expected else {
        throw MilaError.shapeMismatch(op: op, tensor: name, expected: Shape.describe(expected), actual: actual)
    }
}

/// y = act(x W^T + b) [* multiply] [+ residual]: linear layers and 1x1 convolutions.
/// x (M, K) or (..., K); weight (N, K) as stored in checkpoints; bias (N); residual and
/// multiply have the output's shape (..., N).
public struct GemmSpec: Equatable, Sendable {
    public let rows: Int          // M
    public let inFeatures: Int    // K
    public let outFeatures: Int   // N
    public let outputShape: [Int]

    public init(input: [Int], weight: [Int], bias: [Int]?, residual: [Int]?, multiply: [Int]?) throws {
        let op = "gemm"
        try Shape.validate(input, name: "input", op: op)
        try Shape.validate(weight, name: "weight", op: op)
        guard weight.count == 2 else {
            throw MilaError.shapeMismatch(op: op, tensor: "weight", expected: "(out, in)", actual: weight)
        }
        let k = input.last!
        guard weight[1] == k else {
            throw MilaError.shapeMismatch(op: op, tensor: "weight", expected: Shape.describe([weight[0], k]), actual: weight)
        }
        rows = Shape.count(input) / k
        inFeatures = k
        outFeatures = weight[0]
        outputShape = Array(input.dropLast()) + [weight[0]]
        if let bias { try expect(op, "bias", bias, [outFeatures]) }
        if let residual { try expect(op, "residual", residual, outputShape) }
        if let multiply { try expect(op, "multiply", multiply, outputShape) }
    }

    public var flops: Double { 2 * Double(rows) * Double(inFeatures) * Double(outFeatures) }
}

/// A 3x3 convolution with pad 1 on a channels-last map, dense or depthwise.
/// Dense: input (B, H, W, Cin), weight (Cout, Cin, 3, 3), bias (Cout).
/// Depthwise: input (B, H, W, C), weight (C, 1, 3, 3), bias (C).
/// Output (B, Ho, Wo, Cout) with Ho = floor((H + 2 - 3) / stride) + 1; residual has that shape.
public struct Conv3x3Spec: Equatable, Sendable {
    public let batch: Int
    public let height: Int
    public let width: Int
    public let inChannels: Int
    public let outChannels: Int
    public let stride: Int
    public let depthwise: Bool
    public var outHeight: Int { Shape.conv3x3Output(height, stride: stride) }
    public var outWidth: Int { Shape.conv3x3Output(width, stride: stride) }
    public var outputShape: [Int] { [batch, outHeight, outWidth, outChannels] }

    public init(input: [Int], weight: [Int], bias: [Int]?, residual: [Int]?, stride: Int, depthwise: Bool,
                activation: Activation) throws {
        let op = depthwise ? "dwconv3x3" : "conv3x3"
        try Shape.validate(input, name: "input", op: op)
        try Shape.validate(weight, name: "weight", op: op)
        guard input.count == 4 else {
            throw MilaError.shapeMismatch(op: op, tensor: "input", expected: "(B, H, W, C)", actual: input)
        }
        guard stride == 1 || stride == 2 else {
            throw MilaError.invalidArgument(op: op, message: "stride \(stride); only 1 and 2 are supported")
        }
        guard activation != .gelu else {
            throw MilaError.invalidArgument(op: op, message: "activation gelu is not fused into convolutions")
        }
        (batch, height, width, inChannels) = (input[0], input[1], input[2], input[3])
        self.stride = stride
        self.depthwise = depthwise
        if depthwise {
            outChannels = inChannels
            try expect(op, "weight", weight, [inChannels, 1, 3, 3])
        } else {
            guard weight.count == 4 else {
                throw MilaError.shapeMismatch(op: op, tensor: "weight", expected: "(Cout, \(inChannels), 3, 3)", actual: weight)
            }
            outChannels = weight[0]
            try expect(op, "weight", weight, [outChannels, inChannels, 3, 3])
        }
        if let bias { try expect(op, "bias", bias, [outChannels]) }
        if let residual { try expect(op, "residual", residual, outputShape) }
    }

    public var flops: Double {
        let perOutput = depthwise ? 18.0 : 18.0 * Double(inChannels)
        return Double(batch * outHeight * outWidth * outChannels) * perOutput
    }
}

/// LayerNorm over the last dimension C: input (..., C), weight and bias (C).
public struct LayerNormSpec: Equatable, Sendable {
    public let rows: Int
    public let channels: Int

    public init(input: [Int], weight: [Int], bias: [Int]) throws {
        let op = "layernorm"
        try Shape.validate(input, name: "input", op: op)
        channels = input.last!
        rows = Shape.count(input) / channels
        try expect(op, "weight", weight, [channels])
        try expect(op, "bias", bias, [channels])
    }
}

/// The released MLLA linear attention (see ../shared/spec/mlla-architecture.md), per head:
/// q, k = ELU(qk) + 1 split in halves; qr, kr = RoPE(q), RoPE(k) for the (H, W) grid;
/// z_i = 1 / (q_i . mean(k) + 1e-6); kv = kr^T v / L; out_i = (qr_i kv) z_i + dwconv3x3(v; lepe).
/// qk (B, L, 2C), v (B, L, C), lepe weight (C, 1, 3, 3) and bias (C); output (B, L, C).
public struct LinearAttentionSpec: Equatable, Sendable {
    public let batch: Int
    public let height: Int
    public let width: Int
    public let channels: Int
    public let heads: Int
    public var tokens: Int { height * width }
    public var headDim: Int { channels / heads }
    public var outputShape: [Int] { [batch, tokens, channels] }

    public init(qk: [Int], v: [Int], height: Int, width: Int, heads: Int,
                lepeWeight: [Int], lepeBias: [Int]) throws {
        let op = "linear_attention"
        try Shape.validate(v, name: "v", op: op)
        try Shape.validate(qk, name: "qk", op: op)
        guard height >= 1, width >= 1, heads >= 1 else {
            throw MilaError.invalidArgument(op: op, message: "height \(height), width \(width) and heads \(heads) must be >= 1")
        }
        guard v.count == 3 else {
            throw MilaError.shapeMismatch(op: op, tensor: "v", expected: "(B, \(height * width), C)", actual: v)
        }
        let c = v[2]
        guard c % 4 == 0 else {
            throw MilaError.invalidArgument(op: op, message: "channels \(c) must be a multiple of 4 for 2-D RoPE")
        }
        guard c % heads == 0 else {
            throw MilaError.invalidArgument(op: op, message: "channels \(c) are not divisible by \(heads) heads")
        }
        try expect(op, "v", v, [v[0], height * width, c])
        try expect(op, "qk", qk, [v[0], height * width, 2 * c])
        try expect(op, "lepe weight", lepeWeight, [c, 1, 3, 3])
        try expect(op, "lepe bias", lepeBias, [c])
        (batch, self.height, self.width, channels, self.heads) = (v[0], height, width, c, heads)
    }

    /// Multiply-adds counted as 2 FLOPs: kr^T v and qr kv (2 L C d each), the normaliser, LePE.
    public var flops: Double {
        let l = Double(batch * tokens), c = Double(channels), d = Double(headDim)
        return 4 * l * c * d + 4 * l * c + 18 * l * c
    }
}

/// RoPE angles for a 2-D grid of C channels: k_max = C / 4, theta_m = 10000^(-m / k_max);
/// pair p < k_max turns by y * theta_p, pair k_max + m by x * theta_m.
public enum RoPE {
    public static func theta(_ m: Int, channels: Int) -> Double {
        let kMax = Double(channels / 4)
        return 1 / pow10000(Double(m) / kMax)
    }

    private static func pow10000(_ e: Double) -> Double {
        // 10000^e = exp(e * ln 10000), in Double.
        exp(e * 9.210340371976184)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The elementwise binary ops that cannot be fused into a producer.
public enum ElementwiseOp: Int32, Sendable, CustomStringConvertible {
    case add = 0
    case multiply = 1
    public var description: String { self == .add ? "add" : "multiply" }
}

/// Zero padding of a (B, H, W, C) map at the bottom and right (odd maps before a downsample,
/// images to a multiple of 4): output (B, height, width, C) with height >= H, width >= W.
public struct PadSpec: Equatable, Sendable {
    public let batch: Int, inHeight: Int, inWidth: Int, channels: Int, height: Int, width: Int
    public var outputShape: [Int] { [batch, height, width, channels] }

    public init(input: [Int], height: Int, width: Int) throws {
        try Shape.validate(input, name: "input", op: "pad")
        guard input.count == 4 else {
            throw MilaError.shapeMismatch(op: "pad", tensor: "input", expected: "(B, H, W, C)", actual: input)
        }
        guard height >= input[1], width >= input[2] else {
            throw MilaError.invalidArgument(op: "pad", message: "target \(height)x\(width) is smaller than the input \(input[1])x\(input[2])")
        }
        (batch, inHeight, inWidth, channels) = (input[0], input[1], input[2], input[3])
        (self.height, self.width) = (height, width)
    }
}

/// Forget-gated linear attention (../shared/spec/mila-fg.md) without LePE: qk (B, L, 2C) before
/// the feature map, v (B, L, C), logGate (B, L, heads) holding log a <= 0; output (B, L, C).
public struct ForgetGateAttentionSpec: Equatable, Sendable {
    public let batch: Int
    public let tokens: Int
    public let channels: Int
    public let heads: Int
    public var headDim: Int { channels / heads }

    public init(qk: [Int], v: [Int], logGate: [Int], heads: Int) throws {
        let op = "forget_gate_attention"
        try Shape.validate(v, name: "v", op: op)
        guard v.count == 3 else { throw MilaError.shapeMismatch(op: op, tensor: "v", expected: "(B, L, C)", actual: v) }
        guard heads >= 1, v[2] % heads == 0 else {
            throw MilaError.invalidArgument(op: op, message: "channels \(v[2]) are not divisible by \(heads) heads")
        }
        guard qk == [v[0], v[1], 2 * v[2]] else {
            throw MilaError.shapeMismatch(op: op, tensor: "qk", expected: Shape.describe([v[0], v[1], 2 * v[2]]), actual: qk)
        }
        guard logGate == [v[0], v[1], heads] else {
            throw MilaError.shapeMismatch(op: op, tensor: "log gate", expected: Shape.describe([v[0], v[1], heads]), actual: logGate)
        }
        (batch, tokens, channels, self.heads) = (v[0], v[1], v[2], heads)
    }

    /// Multiply-adds counted as 2 FLOPs of the recurrent form: state update and readout of a
    /// d x (d + 1) state per token and direction.
    public func flops(bidirectional: Bool) -> Double {
        let perToken = 4.0 * Double(headDim) * Double(headDim + 1)
        return Double(batch * tokens * heads) * perToken * (bidirectional ? 2 : 1)
    }
}
