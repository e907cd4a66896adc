import MilaCore

/// The dense-prediction head's ops (Kernels/resize_bilinear.cl, adaptive_avg_pool.cl,
/// resize_argmax.cl). Scales in / out are divided on the host, where float32 division is
/// correctly rounded on every device.
extension CLContext {
    /// Bilinear resize, align_corners=False, of dense x (B, H, W, C) to (height, width); the
    /// output may be a view (a channel slice of a concat buffer).
    public func resizeBilinear(_ x: DeviceTensor, height: Int, width: Int, output: DeviceTensor? = nil) throws -> DeviceTensor {
        let spec = try ResizeSpec(input: x.shape, height: height, width: width)
        let y = try output ?? empty(spec.outputShape)
        guard y.shape == spec.outputShape else {
            throw MilaError.shapeMismatch(op: "resize_bilinear", tensor: "output", expected: Shape.describe(spec.outputShape), actual: y.shape)
        }
        try x.requireDense("resize_bilinear", "input")
        let vec = spec.channels % 16 == 0 ? 16 : 1
        try launch(try kernel(.resizeBilinear, vec == 16 ? "resize_bilinear_vec" : "resize_bilinear"),
                   global: [spec.channels / vec, width, spec.batch * height],
                   arguments: [.int(Int32(spec.inHeight)), .int(Int32(spec.inWidth)), .int(Int32(spec.channels)),
                               .int(Int32(height)), .int(Int32(width)),
                               .float(Float(spec.inHeight) / Float(height)), .float(Float(spec.inWidth) / Float(width)),
                               .buffer(x.buffer), .buffer(y.buffer), .int(Int32(y.offset)), .int(Int32(y.pixelStride))])
        return y
    }

    /// Adaptive average pooling of x (B, H, W, C), which may be a view, to (size, size).
    public func adaptiveAvgPool(_ x: DeviceTensor, size: Int, output: DeviceTensor? = nil) throws -> DeviceTensor {
        let spec = try AdaptivePoolSpec(input: x.shape, size: size)
        let y = try output ?? empty(spec.outputShape)
        guard y.shape == spec.outputShape else {
            throw MilaError.shapeMismatch(op: "adaptive_avg_pool", tensor: "output", expected: Shape.describe(spec.outputShape), actual: y.shape)
        }
        try y.requireDense("adaptive_avg_pool", "output")
        try launch(try kernel(.adaptiveAvgPool, "adaptive_avg_pool"), global: [spec.channels, size, spec.batch * size],
                   arguments: [.int(Int32(spec.inHeight)), .int(Int32(spec.inWidth)), .int(Int32(spec.channels)), .int(Int32(size)),
                               .buffer(x.buffer), .int(Int32(x.offset)), .int(Int32(x.pixelStride)), .buffer(y.buffer)])
        return y
    }

    /// Logits (B, Hs, Ws, K) resized to (midHeight, midWidth), then to (height, width), then
    /// the first maximal class: (B, height, width, 1) class indices as floats.
    public func resizeArgmax(_ logits: DeviceTensor, midHeight: Int, midWidth: Int, height: Int, width: Int,
                             output: DeviceTensor? = nil) throws -> DeviceTensor {
        let spec = try ResizeArgmaxSpec(input: logits.shape, midHeight: midHeight, midWidth: midWidth, height: height, width: width)
        let y = try output ?? empty(spec.outputShape)
        guard y.shape == spec.outputShape else {
            throw MilaError.shapeMismatch(op: "resize_argmax", tensor: "output", expected: Shape.describe(spec.outputShape), actual: y.shape)
        }
        try logits.requireDense("resize_argmax", "logits")
        try y.requireDense("resize_argmax", "output")
        // CPUs read 16 classes per load (resize_argmax_vec); GPUs one class per work-item step.
        let name = variant == .cpu && spec.classes >= 16 ? "resize_argmax_vec" : "resize_argmax"
        try launch(try kernel(.resizeArgmax, name), global: [width, height, spec.batch],
                   arguments: [.int(Int32(spec.inHeight)), .int(Int32(spec.inWidth)), .int(Int32(spec.classes)),
                               .int(Int32(midHeight)), .int(Int32(midWidth)), .int(Int32(height)), .int(Int32(width)),
                               .float(Float(spec.inHeight) / Float(midHeight)), .float(Float(spec.inWidth) / Float(midWidth)),
                               .float(Float(midHeight) / Float(height)), .float(Float(midWidth) / Float(width)),
                               .buffer(logits.buffer), .buffer(y.buffer)])
        return y
    }
}
