import Foundation
import MilaCore
import MilaWeights

/// Checkpoint-shaped random weights for a configuration (names and shapes as a released
/// checkpoint has them, BatchNorm statistics included), for `check` and `bench` without a
/// checkpoint. Scales keep activations O(1) through the network: weights uniform with variance
/// 1 / fan-in, small biases, norm scales near 1.
public struct RandomWeights: LayoutVisitor {
    var tensors: [String: Tensor] = [:]
    var seed: UInt64

    public static func make(_ config: ModelConfig, seed: UInt64 = 0) throws -> InMemoryTensors {
        var maker = RandomWeights(seed: seed)
        try ModelLayout.visit(config, &maker)
        return InMemoryTensors(maker.tensors, path: "<random \(config.name) weights, seed \(seed)>")
    }

    mutating func uniform(_ shape: [Int], _ scale: Float, around center: Float = 0) throws -> Tensor {
        seed &+= 1
        var t = try Tensor(randomUniform: shape, in: -scale...scale, seed: seed)
        if center != 0 { for i in 0..<t.count { t.data[i] += center } }
        return t
    }

    mutating func weight(_ name: String, _ shape: [Int]) throws {
        tensors[name] = try uniform(shape, (3 / Float(shape.dropFirst().reduce(1, *))).squareRoot())
    }

    mutating func bias(_ name: String, _ n: Int) throws { tensors[name] = try uniform([n], 0.02) }

    mutating func linear(_ scope: String, out: Int, in k: Int, kernel1x1: Bool) throws {
        try weight("\(scope).weight", kernel1x1 ? [out, k, 1, 1] : [out, k])
        try bias("\(scope).bias", out)
    }

    mutating func depthwise(_ scope: String, channels: Int) throws {
        try weight("\(scope).weight", [channels, 1, 3, 3])
        try bias("\(scope).bias", channels)
    }

    /// A_log as Mamba initialises it: log of a value in [1, 16].
    mutating func vector(_ name: String, count: Int) throws {
        let u = try uniform([count], 0.5, around: 0.5)  // [0, 1]
        tensors[name] = try Tensor(shape: [count], data: u.data.map { Float(log(1 + 15 * Double($0))) })
    }

    mutating func norm(_ scope: String, channels: Int) throws {
        tensors["\(scope).weight"] = try uniform([channels], 0.1, around: 1)
        try bias("\(scope).bias", channels)
    }

    mutating func convBN(_ scope: String, out: Int, in k: Int, kernel: Int, convBias: Bool, normName: String) throws {
        try weight("\(scope).conv.weight", [out, k, kernel, kernel])
        if convBias { try bias("\(scope).conv.bias", out) }
        try norm("\(scope).\(normName)", channels: out)
        tensors["\(scope).\(normName).running_mean"] = try uniform([out], 0.1)
        tensors["\(scope).\(normName).running_var"] = try uniform([out], 0.25, around: 1)
    }
}
