import MilaCore

/// LayerNorm parameters on the device.
public struct LayerNormWeights {
    public let channels: Int
    let weight: CLBuffer
    let bias: CLBuffer

    public init(context: CLContext, weight: Tensor, bias: Tensor) throws {
        guard weight.shape.count == 1, bias.shape == weight.shape else {
            throw MilaError.shapeMismatch(op: "layernorm", tensor: "bias", expected: Shape.describe(weight.shape), actual: bias.shape)
        }
        channels = weight.shape[0]
        self.weight = try context.upload(weight.data)
        self.bias = try context.upload(bias.data)
    }
}

extension CLContext {
    /// LayerNorm over the last dimension of x (..., C); the output may be a view (a channel
    /// slice of a concat buffer), x is dense.
    public func layerNorm(_ x: DeviceTensor, _ weights: LayerNormWeights, eps: Float = 1e-5,
                          output: DeviceTensor? = nil) throws -> DeviceTensor {
        let spec = try LayerNormSpec(input: x.shape, weight: [weights.channels], bias: [weights.channels])
        let y = try output ?? empty(x.shape)
        try x.requireDense("layernorm", "input")
        let arguments: [KernelArgument] = [.int(Int32(spec.rows)), .int(Int32(spec.channels)), .float(eps), .buffer(x.buffer),
                                           .buffer(weights.weight), .buffer(weights.bias), .buffer(y.buffer),
                                           .int(Int32(y.offset)), .int(Int32(y.pixelStride))]
        if variant == .gpu {
            let groupSize = Self.layerNormGroup(channels: spec.channels, maxWorkGroup: device.maxWorkGroupSize)
            try launch(try kernel(.layernorm, "layernorm_wg", defines: ["LN_WG=\(groupSize)"]),
                       global: [groupSize * spec.rows], local: [groupSize], arguments: arguments)
        } else {
            let name = spec.channels % 16 == 0 ? "layernorm_rows_vec" : "layernorm_rows"
            try launch(try kernel(.layernorm, name), global: [spec.rows], arguments: arguments)
        }
        return y
    }
}

extension CLContext {
    /// Work-items per row of layernorm_wg: about 4 channels each (a power of two between 32, a
    /// warp, and 256), within the device's work-group limit.
    static func layerNormGroup(channels: Int, maxWorkGroup: Int) -> Int {
        var group = 32
        while group < 256 && group * 4 < channels { group *= 2 }
        while group > maxWorkGroup && group > 1 { group /= 2 }
        return group
    }
}
