/// A dense float32 tensor in host memory, row-major (the last dimension is contiguous).
///
/// Spatial tensors are channels-last: (B, H, W, C), which is the token layout (B, L, C) of the
/// model with L = H * W in raster order, so convolutions and linear layers share one layout.
public struct Tensor: Equatable, Sendable {
    public let shape: [Int]
    public var data: [Float]

    public init(shape: [Int], data: [Float]) throws {
        try Shape.validate(shape, name: "tensor")
        guard Shape.count(shape) == data.count else {
            throw MilaError.shapeMismatch(op: "Tensor", tensor: "data",
                                          expected: "\(Shape.count(shape)) elements for shape \(Shape.describe(shape))",
                                          actual: [data.count])
        }
        self.shape = shape
        self.data = data
    }

    public init(zeros shape: [Int]) throws {
        try Shape.validate(shape, name: "tensor")
        self.shape = shape
        self.data = [Float](repeating: 0, count: Shape.count(shape))
    }

    /// Uniform values in `range`, reproducible from `seed`.
    public init(randomUniform shape: [Int], in range: ClosedRange<Float> = -1...1, seed: UInt64) throws {
        try Shape.validate(shape, name: "tensor")
        var generator = SplitMix64(seed: seed)
        self.shape = shape
        self.data = (0..<Shape.count(shape)).map { _ in generator.nextFloat(in: range) }
    }

    public var count: Int { data.count }
}

/// Shape helpers shared by both backends.
public enum Shape {
    public static func count(_ shape: [Int]) -> Int { shape.reduce(1, *) }

    public static func describe(_ shape: [Int]) -> String {
        "(" + shape.map(String.init).joined(separator: ", ") + ")"
    }

    /// Every dimension must be at least 1: zero-sized and negative dimensions are errors.
    public static func validate(_ shape: [Int], name: String, op: String = "Tensor") throws {
        guard !shape.isEmpty else {
            throw MilaError.invalidArgument(op: op, message: "\(name) has no dimensions")
        }
        if let bad = shape.first(where: { $0 < 1 }) {
            throw MilaError.invalidArgument(
                op: op, message: "\(name) has a dimension of size \(bad) in \(describe(shape)); every dimension must be >= 1")
        }
    }

    /// Output size of a 3x3, pad-1 convolution with the given stride: floor((n + 1) / 2) for stride 2.
    public static func conv3x3Output(_ size: Int, stride: Int) -> Int {
        (size + 2 - 3) / stride + 1
    }
}

/// A small, fast, seedable generator (SplitMix64) so tests and benchmarks are reproducible.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func nextFloat(in range: ClosedRange<Float>) -> Float {
        let unit = Float(next() >> 40) / Float(1 << 24)
        return range.lowerBound + (range.upperBound - range.lowerBound) * unit
    }
}
