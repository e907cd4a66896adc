import MilaCore

/// A tensor on the device: a buffer and the shape it holds (same layouts as `Tensor`).
public struct DeviceTensor {
    public let buffer: CLBuffer
    public let shape: [Int]
    public var count: Int { Shape.count(shape) }

    public init(buffer: CLBuffer, shape: [Int]) {
        precondition(buffer.count >= Shape.count(shape), "buffer smaller than its shape")
        self.buffer = buffer
        self.shape = shape
    }
}

extension CLContext {
    public func upload(_ tensor: Tensor) throws -> DeviceTensor {
        DeviceTensor(buffer: try upload(tensor.data), shape: tensor.shape)
    }

    public func download(_ tensor: DeviceTensor) throws -> Tensor {
        try Tensor(shape: tensor.shape, data: download(tensor.buffer, count: tensor.count))
    }

    /// An uninitialised device tensor (buffer from the pool).
    public func empty(_ shape: [Int]) throws -> DeviceTensor {
        try Shape.validate(shape, name: "tensor")
        return DeviceTensor(buffer: try buffer(count: Shape.count(shape)), shape: shape)
    }

    public func recycle(_ tensor: DeviceTensor) { recycle(tensor.buffer) }
}

/// The epilogue bits of Kernels/common.cl (EPI_*).
struct EpilogueFlags: OptionSet {
    let rawValue: Int32
    static let bias = EpilogueFlags(rawValue: 1)
    static let multiply = EpilogueFlags(rawValue: 2)
    static let residual = EpilogueFlags(rawValue: 4)
}

func roundUp(_ value: Int, to multiple: Int) -> Int { (value + multiple - 1) / multiple * multiple }
func ceilDiv(_ value: Int, _ divisor: Int) -> Int { (value + divisor - 1) / divisor }
