import MilaCore
import MilaWeights

/// Binds a checkpoint's tensors to the model by their names (../shared/spec/mlla-architecture.md)
/// and prepares them for the graph: BatchNorm folded into the conv before it, 1x1 conv weights
/// reshaped to (out, in). Fails on a missing tensor, a wrong shape, or a tensor nothing uses,
/// naming the full tensor name and both shapes.
public struct WeightBinding: LayoutVisitor {
    /// Tensors every checkpoint may carry that inference does not need.
    static func isIgnorable(_ name: String, config: ModelConfig) -> Bool {
        name.hasSuffix(".num_batches_tracked") || name.hasSuffix("attn.rope.rotations")
            || (config.segmentation != nil && name.hasPrefix("auxiliary_head."))  // training-only FCN head
    }

    let file: any TensorSource
    let loadValues: Bool
    var used: Set<String> = []
    /// Prepared tensors by graph name.
    public private(set) var prepared: [String: Tensor] = [:]

    /// Checks names and shapes only (no tensor data is read).
    public static func check(file: any TensorSource, config: ModelConfig) throws {
        var binding = WeightBinding(file: file, loadValues: false)
        try binding.bindAll(config)
    }

    /// Reads, checks and prepares every tensor the model uses.
    public static func prepare(file: any TensorSource, config: ModelConfig) throws -> [String: Tensor] {
        var binding = WeightBinding(file: file, loadValues: true)
        try binding.bindAll(config)
        return binding.prepared
    }

    mutating func bindAll(_ config: ModelConfig) throws {
        try ModelLayout.visit(config, &self)
        let shapes = file.shapes
        let unused = shapes.keys.filter { !used.contains($0) && !Self.isIgnorable($0, config: config) }.sorted()
        if !unused.isEmpty {
            let shown = unused.prefix(5).map { "\($0) \(Shape.describe(shapes[$0]!))" }.joined(separator: ", ")
            throw ModelError.weights("\(file.path): \(unused.count) tensor(s) not used by \(config.name): \(shown)\(unused.count > 5 ? ", ..." : "")")
        }
    }

    /// Marks `name` used after checking its shape; returns its values when loading.
    mutating func take(_ name: String, _ shape: [Int]) throws -> Tensor? {
        guard let stored = file.shapes[name] else {
            throw ModelError.weights("\(file.path): missing tensor \(name), expected shape \(Shape.describe(shape))")
        }
        guard stored == shape else {
            throw ModelError.weights("\(file.path): tensor \(name) has shape \(Shape.describe(stored)), expected \(Shape.describe(shape))")
        }
        guard file.isFloatingPoint(name) else {
            throw ModelError.weights("\(file.path): tensor \(name) is not floating-point")
        }
        used.insert(name)
        return loadValues ? try file.tensor(name) : nil
    }

    mutating func linear(_ scope: String, out: Int, in k: Int, kernel1x1: Bool) throws {
        let weight = try take("\(scope).weight", kernel1x1 ? [out, k, 1, 1] : [out, k])
        let bias = try take("\(scope).bias", [out])
        if let weight, let bias {
            prepared["\(scope).weight"] = try Tensor(shape: [out, k], data: weight.data)
            prepared["\(scope).bias"] = bias
        }
    }

    mutating func depthwise(_ scope: String, channels: Int) throws {
        let weight = try take("\(scope).weight", [channels, 1, 3, 3])
        let bias = try take("\(scope).bias", [channels])
        if let weight, let bias {
            prepared["\(scope).weight"] = weight
            prepared["\(scope).bias"] = bias
        }
    }

    mutating func vector(_ name: String, count: Int) throws {
        if let t = try take(name, [count]) { prepared[name] = t }
    }

    mutating func norm(_ scope: String, channels: Int) throws {
        let weight = try take("\(scope).weight", [channels])
        let bias = try take("\(scope).bias", [channels])
        if let weight, let bias {
            prepared["\(scope).weight"] = weight
            prepared["\(scope).bias"] = bias
        }
    }

    /// A ConvLayer with BatchNorm: `<scope>.conv.weight` [+ `.conv.bias`], `<scope>.<normName>.*`,
    /// folded into `<scope>#folded.weight` / `.bias` (1x1 convs as (out, in)).
    mutating func convBN(_ scope: String, out: Int, in k: Int, kernel: Int, convBias: Bool, normName: String) throws {
        let weight = try take("\(scope).conv.weight", [out, k, kernel, kernel])
        let bias = convBias ? try take("\(scope).conv.bias", [out]) : nil
        let n = "\(scope).\(normName)"
        let gamma = try take("\(n).weight", [out]), beta = try take("\(n).bias", [out])
        let mean = try take("\(n).running_mean", [out]), variance = try take("\(n).running_var", [out])
        guard let weight, let gamma, let beta, let mean, let variance else { return }
        let folded = try BatchNormFolding.fold(weight: weight, bias: bias, gamma: gamma, beta: beta, runningMean: mean, runningVar: variance)
        prepared["\(scope)#folded.weight"] = kernel == 1 ? try Tensor(shape: [out, k], data: folded.weight.data) : folded.weight
        prepared["\(scope)#folded.bias"] = folded.bias
    }
}
