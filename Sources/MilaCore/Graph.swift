/// The model as a list of typed ops on channels-last tensors, built for one (batch, H, W).
///
/// Every value is a (B, H, W, C) map (tokens are the same memory read as (B, L, C)), except
/// the pooled features (B, C) and the logits (B, classes). Nodes are in execution order;
/// `inputs[0]` is the main operand. Weights are named by their checkpoint path (derived
/// tensors such as BatchNorm-folded convolutions get a `#folded` suffix).
public struct Graph: Sendable {
    public internal(set) var nodes: [Node] = []
    /// Values the caller wants back (logits, stage outputs), by role.
    public internal(set) var outputs: [String: Int] = [:]
    public let batch: Int
    public let height: Int
    public let width: Int
    /// Shapes of the weights the ops name (to check them, and to rebuild the graph when fusing).
    public let weightShapes: [String: [Int]]

    public init(batch: Int, height: Int, width: Int, weightShapes: [String: [Int]] = [:]) {
        (self.batch, self.height, self.width, self.weightShapes) = (batch, height, width, weightShapes)
    }

    /// Appends a node after checking its operand shapes with the op's spec; returns its id.
    @discardableResult
    public mutating func add(_ name: String, _ op: Op, inputs: [Int], residual: Int? = nil, multiply: Int? = nil) throws -> Int {
        if case .concat = op {
            let taken = Set(nodes.filter { if case .concat = $0.op { true } else { false } }.flatMap(\.inputs))
            if let twice = inputs.first(where: { taken.contains($0) || $0 == 0 }) {
                throw MilaError.invalidArgument(op: name, message: "\(nodes[twice].name) is already concatenated (or is the input)")
            }
        }
        let shape = try Self.outputShape(of: op, name: name, inputs: inputs.map { nodes[$0].shape },
                                         residual: residual.map { nodes[$0].shape }, multiply: multiply.map { nodes[$0].shape },
                                         weightShapes: weightShapes)
        nodes.append(Node(id: nodes.count, name: name, op: op, inputs: inputs, residual: residual, multiply: multiply, shape: shape))
        return nodes.count - 1
    }

    public mutating func markOutput(_ role: String, _ id: Int) { outputs[role] = id }

    /// Where each concatenated value lives: producer id -> (concat node id, channel offset).
    /// A backend that does not copy lets each producer write that slice of the concat's buffer.
    public func concatSlices() throws -> [Int: ChannelSlice] {
        var slices: [Int: ChannelSlice] = [:]
        for node in nodes {
            guard case .concat = node.op else { continue }
            let offsets = try ConcatSpec(inputs: node.inputs.map { nodes[$0].shape }).offsets
            for (producer, offset) in zip(node.inputs, offsets) {
                guard slices[producer] == nil else {
                    throw MilaError.invalidArgument(op: node.name, message: "value \(nodes[producer].name) is concatenated twice")
                }
                slices[producer] = ChannelSlice(concat: node.id, offset: offset, channels: node.shape[3])
            }
        }
        return slices
    }

    /// Identifies the graph's structure within this process (for caches of plans per graph).
    public var signature: Int {
        var hasher = Hasher()
        hasher.combine(batch); hasher.combine(height); hasher.combine(width)
        for node in nodes {
            hasher.combine(node.op.kind); hasher.combine(node.shape); hasher.combine(node.inputs)
            hasher.combine(node.residual); hasher.combine(node.multiply)
        }
        return hasher.finalize()
    }

    /// The last node that reads each value (for liveness); outputs live to the end.
    public func lastUses() -> [Int] {
        var last = Array(0..<nodes.count)
        for node in nodes {
            for operand in node.operands { last[operand] = max(last[operand], node.id) }
        }
        for id in outputs.values { last[id] = nodes.count }
        return last
    }

    static func outputShape(of op: Op, name: String, inputs: [[Int]], residual: [Int]?, multiply: [Int]?,
                            weightShapes: [String: [Int]]) throws -> [Int] {
        func weight(_ key: String) throws -> [Int] {
            guard let shape = weightShapes[key] else {
                throw MilaError.invalidArgument(op: name, message: "no shape for weight \(key)")
            }
            return shape
        }
        switch op {
        case let .input(shape):
            return shape
        case let .pad(height, width):
            return try PadSpec(input: inputs[0], height: height, width: width).outputShape
        case let .conv3x3(w, b, stride, activation, depthwise):
            return try Conv3x3Spec(input: inputs[0], weight: try weight(w), bias: try b.map { try weight($0) }, residual: residual,
                                   stride: stride, depthwise: depthwise, activation: activation).outputShape
        case let .linear(w, b, _):
            return try GemmSpec(input: inputs[0], weight: try weight(w), bias: try b.map { try weight($0) }, residual: residual,
                                multiply: multiply).outputShape
        case let .layerNorm(w, b):
            _ = try LayerNormSpec(input: inputs[0], weight: try weight(w), bias: try weight(b))
            return inputs[0]
        case let .linearAttention(heads, lepeWeight, lepeBias):
            let (qk, v) = (inputs[0], inputs[1])
            guard v.count == 4, qk.count == 4 else {
                throw MilaError.shapeMismatch(op: name, tensor: "v", expected: "(B, H, W, C)", actual: v)
            }
            let spec = try LinearAttentionSpec(qk: [qk[0], qk[1] * qk[2], qk[3]], v: [v[0], v[1] * v[2], v[3]],
                                               height: v[1], width: v[2], heads: heads,
                                               lepeWeight: try weight(lepeWeight), lepeBias: try weight(lepeBias))
            return [spec.batch, spec.height, spec.width, spec.channels]
        case let .forgetGateAttention(heads, _, _, aLog, lepeWeight, lepeBias):
            let (qk, v, gate) = (inputs[0], inputs[1], inputs[2])
            guard v.count == 4, qk.count == 4, gate.count == 4 else {
                throw MilaError.shapeMismatch(op: name, tensor: "v", expected: "(B, H, W, C)", actual: v)
            }
            let l = v[1] * v[2]
            let spec = try ForgetGateAttentionSpec(qk: [qk[0], qk[1] * qk[2], qk[3]], v: [v[0], l, v[3]],
                                                   logGate: [gate[0], gate[1] * gate[2], gate[3]], heads: heads)
            let expectLepe = [spec.channels, 1, 3, 3]
            guard try weight(aLog) == [heads], try weight(lepeWeight) == expectLepe, try weight(lepeBias) == [spec.channels] else {
                throw MilaError.shapeMismatch(op: name, tensor: "A_log / lepe", expected: "(\(heads)), \(Shape.describe(expectLepe)), (\(spec.channels))",
                                              actual: try weight(aLog))
            }
            return v
        case .add, .multiply:
            guard inputs[0] == inputs[1] else {
                throw MilaError.shapeMismatch(op: name, tensor: "second operand", expected: Shape.describe(inputs[0]), actual: inputs[1])
            }
            return inputs[0]
        case .activation:
            return inputs[0]
        case let .resize(height, width):
            return try ResizeSpec(input: inputs[0], height: height, width: width).outputShape
        case let .adaptiveAvgPool(size):
            return try AdaptivePoolSpec(input: inputs[0], size: size).outputShape
        case .concat:
            return try ConcatSpec(inputs: inputs).outputShape
        case let .resizeArgmax(midHeight, midWidth, height, width):
            return try ResizeArgmaxSpec(input: inputs[0], midHeight: midHeight, midWidth: midWidth, height: height, width: width).outputShape
        case .meanTokens:
            guard inputs[0].count == 4 else {
                throw MilaError.shapeMismatch(op: name, tensor: "input", expected: "(B, H, W, C)", actual: inputs[0])
            }
            return [inputs[0][0], inputs[0][3]]
        }
    }
}

/// A value stored as channels [offset, offset + C) of a concat node's (B, H, W, channels) buffer.
public struct ChannelSlice: Equatable, Sendable {
    public let concat: Int
    public let offset: Int
    /// The concat's channel count: the pixel stride of the slice.
    public let channels: Int
}

public struct Node: Sendable {
    public let id: Int
    /// The weight scope it comes from, e.g. `layers.2.blocks.3.attn`.
    public let name: String
    public let op: Op
    public let inputs: [Int]
    public let residual: Int?
    public let multiply: Int?
    public let shape: [Int]

    /// Every value the node reads.
    public var operands: [Int] { inputs + [residual, multiply].compactMap { $0 } }
}

/// The ops of the graph, with the names of the weights they use.
public enum Op: Sendable {
    /// The image batch (B, H, W, 3), normalised.
    case input(shape: [Int])
    /// Zero padding at the bottom and right.
    case pad(height: Int, width: Int)
    /// 3x3 convolution, pad 1; fused bias, activation and residual (`Node.residual`).
    case conv3x3(weight: String, bias: String?, stride: Int, activation: Activation, depthwise: Bool)
    /// act(x W^T + b) [* multiply] [+ residual] over the last dimension (linear layers, 1x1 convs).
    case linear(weight: String, bias: String?, activation: Activation)
    case layerNorm(weight: String, bias: String)
    /// The released MLLA attention with LePE: inputs (qk, v) as (B, H, W, 2C) and (B, H, W, C).
    case linearAttention(heads: Int, lepeWeight: String, lepeBias: String)
    /// Forget-gated attention with LePE: inputs (qk, v, gate) as (B, H, W, 2C), (B, H, W, C),
    /// (B, H, W, heads) with gate = softplus(...) >= 0; log a = -exp(A_log[h]) * gate.
    case forgetGateAttention(heads: Int, bidirectional: Bool, normalize: Bool, aLog: String, lepeWeight: String, lepeBias: String)
    /// (B, H, W, C) -> (B, C).
    case meanTokens
    /// Bilinear resize (align_corners=False) to an explicit size (`ResizeSpec`).
    case resize(height: Int, width: Int)
    /// Adaptive average pooling to (size, size) with PyTorch's bins (`AdaptivePoolSpec`).
    case adaptiveAvgPool(size: Int)
    /// Channel concatenation of the inputs in order (`ConcatSpec`).
    case concat
    /// Two bilinear resizes of the logits and the argmax over classes, fused (`ResizeArgmaxSpec`).
    case resizeArgmax(midHeight: Int, midWidth: Int, height: Int, width: Int)
    /// Elementwise inputs[0] + inputs[1], inputs[0] * inputs[1], act(inputs[0]): what the
    /// scheduler folds into the producer's epilogue where the kernels allow it.
    case add
    case multiply
    case activation(Activation)

    public var kind: String {
        switch self {
        case .input: "input"
        case .pad: "pad"
        case let .conv3x3(_, _, _, _, depthwise): depthwise ? "dwconv3x3" : "conv3x3"
        case .linear: "linear"
        case .layerNorm: "layernorm"
        case .linearAttention: "linear_attention"
        case .forgetGateAttention: "forget_gate_attention"
        case .meanTokens: "mean_tokens"
        case .resize: "resize_bilinear"
        case .adaptiveAvgPool: "adaptive_avg_pool"
        case .concat: "concat"
        case .resizeArgmax: "resize_argmax"
        case .add: "add"
        case .multiply: "multiply"
        case let .activation(a): "\(a)"
        }
    }
}
