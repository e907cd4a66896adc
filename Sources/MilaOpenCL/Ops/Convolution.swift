import Foundation
import MilaCore

/// 3x3 convolution weights on the device, packed once (see Kernels/conv3x3.cl, dwconv3x3.cl).
/// Dense: (Cout, Cin, 3, 3) -> (3, 3, Cin, CoutP), CoutP = Cout rounded up to 16 (or 32); for
/// conv3x3_igemm, panels of 16 output channels, each (9 Cin) x 16, CoutP rounded up to the
/// columns of its register tile (`implicitGemmTile`).
/// Depthwise: (C, 1, 3, 3) -> (9, C). Fold BatchNorm first (BatchNormFolding). With `.fp16`
/// the packed weight is stored as half floats (the bias stays float32).
public struct Conv3x3Weights {
    public let weightShape: [Int]
    public let depthwise: Bool
    public let precision: Precision
    /// The register tile conv3x3_igemm runs these weights on (CoutP a multiple of its columns,
    /// with a row of Cin zeros for the padding); nil when conv3x3 (or a depthwise kernel) does.
    public let implicitGemmTile: GemmTile?
    /// Run by conv3x3_igemm.
    public var implicitGemm: Bool { implicitGemmTile != nil }
    let packed: CLBuffer
    let bias: CLBuffer?
    let zeros: CLBuffer?
    let paddedOutChannels: Int
    public var outChannels: Int { weightShape[0] }
    /// Bytes of the packed weight and bias on the device.
    public var bytes: Int {
        let taps = depthwise ? 9 * paddedOutChannels : 9 * weightShape[1] * paddedOutChannels
        return taps * precision.bytesPerWeight + (bias == nil ? 0 : paddedOutChannels * 4)
    }

    /// K rows (of 9 Cin) per conv3x3_igemm launch: a weight panel of rows x tile columns floats per
    /// work-item within `MILA_IGEMM_PANEL_KB` (default 256 KiB) so it stays in cache for every
    /// pixel tile of the launch. Swept on a 2-vCPU Zen 4 EPYC (2 MiB L2 in all, 2026-12-04,
    /// `mila-kernel-bench --only head --variant igemm`): 32/64/128/256/512/2048 KiB gave
    /// 110/159/181/182/130/135 GFLOP/s over the head's shapes (fpn_bottleneck 128x128: 104, 156,
    /// 177, 185, 120, 125); 512 KiB had measured best on the previous session's EPYC.
    static func rowsPerLaunch(tileColumns: Int) -> Int {
        max(16, panelBytes / (tileColumns * 4))
    }

    static let panelBytes = (ProcessInfo.processInfo.environment["MILA_IGEMM_PANEL_KB"].flatMap { Int($0) } ?? 256) * 1024

    /// Dense convolutions with at least this many input channels run as an implicit GEMM on
    /// CPUs (the UperNet head's 512-2816), and so do those with at least
    /// `implicitGemmMinWideChannels` in and 64 out, or out channels that fill whole tiles of
    /// `implicitGemmTile` (the stem's 32 -> 256 conv3.0: 2.2 against 2.9 ms at 224, 50 against
    /// 65 ms at 1024 on a 2-vCPU Zen 4 EPYC, Intel's runtime, `mila-kernel-bench --only
    /// conv3x3`, 2026-12-06; its 32 -> 32 convs on the 8 x 32 tile). The stem's 3 -> 32 conv
    /// stays on conv3x3 (K = 27).
    public static let implicitGemmMinChannels = 64
    public static let implicitGemmMinWideChannels = 16

    /// conv3x3_igemm's register tile for `outChannels`: the device's tuned GEMM tile, except that
    /// a wide tuned tile (AVX-512's 4 x 64) gives way to 8 x 32 for a multiple of 32 output
    /// channels that does not fill its columns. On the stem's 32 -> 32 convs, where half of the
    /// 4 x 64 tile would be padding (igemm 1.4x slower than conv3x3 there), 8 x 32 ran 20-30%
    /// faster than conv3x3: 1.17-1.26 against 1.52-1.89 ms on 112x112x32 (224 input), 25.0-26.6
    /// against 32.4-34.4 ms on 512x512x32 (1024 input), PoCL, 2-vCPU Zen 4 EPYC,
    /// `mila-kernel-bench --only conv3x3`, 2 interleaved rounds, 2026-12-07.
    static func implicitGemmTile(tuned: GemmTile, outChannels: Int) -> GemmTile {
        let tile8x32 = GemmTile(rows: 8, columns: 32)
        if tuned.isWide && outChannels % tuned.columns != 0 && outChannels % tile8x32.columns == 0 { return tile8x32 }
        return tuned
    }

    /// Dense convolutions with at least this many input channels run as conv3x3_tiled on GPUs
    /// (K = 9 Cin >= 144 fills the 16-deep K steps; the stem's 3-channel conv stays on conv3x3's
    /// one-output-vector-per-work-item kernel, where K = 27 would leave most of each step empty).
    /// The kernel's 16 x 16 work-groups need a device limit of at least 256 work-items; below
    /// that conv3x3 runs.
    public static let tiledMinChannels = 16

    /// Float16 vectors of output channels per work-item of the CPU conv3x3 kernel (COV): 2 when
    /// Cout > 16 (an 8-pixel x 32-channel tile), else 1 (16 x 16); XPW = 16 / COV pixels. On the
    /// stem's 32 -> 256 conv, 8 x 32 measured ~72 GFLOP/s against ~57 for 4 x 64.
    static func channelVectors(outChannels: Int) -> Int {
        outChannels > 16 ? 2 : 1
    }

    /// `implicitGemm` forces the kernel choice (tests); by default a CPU device takes it for
    /// `implicitGemmMinChannels` input channels or more. `name` labels errors (the checkpoint
    /// tensor). `.fp16` needs a device with cl_khr_fp16.
    public init(context: CLContext, weight: Tensor, bias: Tensor?, depthwise: Bool, implicitGemm: Bool? = nil,
                precision: Precision = .fp32, name: String = "weight") throws {
        let op = depthwise ? "dwconv3x3" : "conv3x3"
        guard weight.shape.count == 4, weight.shape[2] == 3, weight.shape[3] == 3, !depthwise || weight.shape[1] == 1 else {
            throw MilaError.shapeMismatch(op: op, tensor: name, expected: depthwise ? "(C, 1, 3, 3)" : "(Cout, Cin, 3, 3)",
                                          actual: weight.shape)
        }
        let (cout, cin) = (weight.shape[0], weight.shape[1])
        if let bias, bias.shape != [cout] {
            throw MilaError.shapeMismatch(op: op, tensor: name == "weight" ? "bias" : "bias of \(name)", expected: Shape.describe([cout]), actual: bias.shape)
        }
        try context.require(precision)
        if precision == .fp16 { try Precision.checkFitsHalf(weight, name: name) }
        weightShape = weight.shape
        self.depthwise = depthwise
        self.precision = precision
        // 16+ input channels and output channels that fill the tiles: 64+, or whole tiles (the
        // stem's 32 -> 32 on a 16- or 32-column tile).
        let tile = Self.implicitGemmTile(tuned: context.gemmTuning.tile, outChannels: cout)
        let wide = cin >= Self.implicitGemmMinWideChannels && (cout >= 64 || cout % tile.columns == 0)
        let igemm = !depthwise && (implicitGemm ?? (context.variant == .cpu && (cin >= Self.implicitGemmMinChannels || wide)))
        implicitGemmTile = igemm ? tile : nil
        zeros = igemm ? try context.upload([Float](repeating: 0, count: cin)) : nil
        if depthwise {
            paddedOutChannels = cout
            var packed = [Float](repeating: 0, count: 9 * cout)
            for c in 0..<cout { for tap in 0..<9 { packed[tap * cout + c] = weight.data[c * 9 + tap] } }
            self.packed = try context.uploadWeights(packed, precision: precision)
            self.bias = try bias.map { try context.upload($0.data) }
        } else {
            let coutP = roundUp(cout, to: igemm ? tile.columns : 16 * Self.channelVectors(outChannels: cout))
            paddedOutChannels = coutP
            var packed = [Float](repeating: 0, count: 9 * cin * coutP)
            let k = 9 * cin
            for o in 0..<cout {
                // Row r = tap * Cin + i of the GEMM's B: (r, o) in rows, or in o's 16-channel panel.
                let (start, step) = igemm ? ((o / 16) * k * 16 + o % 16, 16) : (o, coutP)
                for i in 0..<cin { for tap in 0..<9 { packed[start + (tap * cin + i) * step] = weight.data[(o * cin + i) * 9 + tap] } }
            }
            self.packed = try context.uploadWeights(packed, precision: precision)
            self.bias = try bias.map { try context.upload($0.data + [Float](repeating: 0, count: coutP - cout)) }
        }
    }
}

extension CLContext {
    /// 3x3 convolution, pad 1, stride 1 or 2, on (B, H, W, C), dense or depthwise by the weights;
    /// bias, activation (none/ReLU, and SiLU for depthwise) and residual fused. A dense
    /// convolution may write a view (a channel slice of a concat buffer); x and residual are dense.
    public func conv3x3(_ x: DeviceTensor, _ weights: Conv3x3Weights, stride: Int, activation: Activation = .none,
                        residual: DeviceTensor? = nil, output: DeviceTensor? = nil) throws -> DeviceTensor {
        let spec = try Conv3x3Spec(input: x.shape, weight: weights.weightShape, bias: weights.bias.map { _ in [weights.outChannels] },
                                   residual: residual?.shape, stride: stride, depthwise: weights.depthwise, activation: activation)
        let op = weights.depthwise ? "dwconv3x3" : "conv3x3"
        let y = try output ?? empty(spec.outputShape)
        guard y.shape == spec.outputShape else {
            throw MilaError.shapeMismatch(op: op, tensor: "output", expected: Shape.describe(spec.outputShape), actual: y.shape)
        }
        try x.requireDense(op, "input")
        try residual?.requireDense(op, "residual")
        if weights.depthwise { try y.requireDense(op, "output") }
        let view: [KernelArgument] = [.int(Int32(y.offset)), .int(Int32(y.pixelStride))]
        var flags: EpilogueFlags = []
        if weights.bias != nil { flags.insert(.bias) }
        if residual != nil { flags.insert(.residual) }
        // Large outputs stream (CPU kernels; conv3x3_igemm only in its final launch, earlier
        // ones store partial sums it reads back).
        if streamsOutput(elements: y.count) { flags.insert(.stream) }
        let spare = y.buffer
        let gpu = variant == .gpu
        let (h, w, ho, wo) = (Int32(spec.height), Int32(spec.width), Int32(spec.outHeight), Int32(spec.outWidth))
        if weights.depthwise && gpu && spec.inChannels % 4 == 0,
           let tile = DepthwiseTile(stride: stride, localMemory: Int(device.localMemory), maxWorkGroup: device.maxWorkGroupSize) {
            let c = spec.inChannels
            let kernel = try self.kernel(.dwconv3x3, "dwconv3x3_tiled", defines: ["VEC=4", "STRIDE=\(stride)", "LC=\(tile.channelGroups)",
                                                                               "LX=\(tile.pixels)", "TY=\(tile.rows)"] + weights.precision.kernelDefines)
            try launch(kernel, global: [tile.channelGroups * ceilDiv(c, 4 * tile.channelGroups), tile.pixels * ceilDiv(spec.outWidth, tile.pixels),
                                        spec.batch * ceilDiv(spec.outHeight, tile.rows)],
                       local: [tile.channelGroups, tile.pixels, 1],
                       arguments: [.int(h), .int(w), .int(Int32(c)), .int(ho), .int(wo),
                                   .buffer(x.buffer), .buffer(weights.packed), .buffer(weights.bias ?? spare),
                                   .buffer(residual?.buffer ?? spare), .buffer(y.buffer), .int(activation.rawValue), .int(flags.rawValue)])
        } else if weights.depthwise {
            let c = spec.inChannels
            let vec = c % 16 == 0 && !gpu ? 16 : (c % 4 == 0 ? 4 : 1)
            let tensors: [KernelArgument] = [.buffer(x.buffer), .buffer(weights.packed), .buffer(weights.bias ?? spare),
                                             .buffer(residual?.buffer ?? spare), .buffer(y.buffer), .int(activation.rawValue), .int(flags.rawValue)]
            if !gpu && stride == 1 {
                // Rows streamed down 4-pixel strips: each input row read once for the three
                // output rows it feeds (Kernels/dwconv3x3.cl).
                let rows = Self.depthwiseRowsPerItem
                let kernel = try self.kernel(.dwconv3x3, "dwconv3x3_rows", defines: ["VEC=\(vec)", "ROWS=\(rows)"] + weights.precision.kernelDefines)
                try launch(kernel, global: [c / vec, ceilDiv(spec.outWidth, 4), spec.batch * ceilDiv(spec.outHeight, rows)],
                           arguments: [.int(h), .int(w), .int(Int32(c)), .int(ho), .int(wo)] + tensors)
            } else if !gpu {
                // 4-pixel strips, each output row's channels walked in turn (Kernels/dwconv3x3.cl).
                // One work-item per work-group, in row-tile order.
                let rows = Self.depthwiseStride2RowsPerItem
                let kernel = try self.kernel(.dwconv3x3, "dwconv3x3_strips_s2",
                                             defines: ["VEC=\(vec)", "ROWS=\(rows)"] + weights.precision.kernelDefines)
                try launch(kernel, global: [spec.batch * ceilDiv(spec.outHeight, rows), ceilDiv(spec.outWidth, 4), 1], local: [1, 1, 1],
                           arguments: [.int(h), .int(w), .int(Int32(c)), .int(ho), .int(wo)] + tensors)
            } else {
                // The GPU variant where dwconv3x3_tiled does not apply (C % 4 != 0): one output
                // pixel per work-item.
                let kernel = try self.kernel(.dwconv3x3, "dwconv3x3", defines: ["VEC=\(vec)"] + weights.precision.kernelDefines)
                try launch(kernel, global: [c / vec, spec.outWidth, spec.batch * spec.outHeight],
                           arguments: [.int(h), .int(w), .int(Int32(c)), .int(ho), .int(wo), .int(Int32(stride))] + tensors)
            }
        } else if let tile = weights.implicitGemmTile {
            // conv3x3.cl needs a VEC for its other kernel; the CPU conv3x3 build serves both.
            let kernel = try self.kernel(.conv3x3, tile.kernelName("conv3x3_igemm"),
                                         defines: directConvDefines(outChannels: 64) + weights.precision.kernelDefines)
            let k = 9 * spec.inChannels, step = Conv3x3Weights.rowsPerLaunch(tileColumns: tile.columns)
            for begin in Swift.stride(from: 0, to: k, by: step) {
                try launch(kernel, global: [ceilDiv(spec.outWidth, tile.rows), spec.batch * spec.outHeight, weights.paddedOutChannels / tile.columns],
                           local: [1, 1, 1],
                           arguments: [.int(h), .int(w), .int(Int32(spec.inChannels)), .int(ho), .int(wo), .int(Int32(spec.outChannels)),
                                       .int(Int32(weights.paddedOutChannels)), .int(Int32(stride)),
                                       .buffer(x.buffer), .buffer(weights.packed), .buffer(weights.bias ?? spare),
                                       .buffer(residual?.buffer ?? spare), .buffer(y.buffer), .int(activation.rawValue), .int(flags.rawValue)]
                               + view + [.buffer(weights.zeros!), .int(Int32(begin)), .int(Int32(min(begin + step, k)))])
            }
        } else if gpu && spec.inChannels >= Conv3x3Weights.tiledMinChannels && device.maxWorkGroupSize >= 256 {
            let kernel = try self.kernel(.conv3x3, "conv3x3_tiled", defines: ["VEC=4", "XPW=1", "COV=1"] + weights.precision.kernelDefines)
            let m = spec.batch * spec.outHeight * spec.outWidth
            try launch(kernel, global: [16 * ceilDiv(spec.outChannels, 64), 16 * ceilDiv(m, 64)], local: [16, 16],
                       arguments: [.int(h), .int(w), .int(Int32(spec.inChannels)), .int(ho), .int(wo), .int(Int32(spec.outChannels)),
                                   .int(Int32(weights.paddedOutChannels)), .int(Int32(stride)),
                                   .buffer(x.buffer), .buffer(weights.packed), .buffer(weights.bias ?? spare),
                                   .buffer(residual?.buffer ?? spare), .buffer(y.buffer), .int(activation.rawValue), .int(flags.rawValue)]
                           + view + [.int(Int32(m))])
        } else {
            let (vec, cov, xpw) = gpu ? (4, 1, 1) : directConvTile(outChannels: spec.outChannels)
            let kernel = try self.kernel(.conv3x3, "conv3x3", defines: ["VEC=\(vec)", "XPW=\(xpw)", "COV=\(cov)"] + weights.precision.kernelDefines)
            try launch(kernel, global: [weights.paddedOutChannels / (vec * cov), ceilDiv(spec.outWidth, xpw), spec.batch * spec.outHeight],
                       arguments: [.int(h), .int(w), .int(Int32(spec.inChannels)), .int(ho), .int(wo), .int(Int32(spec.outChannels)),
                                   .int(Int32(weights.paddedOutChannels)), .int(Int32(stride)),
                                   .buffer(x.buffer), .buffer(weights.packed), .buffer(weights.bias ?? spare),
                                   .buffer(residual?.buffer ?? spare), .buffer(y.buffer), .int(activation.rawValue), .int(flags.rawValue)]
                           + view)
        }
        return y
    }
}

extension CLContext {
    /// Whether `depthwiseConvLayerNorm` runs a depthwise conv of `channels` channels at
    /// `stride` here: the CPU kernels (one launch instead of two; on a GPU the two kernels stay
    /// apart), stride 1, channels a multiple of 16 (every MLLA width) up to 1024 (DWLN_MAX_C).
    public func fusesDepthwiseLayerNorm(channels: Int, stride: Int) -> Bool {
        variant == .cpu && stride == 1 && channels % 16 == 0 && channels <= Self.depthwiseNormMaxChannels
    }

    /// Whether the graph runs the depthwise conv on a height x width map with its LayerNorm in
    /// one launch: where `fusesDepthwiseLayerNorm`, on maps of up to 56 x 56 pixels (every
    /// stage at 224, the last at 1024). From 64 x 64 on the two kernels were faster
    /// (`mila-kernel-bench --only dwln`, PoCL, Zen 4: 64x64x256 0.41 against 0.47-0.60 ms,
    /// 128x128x128 1.45 against 1.52-1.61; 56x56x64 0.070 against 0.066, 14x14x256 0.025
    /// against 0.019).
    public func fusesDepthwiseLayerNorm(channels: Int, height: Int, width: Int) -> Bool {
        fusesDepthwiseLayerNorm(channels: channels, stride: 1) && height * width <= Self.depthwiseNormMaxPixels
    }

    static let depthwiseNormMaxChannels = 1024
    static let depthwiseNormMaxPixels = 56 * 56

    /// A stride-1 depthwise 3x3 conv (bias, activation, residual as `conv3x3`) and the
    /// LayerNorm of its result in one launch (dwconv3x3_strips_ln): writes `output`, the conv,
    /// and `normOutput`, LayerNorm(output), equal bit for bit to `conv3x3` then `layerNorm`.
    /// Only where `fusesDepthwiseLayerNorm`; every tensor dense, `normOutput` apart from the others.
    public func depthwiseConvLayerNorm(_ x: DeviceTensor, _ weights: Conv3x3Weights, activation: Activation = .none,
                                       residual: DeviceTensor? = nil, norm: LayerNormWeights, eps: Float = 1e-5,
                                       output: DeviceTensor? = nil, normOutput: DeviceTensor? = nil) throws -> (DeviceTensor, DeviceTensor) {
        let op = "dwconv3x3+layernorm"
        let spec = try Conv3x3Spec(input: x.shape, weight: weights.weightShape, bias: weights.bias.map { _ in [weights.outChannels] },
                                   residual: residual?.shape, stride: 1, depthwise: weights.depthwise, activation: activation)
        _ = try LayerNormSpec(input: spec.outputShape, weight: [norm.channels], bias: [norm.channels])
        guard weights.depthwise, fusesDepthwiseLayerNorm(channels: spec.inChannels, stride: 1) else {
            throw MilaError.unsupported(op: op, message: "needs a depthwise conv with channels a multiple of 16 on a CPU device")
        }
        let y = try output ?? empty(spec.outputShape), normed = try normOutput ?? empty(spec.outputShape)
        for (name, t) in [("output", y), ("norm output", normed)] where t.shape != spec.outputShape {
            throw MilaError.shapeMismatch(op: op, tensor: name, expected: Shape.describe(spec.outputShape), actual: t.shape)
        }
        try x.requireDense(op, "input")
        try residual?.requireDense(op, "residual")
        try y.requireDense(op, "output")
        try normed.requireDense(op, "norm output")
        guard normed.buffer !== y.buffer, normed.buffer !== x.buffer, normed.buffer !== residual?.buffer else {
            throw MilaError.invalidArgument(op: op, message: "the norm output must not share a buffer with the conv's input, residual or output")
        }
        var flags: EpilogueFlags = []
        if weights.bias != nil { flags.insert(.bias) }
        if residual != nil { flags.insert(.residual) }
        // Both outputs stream together (the kernel normalises from a private copy of out).
        if streamsOutput(elements: normed.count) { flags.insert(.stream) }
        let rows = Self.depthwiseNormRowsPerItem
        let kernel = try self.kernel(.dwconv3x3, "dwconv3x3_strips_ln", defines: ["VEC=16", "ROWS=\(rows)"] + weights.precision.kernelDefines)
        try launch(kernel, global: [spec.batch * ceilDiv(spec.outHeight, rows), ceilDiv(spec.outWidth, 4), 1], local: [1, 1, 1],
                   arguments: [.int(Int32(spec.height)), .int(Int32(spec.width)), .int(Int32(spec.inChannels)),
                               .buffer(x.buffer), .buffer(weights.packed), .buffer(weights.bias ?? y.buffer),
                               .buffer(residual?.buffer ?? y.buffer), .buffer(y.buffer), .int(activation.rawValue), .int(flags.rawValue),
                               .float(eps), .buffer(norm.weight), .buffer(norm.bias), .buffer(normed.buffer)])
        return (y, normed)
    }
}

extension CLContext {
    /// Output rows per work-item of the CPU depthwise kernel at stride 1 (dwconv3x3_rows): the
    /// input rows read per output row are (rows + 2) / rows. 4, 8, 16 and 64 measured alike
    /// within this VM's noise on the MLLA-T maps (kernel bench, Zen 4); 8 keeps 7 row tiles of
    /// the 56-row stage-1 map at 224 for the two cores to share.
    static let depthwiseRowsPerItem = 8

    /// Output rows per work-item of dwconv3x3_strips_s2 (stride 2). Of 1, 2, 4 and 8, 4 measured
    /// fastest on the 1024 maps (by 1-25%) and alike at 224 (kernel bench, PoCL, Zen 4, 4
    /// interleaved rounds).
    static let depthwiseStride2RowsPerItem = 4

    /// Output rows per work-item of dwconv3x3_strips_ln. 1, 2, 4 and 8 measured alike within
    /// this VM's noise on the maps it runs (kernel bench, PoCL, Zen 4, 3 interleaved rounds).
    static let depthwiseNormRowsPerItem = 4

    /// conv3x3's CPU register tile: VEC-wide vectors, COV of them (output channels) x XPW
    /// pixels. With the GEMM's wide tile (AVX-512: 16 float16 accumulators fit) VEC 16 and
    /// `channelVectors`; with a narrow one (AVX2's 16 ymm registers) float8 x 2 x 6 pixels, 12
    /// accumulators like gemm_reg_6x16 (16 float16 spilled there).
    public func directConvTile(outChannels: Int) -> (vec: Int, cov: Int, xpw: Int) {
        if !gemmTuning.tile.isWide { return (8, 2, 6) }
        let cov = Conv3x3Weights.channelVectors(outChannels: outChannels)
        return (16, cov, 16 / cov)
    }

    /// The build defines of `directConvTile`; conv3x3_igemm is built with them too (one
    /// program for both kernels).
    func directConvDefines(outChannels: Int) -> [String] {
        let (vec, cov, xpw) = directConvTile(outChannels: outChannels)
        return ["VEC=\(vec)", "XPW=\(xpw)", "COV=\(cov)"]
    }
}

/// The work-group shape of dwconv3x3_tiled (GPU variant): `channelGroups` float4 channel groups
/// x `pixels` output pixels of a row, `rows` output rows per work-group, from the device's
/// limits: 8 x 16 work-items (128, within every GPU's limit) and 4 rows at stride 1, 2 at
/// stride 2, halved while the input tile does not fit the local memory (or the work-group the
/// device's maximum). Nil when even 1 x 4 x 1 does not fit.
struct DepthwiseTile {
    let channelGroups: Int, pixels: Int, rows: Int

    /// Bytes of the staged input tile.
    static func bytes(channelGroups: Int, pixels: Int, rows: Int, stride: Int) -> Int {
        ((rows - 1) * stride + 3) * ((pixels - 1) * stride + 3) * channelGroups * 16
    }

    init?(stride: Int, localMemory: Int, maxWorkGroup: Int) {
        var (lc, lx, ty) = (8, 16, stride == 1 ? 4 : 2)
        while lc * lx > maxWorkGroup || Self.bytes(channelGroups: lc, pixels: lx, rows: ty, stride: stride) > localMemory / 2 {
            if ty > 1 { ty /= 2 } else if lc > 1 { lc /= 2 } else if lx > 4 { lx /= 2 } else { return nil }
        }
        (channelGroups, pixels, rows) = (lc, lx, ty)
    }
}
