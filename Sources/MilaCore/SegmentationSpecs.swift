// Shape contracts and index rules of the dense-prediction head's ops
// (../shared/spec/upernet-segmentation.md section 7). Every backend computes indices and
// interpolation weights through these functions, so the arithmetic PyTorch uses (float32 index
// maths, integer bin edges) lives in one place.

/// Bilinear resize with align_corners=False to an explicit size (PyTorch `upsample_bilinear2d`,
/// no antialiasing): input (B, H, W, C), output (B, height, width, C).
public struct ResizeSpec: Equatable, Sendable {
    public let batch: Int, inHeight: Int, inWidth: Int, channels: Int, height: Int, width: Int
    public var outputShape: [Int] { [batch, height, width, channels] }

    public init(input: [Int], height: Int, width: Int) throws {
        try Shape.validate(input, name: "input", op: "resize_bilinear")
        guard input.count == 4 else {
            throw MilaError.shapeMismatch(op: "resize_bilinear", tensor: "input", expected: "(B, H, W, C)", actual: input)
        }
        guard height >= 1, width >= 1 else {
            throw MilaError.invalidArgument(op: "resize_bilinear", message: "output size \(height)x\(width) must be at least 1x1")
        }
        (batch, inHeight, inWidth, channels) = (input[0], input[1], input[2], input[3])
        (self.height, self.width) = (height, width)
    }
}

/// One output coordinate's two source indices and weights along an axis.
public struct BilinearTap: Equatable, Sendable {
    public let i0: Int, i1: Int
    public let w0: Float, w1: Float

    public init(i0: Int, i1: Int, w0: Float, w1: Float) { (self.i0, self.i1, self.w0, self.w1) = (i0, i1, w0, w1) }
}

public enum Bilinear {
    /// PyTorch's rule in float32 (`compute_source_index_and_lambda`): the same size is a copy;
    /// else scale = in / out, src = max(0, scale * (dst + 0.5) - 0.5), i0 = min(floor(src), in - 1),
    /// w1 = clamp(src - i0, 0, 1), i1 = i0 + (i0 < in - 1), w0 = 1 - w1. Every step is one rounded
    /// float32 operation (no fused multiply-add), as the kernels compute it.
    public static func tap(_ dst: Int, inSize: Int, outSize: Int) -> BilinearTap {
        if inSize == outSize { return BilinearTap(i0: dst, i1: dst, w0: 1, w1: 0) }
        let scale = Float(inSize) / Float(outSize)
        let shifted = Float(dst) + 0.5
        let product = scale * shifted
        let src = max(product - 0.5, 0)
        let i0 = min(Int(src), inSize - 1)
        let w1 = min(max(src - Float(i0), 0), 1)
        let i1 = i0 + (i0 < inSize - 1 ? 1 : 0)
        return BilinearTap(i0: i0, i1: i1, w0: 1 - w1, w1: w1)
    }
}

/// Adaptive average pooling to (size, size) with PyTorch's bins: output bin i covers
/// [floor(i * H / o), ceil((i + 1) * H / o)) (the same for W); bins may overlap or repeat.
/// Input (B, H, W, C), output (B, size, size, C).
public struct AdaptivePoolSpec: Equatable, Sendable {
    public let batch: Int, inHeight: Int, inWidth: Int, channels: Int, size: Int
    public var outputShape: [Int] { [batch, size, size, channels] }

    public init(input: [Int], size: Int) throws {
        try Shape.validate(input, name: "input", op: "adaptive_avg_pool")
        guard input.count == 4 else {
            throw MilaError.shapeMismatch(op: "adaptive_avg_pool", tensor: "input", expected: "(B, H, W, C)", actual: input)
        }
        guard size >= 1 else { throw MilaError.invalidArgument(op: "adaptive_avg_pool", message: "output size \(size) must be >= 1") }
        (batch, inHeight, inWidth, channels, self.size) = (input[0], input[1], input[2], input[3], size)
    }

    /// The half-open input range of output bin `i` of `outSize` over `inSize`.
    public static func bin(_ i: Int, inSize: Int, outSize: Int) -> Range<Int> {
        let start = (i * inSize) / outSize
        let end = ((i + 1) * inSize + outSize - 1) / outSize
        return start..<end
    }
}

/// Channel concatenation of maps of one (B, H, W): output (B, H, W, sum of C) in input order.
/// The OpenCL backend never copies: each producer writes its channel slice of the output.
public struct ConcatSpec: Equatable, Sendable {
    public let outputShape: [Int]
    /// Channel offset of each input in the output.
    public let offsets: [Int]

    public init(inputs: [[Int]]) throws {
        guard let first = inputs.first else { throw MilaError.invalidArgument(op: "concat", message: "no inputs") }
        guard first.count == 4 else { throw MilaError.shapeMismatch(op: "concat", tensor: "input 0", expected: "(B, H, W, C)", actual: first) }
        var offsets: [Int] = [], total = 0
        for (i, shape) in inputs.enumerated() {
            guard shape.count == 4, Array(shape.prefix(3)) == Array(first.prefix(3)) else {
                throw MilaError.shapeMismatch(op: "concat", tensor: "input \(i)",
                                              expected: Shape.describe(Array(first.prefix(3)) + [shape.last ?? 0]), actual: shape)
            }
            offsets.append(total)
            total += shape[3]
        }
        self.offsets = offsets
        outputShape = Array(first.prefix(3)) + [total]
    }
}

/// mmseg's whole-image output in one pass: logits (B, Hs, Ws, K) resized bilinearly to
/// (midHeight, midWidth), then again to (height, width), then the first maximal class per
/// pixel. Output (B, height, width, 1) holding class indices as floats. No (K, height, width)
/// tensor is formed: each output pixel reads at most 16 logit pixels.
public struct ResizeArgmaxSpec: Equatable, Sendable {
    public let batch: Int, inHeight: Int, inWidth: Int, classes: Int
    public let midHeight: Int, midWidth: Int, height: Int, width: Int
    public var outputShape: [Int] { [batch, height, width, 1] }

    public init(input: [Int], midHeight: Int, midWidth: Int, height: Int, width: Int) throws {
        try Shape.validate(input, name: "logits", op: "resize_argmax")
        guard input.count == 4 else {
            throw MilaError.shapeMismatch(op: "resize_argmax", tensor: "logits", expected: "(B, H, W, classes)", actual: input)
        }
        guard midHeight >= 1, midWidth >= 1, height >= 1, width >= 1 else {
            throw MilaError.invalidArgument(op: "resize_argmax", message: "sizes \(midHeight)x\(midWidth) and \(height)x\(width) must be at least 1x1")
        }
        guard input[3] < 1 << 24 else {
            throw MilaError.invalidArgument(op: "resize_argmax", message: "\(input[3]) classes cannot be stored exactly as float32 indices")
        }
        (batch, inHeight, inWidth, classes) = (input[0], input[1], input[2], input[3])
        (self.midHeight, self.midWidth, self.height, self.width) = (midHeight, midWidth, height, width)
    }
}
