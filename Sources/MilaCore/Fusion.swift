/// The scheduler's fusion pass: folds elementwise nodes into the epilogue of the linear layer or
/// 3x3 convolution that produces their input, where the kernels allow it (epilogue order:
/// activation, then multiply, then residual add; convolutions take no multiply and no GELU).
///
/// A node is folded only when its producer's value has no other reader and is not a graph
/// output, and when the other operand of a multiply or add is computed before the producer
/// (the fused kernel reads it). The rebuilt graph is re-checked op by op.
public enum Fusion {
    public static func fuse(_ graph: Graph) throws -> Graph {
        let nodes = graph.nodes
        var readers = [Int](repeating: 0, count: nodes.count)
        for node in nodes { for operand in node.operands { readers[operand] += 1 } }
        for id in graph.outputs.values { readers[id] += 1 }

        // The single reader of each value, if it has exactly one.
        var reader = [Int?](repeating: nil, count: nodes.count)
        for node in nodes { for operand in node.operands where readers[operand] == 1 { reader[operand] = node.id } }

        var ops = nodes.map(\.op)
        var residual = nodes.map(\.residual), multiply = nodes.map(\.multiply)
        var absorbedInto = [Int?](repeating: nil, count: nodes.count)  // folded node -> producer
        let outputIDs = Set(graph.outputs.values)
        for producer in nodes where isFusable(producer.op) {
            let p = producer.id
            var tail = p  // the node whose value the fused producer now yields
            while readers[tail] == 1, !outputIDs.contains(tail), let next = reader[tail] {
                let consumer = nodes[next]
                let other = consumer.inputs.first { $0 != tail }
                var folded = false
                switch consumer.op {
                case let .activation(a):
                    if multiply[p] == nil, residual[p] == nil, currentActivation(ops[p]) == .none, allows(ops[p], a) {
                        ops[p] = with(ops[p], activation: a)
                        folded = true
                    }
                case .multiply:
                    if isLinear(ops[p]), multiply[p] == nil, residual[p] == nil, let other, other < p {
                        multiply[p] = other
                        folded = true
                    }
                case .add:
                    if residual[p] == nil, let other, other < p {
                        residual[p] = other
                        folded = true
                    }
                default:
                    break
                }
                guard folded else { break }
                absorbedInto[consumer.id] = p
                tail = consumer.id
            }
        }

        // Rebuild: folded nodes disappear and their readers read the producer.
        var fused = Graph(batch: graph.batch, height: graph.height, width: graph.width, weightShapes: graph.weightShapes)
        var newID = [Int](repeating: -1, count: nodes.count)
        func resolve(_ id: Int) -> Int {
            var id = id
            while let producer = absorbedInto[id] { id = producer }
            return newID[id]
        }
        for node in nodes where absorbedInto[node.id] == nil {
            newID[node.id] = try fused.add(node.name, ops[node.id], inputs: node.inputs.map(resolve),
                                           residual: residual[node.id].map(resolve), multiply: multiply[node.id].map(resolve))
        }
        for (role, id) in graph.outputs { fused.markOutput(role, resolve(id)) }
        return fused
    }

    static func isFusable(_ op: Op) -> Bool {
        switch op {
        case .linear, .conv3x3: true
        default: false
        }
    }

    static func isLinear(_ op: Op) -> Bool {
        if case .linear = op { return true }
        return false
    }

    static func currentActivation(_ op: Op) -> Activation {
        switch op {
        case let .linear(_, _, a), let .conv3x3(_, _, _, a, _): a
        default: .none
        }
    }

    /// GELU is fused into linear layers only (the convolution kernels do not take it).
    static func allows(_ op: Op, _ activation: Activation) -> Bool {
        if case .conv3x3 = op { return activation != .gelu }
        return isLinear(op)
    }

    static func with(_ op: Op, activation: Activation) -> Op {
        switch op {
        case let .linear(w, b, _): .linear(weight: w, bias: b, activation: activation)
        case let .conv3x3(w, b, stride, _, depthwise): .conv3x3(weight: w, bias: b, stride: stride, activation: activation, depthwise: depthwise)
        default: op
        }
    }
}
