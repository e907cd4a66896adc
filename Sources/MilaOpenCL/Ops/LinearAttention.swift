import Foundation
import MilaCore

extension CLContext {
    /// Tokens per partial sum in the attention's reductions (Kernels/linear_attention.cl).
    static let attentionChunk = 64

    /// The released MLLA linear attention plus LePE (LinearAttentionSpec): qk (B, L, 2C) from the
    /// qk projection, v (B, L, C), lepe depthwise weights (C, 1, 3, 3); output (B, L, C).
    public func linearAttention(qk: DeviceTensor, v: DeviceTensor, height: Int, width: Int, heads: Int,
                                lepe: Conv3x3Weights, output: DeviceTensor? = nil) throws -> DeviceTensor {
        let spec = try LinearAttentionSpec(qk: qk.shape, v: v.shape, height: height, width: width, heads: heads,
                                           lepeWeight: lepe.weightShape, lepeBias: lepe.bias.map { _ in [lepe.outChannels] } ?? [lepe.outChannels])
        guard lepe.depthwise else {
            throw MilaError.invalidArgument(op: "linear_attention", message: "lepe weights must be depthwise (C, 1, 3, 3)")
        }
        let (batch, l, c, d) = (spec.batch, spec.tokens, spec.channels, spec.headDim)
        let (rotY, rotX) = try ropeTables(height: height, width: width, channels: c)
        let chunks = ceilDiv(l, Self.attentionChunk)
        // Per chunk and image a record of c (d + 1) floats: the kv block, then the k sums; one
        // reduce_chunks turns the chunks' records into each image's (kv / L, mean k).
        let record = c * (d + 1)
        let part = try buffer(count: batch * chunks * record)
        let kvm = try buffer(count: batch * record)
        defer { for b in [part, kvm] { recycle(b) } }
        let defines = ["DHEAD=\(d)"] + lepe.precision.kernelDefines
        let result = try output ?? empty(spec.outputShape)
        guard result.shape == spec.outputShape else {
            throw MilaError.shapeMismatch(op: "linear_attention", tensor: "output", expected: Shape.describe(spec.outputShape), actual: result.shape)
        }
        // The vectorised CPU kernel adds LePE itself; the others leave the attention alone in a
        // temporary that the depthwise conv then reads as its residual.
        let lepeInOutput = variant == .cpu && d % 16 == 0
        let attention = lepeInOutput ? result : try empty(spec.outputShape)
        defer { if !lepeInOutput { recycle(attention) } }
        let lTokens = Int32(l), widthArgument = Int32(width), channels = Int32(c)
        if variant == .gpu, let tiles = AttentionTiles(headDim: d, chunk: Self.attentionChunk, localMemory: Int(device.localMemory),
                                                       maxWorkGroup: device.maxWorkGroupSize) {
            // GPUs: local-memory tiles (la_kv_wg, la_output_wg).
            let tiled = defines + tiles.defines
            try launch(try kernel(.linearAttention, "la_kv_wg", defines: tiled), global: [tiles.workGroup * heads, chunks, batch],
                       local: [tiles.workGroup, 1, 1],
                       arguments: [.int(lTokens), .int(widthArgument), .int(channels), .int(Int32(Self.attentionChunk)),
                                   .buffer(qk.buffer), .buffer(v.buffer), .buffer(rotY), .buffer(rotX), .buffer(part)])
            try reduceChunks(part, elements: record, chunks: chunks, batch: batch, scale: 1 / Float(l), into: kvm)
            try launch(try kernel(.linearAttention, "la_output_wg", defines: tiled),
                       global: [tiles.workGroup * ceilDiv(l, tiles.outputTokens), heads, batch], local: [tiles.workGroup, 1, 1],
                       arguments: [.int(lTokens), .int(widthArgument), .int(channels), .buffer(qk.buffer), .buffer(rotY), .buffer(rotX),
                                   .buffer(kvm), .buffer(attention.buffer)])
        } else {
            // CPUs get the explicitly vectorised pair when the head dimension allows (d % 16 == 0);
            // the scalar pair serves other head dimensions (and GPUs whose local memory cannot hold
            // a head's d x d block).
            let vectorised = lepeInOutput
            try launch(try kernel(.linearAttention, vectorised ? "la_kv_partial_vec" : "la_kv_partial", defines: defines),
                       global: [vectorised ? c / 8 : c, chunks, batch],
                       arguments: [.int(lTokens), .int(widthArgument), .int(channels), .int(Int32(Self.attentionChunk)),
                                   .buffer(qk.buffer), .buffer(v.buffer), .buffer(rotY), .buffer(rotX), .buffer(part)])
            try reduceChunks(part, elements: record, chunks: chunks, batch: batch, scale: 1 / Float(l), into: kvm)
            let outputArguments: [KernelArgument] = [.int(lTokens), .int(widthArgument), .int(channels), .buffer(qk.buffer), .buffer(rotY),
                                                     .buffer(rotX), .buffer(kvm), .buffer(attention.buffer)]
            if vectorised {
                try launch(try kernel(.linearAttention, "la_output_vec", defines: defines), global: [l, heads, batch],
                           arguments: outputArguments + [.buffer(v.buffer), .buffer(lepe.packed), .buffer(lepe.bias ?? kvm),
                                                         .int(lepe.bias == nil ? 0 : 1)])
                return result
            }
            try launch(try kernel(.linearAttention, "la_output", defines: defines), global: [l, heads, batch], arguments: outputArguments)
        }
        try addLePE(v: v, lepe: lepe, height: height, width: width, attention: attention, output: result)
        return result
    }

    /// LePE after the attention: output = attention + dwconv3x3(v), v, attention and output
    /// (B, L, C) seen as (B, height, width, C) maps (the kernels that do not add it themselves).
    func addLePE(v: DeviceTensor, lepe: Conv3x3Weights, height: Int, width: Int, attention: DeviceTensor,
                 output: DeviceTensor) throws {
        let map = [v.shape[0], height, width, v.shape[2]]
        _ = try conv3x3(DeviceTensor(buffer: v.buffer, shape: map), lepe, stride: 1,
                        residual: DeviceTensor(buffer: attention.buffer, shape: map), output: DeviceTensor(buffer: output.buffer, shape: map))
    }

    /// RoPE (cos, sin) tables in float64 rounded to float: rotY (H, C/4, 2), rotX (W, C/4, 2).
    /// Built once per (H, W, C) and kept: a forward pass reuses them in every block.
    func ropeTables(height: Int, width: Int, channels: Int) throws -> (CLBuffer, CLBuffer) {
        let tables = try sizeTables("rope \(height)x\(width)x\(channels)") {
            let (y, x) = ropeTableValues(height: height, width: width, channels: channels)
            return [try upload(y), try upload(x)]
        }
        return (tables[0], tables[1])
    }

    func ropeTableValues(height: Int, width: Int, channels: Int) -> ([Float], [Float]) {
        let kMax = channels / 4
        func table(_ positions: Int) -> [Float] {
            var values = [Float](repeating: 0, count: positions * kMax * 2)
            for position in 0..<positions {
                for m in 0..<kMax {
                    let angle = Double(position) * RoPE.theta(m, channels: channels)
                    values[(position * kMax + m) * 2] = Float(cos(angle))
                    values[(position * kMax + m) * 2 + 1] = Float(sin(angle))
                }
            }
            return values
        }
        return (table(height), table(width))
    }
}

/// Tile sizes of the GPU attention kernels (la_kv_wg, la_output_wg) from the device's limits:
/// work-groups of 256 work-items (or the device's maximum, a power of two), and as many tokens
/// per local-memory tile (up to 64) as fit half the local memory, the other half left for a
/// second resident work-group. Nil when not even one token fits beside a head's d x d block.
struct AttentionTiles: Equatable {
    /// LA_WG, LA_TS (tokens per la_kv_wg tile), LA_TT (tokens per la_output_wg work-group).
    let workGroup: Int, stateTokens: Int, outputTokens: Int, headDim: Int

    init?(headDim d: Int, chunk: Int, localMemory: Int, maxWorkGroup: Int) {
        var group = 1
        while group * 2 <= min(256, maxWorkGroup) { group *= 2 }
        let budget = localMemory / 2
        let stateTokens = min(chunk, budget / (3 * d * 4))                     // KR, KU, VV rows
        let outputTokens = min(64, (budget - (d * d + d) * 4) / ((2 * d + 1) * 4))  // KV, KM; QR, QU, Z rows
        guard stateTokens >= 1, outputTokens >= 1 else { return nil }
        (workGroup, self.stateTokens, self.outputTokens, headDim) = (group, stateTokens, outputTokens, d)
    }

    var defines: [String] {
        ["LA_WG=\(workGroup)", "LA_TS=\(stateTokens)", "LA_TT=\(outputTokens)", "LA_OPW=\((headDim * headDim + workGroup - 1) / workGroup)"]
    }
}
