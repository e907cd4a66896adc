import MilaCore

extension CLContext {
    /// Tokens summed per chunk before the chunk sums are added (Kernels/reduce.cl).
    static let meanChunk = 256

    /// Mean over tokens: (B, L, C) -> (B, C), exact for large L (chunked + Kahan).
    public func meanTokens(_ x: DeviceTensor, output: DeviceTensor? = nil) throws -> DeviceTensor {
        guard x.shape.count == 3 else {
            throw MilaError.shapeMismatch(op: "mean_tokens", tensor: "input", expected: "(B, L, C)", actual: x.shape)
        }
        let (batch, l, c) = (x.shape[0], x.shape[1], x.shape[2])
        let chunks = ceilDiv(l, Self.meanChunk)
        let partial = try buffer(count: batch * chunks * c)
        defer { recycle(partial) }
        try launch(try kernel(.reduce, "token_sum_partial"), global: [c, chunks, batch],
                   arguments: [.int(Int32(l)), .int(Int32(c)), .int(Int32(Self.meanChunk)), .buffer(x.buffer), .buffer(partial)])
        let y = try output ?? empty([batch, c])
        try reduceChunks(partial, elements: c, chunks: chunks, batch: batch, scale: 1 / Float(l), into: y.buffer)
        return y
    }

    /// out[b][e] = scale * sum over chunks of partial[b][chunk][e] (Kahan).
    func reduceChunks(_ partial: CLBuffer, elements: Int, chunks: Int, batch: Int, scale: Float, into out: CLBuffer) throws {
        try launch(try kernel(.reduce, "reduce_chunks"), global: [ceilDiv(elements, 16), batch],  // 16 per work-item
                   arguments: [.int(Int32(elements)), .int(Int32(chunks)), .float(scale), .buffer(partial), .buffer(out)])
    }
}
