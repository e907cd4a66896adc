/// Counted FLOPs of a graph (what `mila-infer bench` divides by the measured time): a
/// multiply-add is 2 FLOPs; GEMMs 2 M K N, convolutions and attention by their specs (LePE
/// included); layer norm 8 per element; a bilinear resize 11 per output, the fused resize-argmax 36 per
/// pixel and class, adaptive pooling 1 per input element, concat 0; elementwise ops, activations, fused epilogues (residual,
/// multiply) and the token mean 1 per element; input and padding 0.
extension Graph {
    public var flops: Double { nodes.reduce(0) { $0 + flops(of: $1) } }

    public func flops(of node: Node) -> Double {
        let outputs = Double(Shape.count(node.shape))
        let epilogue = Double([node.residual, node.multiply].compactMap { $0 }.count) * outputs
        switch node.op {
        case .input, .pad:
            return 0
        case let .conv3x3(_, _, _, _, depthwise):
            let cin = Double(nodes[node.inputs[0]].shape.last ?? 0)
            return outputs * (depthwise ? 18 : 18 * cin) + epilogue
        case let .linear(w, _, _):
            let inFeatures = Double(weightShapes[w]?.last ?? 0)
            return 2 * outputs * inFeatures + epilogue
        case .layerNorm:
            return 8 * outputs
        case let .linearAttention(heads, _, _):
            let c = Double(node.shape.last ?? 0), l = outputs / max(c, 1)
            return 4 * l * c * (c / Double(heads)) + 4 * l * c + 18 * l * c
        case let .forgetGateAttention(heads, bidirectional, _, _, _, _):
            let c = Double(node.shape.last ?? 0), l = outputs / max(c, 1), d = c / Double(heads)
            return l * Double(heads) * 4 * d * (d + 1) * (bidirectional ? 2 : 1) + 18 * l * c
        case .add, .multiply, .activation:
            return outputs
        case .meanTokens, .adaptiveAvgPool:
            return Double(Shape.count(nodes[node.inputs[0]].shape))
        case .resize:
            return 11 * outputs  // 8 multiply-adds of the two-level form, 3 for the weights' use
        case .concat:
            return 0
        case .resizeArgmax:
            // Per output pixel and class: 4 mid values of 7 operations, the outer 7, a compare.
            return outputs * Double(nodes[node.inputs[0]].shape.last ?? 0) * 36
        }
    }
}
