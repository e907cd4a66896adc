import Foundation
import MilaCore

/// Runs a graph with the Float64 reference ops: the engine's ground truth.
public final class ReferenceBackend: Backend {
    public let name = "reference"
    private(set) var weights: [String: Tensor]
    /// With `.fp16`, the weights an fp16 device stores as half floats
    /// (`Precision.halfWeightNames`) are rounded to half before use: the exact reference of an
    /// fp16 run, whose only difference from fp32 is that rounding.
    public let precision: Precision
    private var roundedNames: Set<String> = []

    public init(weights: [String: Tensor], precision: Precision = .fp32) {
        self.weights = weights
        self.precision = precision
    }

    public func unsupportedNodes(in graph: Graph) -> [String] { [] }

    func weight(_ name: String) throws -> Tensor {
        guard let w = weights[name] else { throw MilaError.invalidArgument(op: "reference", message: "weight \(name) was not loaded") }
        return w
    }

    public func run(_ graph: Graph, input: Tensor, keep: Set<Int>) throws -> [Int: Tensor] {
        try checkSupport(graph)
        if precision == .fp16 {
            for name in Precision.halfWeightNames(in: graph).subtracting(roundedNames) {
                guard let t = weights[name] else { continue }
                try Precision.checkFitsHalf(t, name: name)
                weights[name] = try Tensor(shape: t.shape, data: Precision.roundedToHalf(t.data))
                roundedNames.insert(name)
            }
        }
        var values: [Int: Tensor] = [:]
        let lastUse = graph.lastUses()
        let wanted = keep.union(graph.outputs.values)
        for node in graph.nodes {
            let x = node.inputs.first.map { values[$0]! }
            let residual = node.residual.map { values[$0]! }, multiply = node.multiply.map { values[$0]! }
            let y: Tensor
            switch node.op {
            case let .input(shape):
                guard input.shape == shape else {
                    throw MilaError.shapeMismatch(op: "input", tensor: "image batch", expected: Shape.describe(shape), actual: input.shape)
                }
                y = input
            case let .pad(height, width):
                y = try Reference.padBottomRight(x!, height: height, width: width)
            case let .conv3x3(w, b, stride, activation, depthwise):
                y = try Reference.conv3x3(x!, weight: try weight(w), bias: try b.map(weight), stride: stride, depthwise: depthwise,
                                          activation: activation, residual: residual)
            case let .linear(w, b, activation):
                y = try Reference.gemm(x!, weight: try weight(w), bias: try b.map(weight), activation: activation,
                                       residual: residual, multiply: multiply)
            case let .layerNorm(w, b):
                y = try Reference.layerNorm(x!, weight: try weight(w), bias: try weight(b))
            case let .linearAttention(heads, lw, lb):
                let (qk, v) = (values[node.inputs[0]]!, values[node.inputs[1]]!)
                let (batch, h, wd) = (v.shape[0], v.shape[1], v.shape[2])
                let out = try Reference.linearAttention(
                    qk: try Tensor(shape: [batch, h * wd, qk.shape[3]], data: qk.data), v: try Tensor(shape: [batch, h * wd, v.shape[3]], data: v.data),
                    height: h, width: wd, heads: heads, lepeWeight: try weight(lw), lepeBias: try weight(lb))
                y = try Tensor(shape: node.shape, data: out.data)
            case let .forgetGateAttention(heads, bidirectional, normalize, aLog, lw, lb):
                let (qk, v, gate) = (values[node.inputs[0]]!, values[node.inputs[1]]!, values[node.inputs[2]]!)
                let (batch, h, wd, c) = (v.shape[0], v.shape[1], v.shape[2], v.shape[3])
                let scale = try weight(aLog).data.map { -exp(Double($0)) }
                var logGate = try Tensor(shape: [batch, h * wd, heads], data: gate.data)
                for i in 0..<logGate.count { logGate.data[i] = Float(scale[i % heads] * Double(gate.data[i])) }
                let attention = try Reference.forgetGateAttention(
                    qk: try Tensor(shape: [batch, h * wd, 2 * c], data: qk.data), v: try Tensor(shape: [batch, h * wd, c], data: v.data),
                    logGate: logGate, heads: heads, bidirectional: bidirectional, normalize: normalize)
                y = try Reference.conv3x3(v, weight: try weight(lw), bias: try weight(lb), stride: 1, depthwise: true,
                                          residual: try Tensor(shape: node.shape, data: attention.data))
            case .add:
                y = try Reference.elementwise(values[node.inputs[0]]!, values[node.inputs[1]]!, .add)
            case .multiply:
                y = try Reference.elementwise(values[node.inputs[0]]!, values[node.inputs[1]]!, .multiply)
            case let .activation(a):
                y = Reference.activation(x!, a)
            case let .resize(height, width):
                y = try Reference.resizeBilinear(x!, height: height, width: width)
            case let .adaptiveAvgPool(size):
                y = try Reference.adaptiveAvgPool(x!, size: size)
            case .concat:
                y = try Reference.concat(node.inputs.map { values[$0]! })
            case let .resizeArgmax(midHeight, midWidth, height, width):
                y = try Reference.resizeArgmax(x!, midHeight: midHeight, midWidth: midWidth, height: height, width: width)
            case .meanTokens:
                let s = x!.shape
                y = try Reference.meanTokens(try Tensor(shape: [s[0], s[1] * s[2], s[3]], data: x!.data))
            }
            values[node.id] = y
            // Drop what no later node reads (the reference is memory-hungry at large sizes).
            for operand in node.operands where lastUse[operand] == node.id && !wanted.contains(operand) { values[operand] = nil }
        }
        return values.filter { wanted.contains($0.key) }
    }
}
