/// How a backend stores the model's weights. Arithmetic is float32 in both: with `fp16` the
/// weights of every GEMM and 3x3 convolution (dense, depthwise, LePE) live on the device as IEEE
/// half floats, are widened on load and multiplied and accumulated in float32. Biases,
/// LayerNorm parameters and the forget gate's A_log stay float32, as do the activations.
public enum Precision: String, CaseIterable, Sendable {
    case fp32
    case fp16

    /// The weight tensors `graph` reads that fp16 stores as half floats: the weights (not the
    /// biases) of its linear layers and 3x3 convolutions, and the LePE convolutions inside the
    /// attention ops.
    public static func halfWeightNames(in graph: Graph) -> Set<String> {
        var names: Set<String> = []
        for node in graph.nodes {
            switch node.op {
            case let .linear(weight, _, _), let .conv3x3(weight, _, _, _, _): names.insert(weight)
            case let .linearAttention(_, lepeWeight, _), let .forgetGateAttention(_, _, _, _, lepeWeight, _): names.insert(lepeWeight)
            default: break
            }
        }
        return names
    }

    /// The largest finite half float; a weight beyond it cannot be stored in fp16.
    public static let halfMaximum: Float = 65504

    /// Throws unless every value of `tensor` fits a half float (finite, |w| <= `halfMaximum`),
    /// naming `name` and the first element that does not, by its coordinates.
    public static func checkFitsHalf(_ tensor: Tensor, name: String) throws {
        guard let i = tensor.data.firstIndex(where: { !($0.isFinite && abs($0) <= halfMaximum) }) else { return }
        var coordinates: [Int] = [], rest = i
        for size in tensor.shape.reversed() { coordinates.insert(rest % size, at: 0); rest /= size }
        throw MilaError.invalidArgument(op: "fp16", message: "\(name)[\(coordinates.map(String.init).joined(separator: ", "))] = \(tensor.data[i]) does not fit a half float (|w| <= 65504); use --precision fp32")
    }

    /// The IEEE binary16 bit patterns of `values` (round to nearest, ties to even; check the
    /// range first with `checkFitsHalf`).
    public static func halfBits(_ values: [Float]) -> [UInt16] {
        values.map { Float16($0).bitPattern }
    }

    /// `values` rounded to the nearest half float (ties to even) and widened back: what a device
    /// computes with when it stores them as fp16.
    public static func roundedToHalf(_ values: [Float]) -> [Float] {
        values.map { Float(Float16($0)) }
    }
}
