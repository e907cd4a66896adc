import Foundation
import MilaCore

/// Runs graphs on an OpenCL device: weights uploaded (packed) once, a memory plan per graph
/// size with one device buffer per slot, the whole forward enqueued and drained once when the
/// results are read back.
public final class CLBackend: Backend {
    public let name = "opencl"
    public let context: CLContext
    private var gemm: [String: GemmWeights] = [:]
    private var conv: [String: Conv3x3Weights] = [:]
    private var norms: [String: LayerNormWeights] = [:]
    private var gateScales: [String: CLBuffer] = [:]
    /// The forget-gated attention kernels: the phased vectorised ones with 32-token chunks
    /// where the head dimension allows (7-16x the fused kernel on the 2-core VM; on GPUs their
    /// local-memory variant), else the fused per-head kernel with 16-token chunks
    /// (mila-kernel-bench --only fgla).
    public func forgetGateKernel(headDim: Int) -> ForgetGateKernel {
        headDim % 16 == 0 ? .phased(chunk: 32) : .chunked(chunk: 16)
    }
    private let weights: [String: Tensor]
    private var plans: [Int: (plan: MemoryPlan, slots: [CLBuffer], fused: [Int: Int])] = [:]
    /// The launches of a planned forward per graph (structure and node names), recorded on a
    /// run and replayed on the next ones (`CLContext.replay`): building the forward on the host
    /// took 9-16 ms at 224 on the 2-vCPU VM, on one of the two cores the kernels run on.
    private var replays: [Int: LaunchRecording] = [:]
    /// `MILA_REPLAY=0` builds every forward on the host (for comparisons).
    private let replayEnabled = ProcessInfo.processInfo.environment["MILA_REPLAY"] != "0"
    /// `MILA_FUSE_NORM=0` runs the LayerNorms after depthwise convs as launches of their own.
    /// The plans and recorded forwards follow it: changing it drops them.
    public var fusesNorms = ProcessInfo.processInfo.environment["MILA_FUSE_NORM"] != "0" {
        didSet { if fusesNorms != oldValue { releasePlans() } }
    }
    /// Bytes of the packed weights on the device.
    public private(set) var weightBytes = 0

    /// How the GEMM and convolution weights are stored on the device (`Precision`).
    public let precision: Precision

    /// A float32 backend.
    public init(context: CLContext, weights: [String: Tensor]) {
        self.context = context
        self.weights = weights
        self.precision = .fp32
    }

    /// Stores the GEMM and 3x3 convolution weights as `precision`; throws the device's
    /// refusal when it cannot (fp16 without cl_khr_fp16).
    public init(context: CLContext, weights: [String: Tensor], precision: Precision) throws {
        try context.require(precision)
        self.context = context
        self.weights = weights
        self.precision = precision
    }

    public func unsupportedNodes(in graph: Graph) -> [String] { [] }

    /// Frees the arenas of every planned graph (they are made again on the next run).
    public func releasePlans() {
        plans = [:]
        replays = [:]
    }

    /// The planned activation memory for `graph` (the arena, alignment included), in bytes.
    public func plannedBytes(_ graph: Graph) -> Int {
        let plan = plans[graph.signature]?.plan ?? MemoryPlan(graph, alsoWrites: normFusions(graph))
        return context.arenaLayout(counts: plan.slotSizes).bytes
    }

    /// The LayerNorms this backend runs in the launch of the depthwise conv they read
    /// (`CLContext.depthwiseConvLayerNorm`): conv node -> LayerNorm node. Both values dense
    /// (neither a slice of a concat), the LayerNorm the conv's first such reader, the map small
    /// enough (`CLContext.fusesDepthwiseLayerNorm`). In the MLLA block these are the two CPEs
    /// and norm1 / norm2: at 224, 36 of MLLA-T's ~300 launches a forward.
    public func normFusions(_ graph: Graph) -> [Int: Int] {
        guard fusesNorms else { return [:] }
        let slices = (try? graph.concatSlices()) ?? [:]
        var fused: [Int: Int] = [:], normed: Set<Int> = []
        for node in graph.nodes {
            guard case .layerNorm = node.op, let source = node.inputs.first, slices[node.id] == nil, slices[source] == nil,
                  !normed.contains(source), case let .conv3x3(_, _, stride, _, true) = graph.nodes[source].op,
                  stride == 1, node.shape.count == 4,
                  context.fusesDepthwiseLayerNorm(channels: node.shape[3], height: node.shape[1], width: node.shape[2]) else { continue }
            fused[source] = node.id
            normed.insert(source)
        }
        return fused
    }

    private func tensor(_ name: String) throws -> Tensor {
        guard let t = weights[name] else { throw MilaError.invalidArgument(op: "opencl", message: "weight \(name) was not loaded") }
        return t
    }

    private func gemmWeights(_ w: String, _ b: String?) throws -> GemmWeights {
        if let cached = gemm[w] { return cached }
        let prepared = try GemmWeights(context: context, weight: try tensor(w), bias: try b.map(tensor), precision: precision, name: w)
        weightBytes += prepared.bytes
        gemm[w] = prepared
        return prepared
    }

    private func convWeights(_ w: String, _ b: String?, depthwise: Bool) throws -> Conv3x3Weights {
        if let cached = conv[w] { return cached }
        let prepared = try Conv3x3Weights(context: context, weight: try tensor(w), bias: try b.map(tensor), depthwise: depthwise,
                                          precision: precision, name: w)
        weightBytes += prepared.bytes
        conv[w] = prepared
        return prepared
    }

    private func normWeights(_ w: String, _ b: String) throws -> LayerNormWeights {
        if let cached = norms[w] { return cached }
        let prepared = try LayerNormWeights(context: context, weight: try tensor(w), bias: try tensor(b))
        weightBytes += prepared.channels * 8
        norms[w] = prepared
        return prepared
    }

    public func run(_ graph: Graph, input: Tensor, keep: Set<Int>) throws -> [Int: Tensor] {
        try checkSupport(graph)
        let key = graph.signature
        if plans[key] == nil {
            let fused = normFusions(graph)
            let plan = MemoryPlan(graph, alsoWrites: fused)
            plans[key] = (plan, try context.arena(counts: plan.slotSizes), fused)
        }
        let (plan, slots, fused) = plans[key]!
        let fusedNorms = Set(fused.values)
        let wanted = keep.union(graph.outputs.values)
        // Values that must survive to the end cannot share slots; keep everything else planned.
        if !keep.isSubset(of: Set(graph.outputs.values)) {
            return try runUnplanned(graph, input: input, wanted: wanted)
        }
        func value(_ id: Int) -> DeviceTensor {
            let buffer = slots[plan.slotOfNode[id]]
            guard let slice = plan.slices[id] else { return DeviceTensor(buffer: buffer, shape: graph.nodes[id].shape) }
            return DeviceTensor(buffer: buffer, shape: graph.nodes[id].shape, offset: slice.offset, pixelStride: slice.channels)
        }
        var replayKey = Hasher()
        replayKey.combine(key)
        for node in graph.nodes { replayKey.combine(node.name) }
        let replayID = replayKey.finalize()
        // The input upload is the per-run host work; inputs come before every launch (they are
        // the graph's sources), else the forward is not replayed.
        let inputs = graph.nodes.filter { if case .input = $0.op { true } else { false } }
        if replayEnabled, let recorded = replays[replayID] {
            for node in inputs {
                context.launchTag = node.id
                try execute(node, input: input, value: value, output: value(node.id))
            }
            try context.replay(recorded)
        } else {
            let recorded = try context.record {
                var launchedBefore = false
                for node in graph.nodes {
                    context.launchTag = node.id
                    if case .input = node.op {
                        if launchedBefore { context.noteUnrecordableWork() }
                        try context.unrecorded { try execute(node, input: input, value: value, output: value(node.id)) }
                    } else if let norm = fused[node.id] {
                        try executeWithNorm(node, graph.nodes[norm], value: value)
                        launchedBefore = true
                    } else if !fusedNorms.contains(node.id) {
                        try execute(node, input: input, value: value, output: value(node.id))
                        launchedBefore = true
                    }
                }
            }
            if replayEnabled && recorded.isComplete { replays[replayID] = recorded }
        }
        context.launchTag = -1
        return try Dictionary(uniqueKeysWithValues: wanted.map { ($0, try context.download(value($0))) })
    }

    /// For per-op checks: every kept value gets a buffer of its own.
    /// A concat's buffer is made when its first producer runs; producers write their slices.
    private func runUnplanned(_ graph: Graph, input: Tensor, wanted: Set<Int>) throws -> [Int: Tensor] {
        let slices = try graph.concatSlices()
        var buffers: [Int: DeviceTensor] = [:]
        var owned: [DeviceTensor] = []
        for node in graph.nodes {
            let out: DeviceTensor
            if let slice = slices[node.id] {
                if buffers[slice.concat] == nil {
                    buffers[slice.concat] = try context.empty(graph.nodes[slice.concat].shape)
                    owned.append(buffers[slice.concat]!)
                }
                out = DeviceTensor(buffer: buffers[slice.concat]!.buffer, shape: node.shape, offset: slice.offset, pixelStride: slice.channels)
            } else if let made = buffers[node.id] {
                out = made
            } else {
                out = try context.empty(node.shape)
                owned.append(out)
            }
            try execute(node, input: input, value: { buffers[$0]! }, output: out)
            buffers[node.id] = out
        }
        let result = try Dictionary(uniqueKeysWithValues: wanted.map { ($0, try context.download(buffers[$0]!)) })
        for b in owned { context.recycle(b) }
        return result
    }

    /// Views (channel slices of a concat buffer) reach only the kernels that take them: outputs
    /// of LayerNorm, resize and dense 3x3 convolutions, the input of adaptive pooling.
    private func checkViews(_ node: Node, value: (Int) -> DeviceTensor, output: DeviceTensor) throws {
        var outputView = false, inputView = false
        switch node.op {
        case .layerNorm, .resize: outputView = true
        case let .conv3x3(_, _, _, _, depthwise): outputView = !depthwise
        case .adaptiveAvgPool: inputView = true
        case .concat: return
        default: break
        }
        if !outputView, !output.isDense {
            throw MilaError.unsupported(op: node.name, message: "\(node.op.kind) cannot write a channel slice of a concat")
        }
        for (i, operand) in node.operands.enumerated() where !(inputView && i == 0) && !value(operand).isDense {
            throw MilaError.unsupported(op: node.name, message: "\(node.op.kind) cannot read the channel slice \(operand)")
        }
    }

    /// A depthwise conv and the LayerNorm of its output (`normFusions`) in one launch.
    private func executeWithNorm(_ node: Node, _ norm: Node, value: (Int) -> DeviceTensor) throws {
        guard case let .conv3x3(w, b, _, activation, _) = node.op, case let .layerNorm(nw, nb) = norm.op else {
            preconditionFailure("normFusions pairs a depthwise conv with a LayerNorm")
        }
        try checkViews(node, value: value, output: value(node.id))
        try checkViews(norm, value: value, output: value(norm.id))
        _ = try context.depthwiseConvLayerNorm(value(node.inputs[0]), try convWeights(w, b, depthwise: true), activation: activation,
                                               residual: node.residual.map(value), norm: try normWeights(nw, nb),
                                               output: value(node.id), normOutput: value(norm.id))
    }

    private func execute(_ node: Node, input: Tensor, value: (Int) -> DeviceTensor, output: DeviceTensor) throws {
        try checkViews(node, value: value, output: output)
        let x = node.inputs.first.map(value)
        let residual = node.residual.map(value), multiply = node.multiply.map(value)
        switch node.op {
        case let .input(shape):
            guard input.shape == shape else {
                throw MilaError.shapeMismatch(op: "input", tensor: "image batch", expected: Shape.describe(shape), actual: input.shape)
            }
            try context.write(input.data, to: output.buffer)
        case let .pad(height, width):
            _ = try context.padBottomRight(x!, height: height, width: width, output: output)
        case let .conv3x3(w, b, stride, activation, depthwise):
            _ = try context.conv3x3(x!, try convWeights(w, b, depthwise: depthwise), stride: stride, activation: activation,
                                    residual: residual, output: output)
        case let .linear(w, b, activation):
            _ = try context.gemm(x!, try gemmWeights(w, b), activation: activation, multiply: multiply, residual: residual, output: output)
        case let .layerNorm(w, b):
            _ = try context.layerNorm(x!, try normWeights(w, b), output: output)
        case let .linearAttention(heads, lw, lb):
            let (qk, v) = (value(node.inputs[0]), value(node.inputs[1]))
            let (batch, h, wd) = (v.shape[0], v.shape[1], v.shape[2])
            let l = h * wd
            _ = try context.linearAttention(
                qk: DeviceTensor(buffer: qk.buffer, shape: [batch, l, qk.shape[3]]), v: DeviceTensor(buffer: v.buffer, shape: [batch, l, v.shape[3]]),
                height: h, width: wd, heads: heads, lepe: try convWeights(lw, lb, depthwise: true),
                output: DeviceTensor(buffer: output.buffer, shape: [batch, l, v.shape[3]]))
        case let .forgetGateAttention(heads, bidirectional, normalize, aLog, lw, lb):
            let (qk, v, gate) = (value(node.inputs[0]), value(node.inputs[1]), value(node.inputs[2]))
            let (batch, h, wd, c) = (v.shape[0], v.shape[1], v.shape[2], v.shape[3])
            let l = h * wd
            if gateScales[aLog] == nil {
                // log a = -exp(A_log) * dt: the per-head factor, computed once in Float64.
                gateScales[aLog] = try context.upload(try tensor(aLog).data.map { Float(-exp(Double($0))) })
            }
            // LePE in fgla_output_vec on CPUs, else a depthwise conv after the attention.
            _ = try context.forgetGateAttention(
                qk: DeviceTensor(buffer: qk.buffer, shape: [batch, l, 2 * c]), v: DeviceTensor(buffer: v.buffer, shape: [batch, l, c]),
                logGate: DeviceTensor(buffer: gate.buffer, shape: [batch, l, heads]), gateScale: gateScales[aLog]!, heads: heads,
                bidirectional: bidirectional, normalize: normalize, kernel: forgetGateKernel(headDim: c / heads),
                lepe: ForgetGateLePE(weights: try convWeights(lw, lb, depthwise: true), height: h, width: wd),
                output: DeviceTensor(buffer: output.buffer, shape: [batch, l, c]))
        case .add:
            _ = try context.elementwise(value(node.inputs[0]), value(node.inputs[1]), .add, output: output)
        case .multiply:
            _ = try context.elementwise(value(node.inputs[0]), value(node.inputs[1]), .multiply, output: output)
        case let .activation(a):
            _ = try context.activation(x!, a, output: output)
        case let .resize(height, width):
            _ = try context.resizeBilinear(x!, height: height, width: width, output: output)
        case let .adaptiveAvgPool(size):
            _ = try context.adaptiveAvgPool(x!, size: size, output: output)
        case .concat:
            break  // every producer has written its slice of this buffer
        case let .resizeArgmax(midHeight, midWidth, height, width):
            _ = try context.resizeArgmax(x!, midHeight: midHeight, midWidth: midWidth, height: height, width: width, output: output)
        case .meanTokens:
            let s = x!.shape
            _ = try context.meanTokens(DeviceTensor(buffer: x!.buffer, shape: [s[0], s[1] * s[2], s[3]]), output: output)
        }
    }
}
