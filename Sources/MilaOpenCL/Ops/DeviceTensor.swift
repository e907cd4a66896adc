import MilaCore

/// A tensor on the device: a buffer and the shape it holds (same layouts as `Tensor`).
/// A view of a channel slice (a concatenated value) starts `offset` floats into the buffer and
/// steps `pixelStride` floats from one pixel (row of the last dimension) to the next; only the
/// kernels that say so take views.
public struct DeviceTensor {
    public let buffer: CLBuffer
    public let shape: [Int]
    public let offset: Int
    public let pixelStride: Int
    public var count: Int { Shape.count(shape) }
    public var isDense: Bool { offset == 0 && pixelStride == (shape.last ?? 1) }

    public init(buffer: CLBuffer, shape: [Int]) {
        precondition(buffer.count >= Shape.count(shape), "buffer smaller than its shape")
        self.buffer = buffer
        self.shape = shape
        self.offset = 0
        self.pixelStride = shape.last ?? 1
    }

    /// Channels [offset, offset + shape.last) of a buffer holding pixels of `pixelStride` floats.
    public init(buffer: CLBuffer, shape: [Int], offset: Int, pixelStride: Int) {
        let c = shape.last ?? 1
        precondition(offset >= 0 && offset + c <= pixelStride, "slice outside the pixel")
        precondition(buffer.count >= Shape.count(shape) / c * pixelStride, "buffer smaller than its view")
        self.buffer = buffer
        self.shape = shape
        self.offset = offset
        self.pixelStride = pixelStride
    }

    /// Throws unless the tensor is dense (for kernels that do not take views).
    func requireDense(_ op: String, _ name: String) throws {
        guard isDense else {
            throw MilaError.unsupported(op: op, message: "\(name) is a channel slice (offset \(offset), pixel stride \(pixelStride)); this kernel reads dense tensors only")
        }
    }
}

extension CLContext {
    public func upload(_ tensor: Tensor) throws -> DeviceTensor {
        DeviceTensor(buffer: try upload(tensor.data), shape: tensor.shape)
    }

    public func download(_ tensor: DeviceTensor) throws -> Tensor {
        if tensor.isDense { return try Tensor(shape: tensor.shape, data: download(tensor.buffer, count: tensor.count)) }
        let c = tensor.shape.last ?? 1, pixels = tensor.count / c
        let all = try download(tensor.buffer, count: pixels * tensor.pixelStride)
        var data = [Float](repeating: 0, count: tensor.count)
        for p in 0..<pixels { for i in 0..<c { data[p * c + i] = all[p * tensor.pixelStride + tensor.offset + i] } }
        return try Tensor(shape: tensor.shape, data: data)
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
    /// Non-temporal stores (gemm_reg, conv3x3_igemm): see `CLContext.streamsOutput`.
    static let stream = EpilogueFlags(rawValue: 8)
}

func roundUp(_ value: Int, to multiple: Int) -> Int { (value + multiple - 1) / multiple * multiple }
func ceilDiv(_ value: Int, _ divisor: Int) -> Int { (value + divisor - 1) / divisor }
