import MilaCore

extension CLContext {
    /// a + b or a * b, same shapes.
    public func elementwise(_ a: DeviceTensor, _ b: DeviceTensor, _ op: ElementwiseOp, output: DeviceTensor? = nil) throws -> DeviceTensor {
        guard a.shape == b.shape else {
            throw MilaError.shapeMismatch(op: "elementwise_\(op)", tensor: "second operand", expected: Shape.describe(a.shape), actual: b.shape)
        }
        let y = try output ?? empty(a.shape)
        try launch(try kernel(.eltwise, "eltwise_binary"), global: [a.count],
                   arguments: [.int(Int32(a.count)), .int(op.rawValue), .buffer(a.buffer), .buffer(b.buffer), .buffer(y.buffer)])
        return y
    }

    /// act(x) elementwise.
    public func activation(_ x: DeviceTensor, _ activation: Activation, output: DeviceTensor? = nil) throws -> DeviceTensor {
        let y = try output ?? empty(x.shape)
        try launch(try kernel(.eltwise, "eltwise_activation"), global: [x.count],
                   arguments: [.int(Int32(x.count)), .int(activation.rawValue), .buffer(x.buffer), .buffer(y.buffer)])
        return y
    }

    /// A copy of x, 16 floats per work-item (copy_vec16): the memory-bandwidth yardstick that the
    /// benchmarks hold memory-bound kernels against.
    public func copy(_ x: DeviceTensor, output: DeviceTensor? = nil) throws -> DeviceTensor {
        let y = try output ?? empty(x.shape)
        guard y.count == x.count else {
            throw MilaError.shapeMismatch(op: "copy", tensor: "output", expected: Shape.describe(x.shape), actual: y.shape)
        }
        try launch(try kernel(.eltwise, "copy_vec16"), global: [ceilDiv(x.count, 16)],
                   arguments: [.int(Int32(x.count)), .buffer(x.buffer), .buffer(y.buffer)])
        return y
    }

    /// Zero-pads (B, H, W, C) at the bottom and right to (B, height, width, C).
    public func padBottomRight(_ x: DeviceTensor, height: Int, width: Int, output: DeviceTensor? = nil) throws -> DeviceTensor {
        let spec = try PadSpec(input: x.shape, height: height, width: width)
        let y = try output ?? empty(spec.outputShape)
        try launch(try kernel(.eltwise, "pad_bottom_right"), global: [width * spec.channels, height, spec.batch],
                   arguments: [.int(Int32(spec.inHeight)), .int(Int32(spec.inWidth)), .int(Int32(spec.channels)),
                               .int(Int32(height)), .int(Int32(width)), .buffer(x.buffer), .buffer(y.buffer)])
        return y
    }
}
