import CCLBlast
import COpenCL
import Foundation
import MilaCore

/// Who computes the GEMM. `register` (gemm_reg) is the CPU kernel, `tiled` (gemm_tiled) our
/// GPU kernel, `clblast` CLBlast's SGEMM followed by gemm_epilogue (it cannot fuse).
/// Default: CPUs `register`, GPUs `clblast`, falling back to `tiled` for the context's life
/// when CLBlast fails on the device; `MILA_GEMM=register|tiled|clblast` forces one (a forced
/// or explicit `clblast` reports its failure instead).
public enum GemmProvider: String, CaseIterable, Sendable {
    case register
    case tiled
    case clblast

    public static let environmentVariable = "MILA_GEMM"

    public static func resolve(for variant: KernelVariant) -> GemmProvider {
        if let raw = ProcessInfo.processInfo.environment[environmentVariable], let forced = GemmProvider(rawValue: raw.lowercased()) {
            return forced
        }
        return variant == .cpu ? .register : .clblast
    }
}

/// Linear-layer weights on the device, packed once from (N, K), with N padded to ldb = N rounded
/// up to 64 by zero columns and the bias padded to ldb, in one of two layouts:
/// - `.panels` (gemm_reg, gemm_tiled): ldb/16 panels of 16 columns, each K x 16 contiguous, so
///   a register tile's weights stream from one sequential run of memory. With rows ldb apart, a
///   16-column strip maps to a few cache sets (all to one for ldb = 1024) and left L1 on every
///   step: 1024^3 ran at 87 GFLOP/s in rows and 152 in panels (Zen 3, PoCL).
/// - `.rows` (CLBlast's row-major SGEMM, and gemm_tiled): (K, ldb) row-major.
/// The kernels take the layout as two strides: element (k, n) is at
/// k * rowStride + (n / 16) * blockStride + n % 16.
/// With `.fp16` the packed weight is stored as half floats (the bias stays float32).
public struct GemmWeights {
    public enum Layout: Sendable {
        case panels
        case rows
    }

    public let inFeatures: Int   // K
    public let outFeatures: Int  // N
    public let leadingDimension: Int
    public let precision: Precision
    public let layout: Layout
    let packed: CLBuffer
    let bias: CLBuffer?
    public var weightShape: [Int] { [outFeatures, inFeatures] }
    /// (rowStride, blockStride) of the layout, the kernels' arguments.
    var strides: [KernelArgument] {
        layout == .rows ? [.int(Int32(leadingDimension)), .int(16)] : [.int(16), .int(Int32(16 * inFeatures))]
    }

    /// Bytes of the packed weight and bias on the device.
    public var bytes: Int { inFeatures * leadingDimension * precision.bytesPerWeight + (bias == nil ? 0 : leadingDimension * 4) }

    /// `name` labels errors (the checkpoint tensor). `.fp16` needs a device with cl_khr_fp16.
    /// `provider`: who will run them (default: the context's), which picks the layout: rows for
    /// CLBlast, panels otherwise.
    public init(context: CLContext, weight: Tensor, bias: Tensor?, precision: Precision = .fp32, name: String = "weight",
                provider: GemmProvider? = nil) throws {
        guard weight.shape.count == 2 else {
            throw MilaError.shapeMismatch(op: "gemm", tensor: name, expected: "(out, in)", actual: weight.shape)
        }
        let (n, k) = (weight.shape[0], weight.shape[1])
        if let bias, bias.shape != [n] {
            throw MilaError.shapeMismatch(op: "gemm", tensor: "bias of \(name)", expected: Shape.describe([n]), actual: bias.shape)
        }
        try context.require(precision)
        if precision == .fp16 { try Precision.checkFitsHalf(weight, name: name) }
        let ldb = roundUp(n, to: 64)
        let layout: Layout = (provider ?? GemmProvider.resolve(for: context.variant)) == .clblast ? .rows : .panels
        var packed = [Float](repeating: 0, count: k * ldb)
        weight.data.withUnsafeBufferPointer { w in
            packed.withUnsafeMutableBufferPointer { p in
                for o in 0..<n {
                    let (start, step) = layout == .rows ? (o, ldb) : ((o / 16) * k * 16 + o % 16, 16)
                    for i in 0..<k { p[start + i * step] = w[o * k + i] }
                }
            }
        }
        (inFeatures, outFeatures, leadingDimension, self.layout) = (k, n, ldb, layout)
        self.precision = precision
        self.packed = try context.uploadWeights(packed, precision: precision)
        self.bias = try bias.map { try context.upload($0.data + [Float](repeating: 0, count: ldb - n)) }
    }
}

extension CLContext {
    /// y = act(x W^T + b) [* multiply] [+ residual]; x (..., K), output (..., N).
    public func gemm(_ x: DeviceTensor, _ weights: GemmWeights, activation: Activation = .none,
                     multiply: DeviceTensor? = nil, residual: DeviceTensor? = nil,
                     provider: GemmProvider? = nil, output: DeviceTensor? = nil) throws -> DeviceTensor {
        let spec = try GemmSpec(input: x.shape, weight: weights.weightShape, bias: weights.bias.map { _ in [weights.outFeatures] },
                                residual: residual?.shape, multiply: multiply?.shape)
        let y = try output ?? empty(spec.outputShape)
        guard y.shape == spec.outputShape else {
            throw MilaError.shapeMismatch(op: "gemm", tensor: "output", expected: Shape.describe(spec.outputShape), actual: y.shape)
        }
        var flags: EpilogueFlags = []
        if weights.bias != nil { flags.insert(.bias) }
        if multiply != nil { flags.insert(.multiply) }
        if residual != nil { flags.insert(.residual) }
        if streamsOutput(elements: y.count) { flags.insert(.stream) }
        let (m, n, k) = (Int32(spec.rows), Int32(spec.outFeatures), Int32(spec.inFeatures))
        let spare = y.buffer  // bound to unused epilogue operands; never read
        let epilogue: [KernelArgument] = [
            .buffer(weights.bias ?? spare), .buffer(multiply?.buffer ?? spare), .buffer(residual?.buffer ?? spare),
        ]
        // CLBlast's SGEMM reads float32 weights only: half weights take our tiled kernel.
        let half = weights.precision == .fp16
        let resolved = GemmProvider.resolve(for: variant)
        let byDefault = provider == nil && ProcessInfo.processInfo.environment[GemmProvider.environmentVariable] == nil
        var chosen = provider ?? (resolved == .clblast && (half || (byDefault && clblastUnavailable != nil)) ? .tiled : resolved)
        // gemm_tiled's 16 x 16 work-groups need 256 work-items; below that limit gemm_reg
        // (one work-item per group) is the portable fallback.
        if chosen == .tiled && provider == nil && device.maxWorkGroupSize < 256 { chosen = .register }
        if half && chosen == .clblast {
            throw MilaError.unsupported(op: "gemm", message: "the CLBlast provider needs float32 weights; fp16 weights run on gemm_reg or gemm_tiled")
        }
        if chosen == .clblast && weights.layout != .rows {
            throw MilaError.unsupported(op: "gemm", message: "the CLBlast provider needs row-major weights; these were packed in panels for gemm_reg (pack them with provider: .clblast)")
        }
        let defines = weights.precision.kernelDefines
        switch chosen {
        case .register:
            var tuning = gemmTuning
            // An output of 16 columns or fewer (the forget gate's projection to one value per
            // head) takes the 16-column tile whatever the tuned one: a 64-column tile computed
            // 32x its FLOPs and activations at N = 2 (MILA-FG-T at 1024: 28 ms in linear+softplus).
            if spec.outFeatures <= GemmTile.narrow.columns { tuning.tile = .narrow }
            let plan = tuning.plan(rows: spec.rows, columns: spec.outFeatures, depth: spec.inFeatures, computeUnits: device.computeUnits)
            let kernel = try self.kernel(.gemm, tuning.tile.kernelName, defines: defines)
            let tiles = [ceilDiv(spec.outFeatures, tuning.tile.columns * plan.colTiles), ceilDiv(spec.rows, tuning.tile.rows * plan.rowTiles)]
            let rowsFirst = spec.outFeatures > spec.rows
            // K panels accumulate their partial sums in y, so y must not also be read by the
            // epilogue (an in-place residual or multiply): then K runs in one panel.
            let aliased = residual?.buffer === y.buffer || multiply?.buffer === y.buffer
            let step = aliased ? spec.inFeatures : plan.panelRows
            for begin in Swift.stride(from: 0, to: spec.inFeatures, by: step) {
                try launch(kernel, global: rowsFirst ? tiles.reversed() : tiles, local: [1, 1],
                           arguments: [.int(m), .int(n), .int(k)] + weights.strides + [.buffer(x.buffer), .buffer(weights.packed)]
                               + epilogue + [.buffer(y.buffer), .int(activation.rawValue), .int(flags.rawValue), .int(rowsFirst ? 1 : 0),
                                             .int(Int32(begin)), .int(Int32(min(begin + step, spec.inFeatures))),
                                             .int(Int32(plan.rowTiles)), .int(Int32(plan.colTiles))])
            }
        case .tiled:
            let kernel = try self.kernel(.gemm, "gemm_tiled", defines: defines)
            try launch(kernel, global: [16 * ceilDiv(spec.outFeatures, 64), 16 * ceilDiv(spec.rows, 64)], local: [16, 16],
                       arguments: [.int(m), .int(n), .int(k)] + weights.strides + [.buffer(x.buffer), .buffer(weights.packed)]
                           + epilogue + [.buffer(y.buffer), .int(activation.rawValue), .int(flags.rawValue)])
        case .clblast:
            do {
                try clblastSgemm(m: spec.rows, n: spec.outFeatures, k: spec.inFeatures, a: x.buffer, b: weights.packed,
                                 ldb: weights.leadingDimension, c: y.buffer)
            } catch let error where byDefault {
                markCLBlastUnavailable(error)
                return try gemm(x, weights, activation: activation, multiply: multiply, residual: residual, provider: .tiled, output: y)
            }
            if !flags.isEmpty || activation != .none {
                let kernel = try self.kernel(.gemm, "gemm_epilogue")
                try launch(kernel, global: [spec.outFeatures, spec.rows],
                           arguments: [.int(m), .int(n)] + epilogue + [.buffer(y.buffer), .int(activation.rawValue), .int(flags.rawValue)])
            }
        }
        return y
    }

    /// C (M, N) = A (M, K) B (K, ldb)[:, :N], row-major, through CLBlast on this queue.
    private func clblastSgemm(m: Int, n: Int, k: Int, a: CLBuffer, b: CLBuffer, ldb: Int, c: CLBuffer) throws {
        var queue: cl_command_queue? = rawQueue
        var event: cl_event?
        let status = withQueueLock {
            noteUnrecordableWork()
            let status = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, m, n, k, 1.0,
                                      a.mem, 0, k, b.mem, 0, ldb, 0.0, c.mem, 0, n, &queue, &event)
            if let event { recordEvents(CLEvent(event), name: "CLBlastSgemm") }  // released with the wrapper unless recorded
            return status
        }
        guard status == CLBlastSuccess else {
            throw CLError(call: "CLBlastSgemm", status: status.rawValue,
                          context: "M=\(m) N=\(n) K=\(k); CLBlast status \(status.rawValue)")
        }
    }
}

/// gemm_reg's register tile: `rows` x `columns` accumulators per tile, one kernel each in
/// gemm.cl (4x64 is `gemm_reg`, the others `gemm_reg_<rows>x<columns>`). Which one fits a
/// device's vector registers is measured by `GemmTuner`: 4x64 holds 16 zmm on AVX-512; on AVX2's
/// sixteen ymm registers it spills, and 6x16 or 3x32 (12 accumulators) fit.
public struct GemmTile: Codable, Hashable, Sendable, CustomStringConvertible {
    public let rows: Int
    public let columns: Int

    public static let wide = GemmTile(rows: 4, columns: 64)
    public static let narrow = GemmTile(rows: 6, columns: 16)
    /// The tiles gemm.cl has kernels for.
    public static let all = [wide, narrow, GemmTile(rows: 3, columns: 32), GemmTile(rows: 8, columns: 32)]

    public var kernelName: String { kernelName("gemm_reg") }
    /// The entry point of a tiled kernel family for this tile: `base` for 4x64, else
    /// `base_<rows>x<columns>` (gemm_reg, conv3x3_igemm).
    public func kernelName(_ base: String) -> String { self == .wide ? base : "\(base)_\(rows)x\(columns)" }
    /// 16 float16 accumulators (16 zmm): a tile for AVX-512's 32 vector registers; the others
    /// hold 12 and fit AVX2's sixteen. The convolutions choose their tiles by it.
    public var isWide: Bool { rows * columns >= 256 }
    public var description: String { "\(rows)x\(columns)" }

    /// "6x16" -> one of `all`; nil for anything else.
    public init?(parsing text: String) {
        guard let tile = Self.all.first(where: { $0.description == text.lowercased() }) else { return nil }
        self = tile
    }

    init(rows: Int, columns: Int) {
        (self.rows, self.columns) = (rows, columns)
    }

    private enum CodingKeys: String, CodingKey { case rows, columns }

    /// Only the tiles gemm.cl has kernels for (a cached tuning from elsewhere is refused).
    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let tile = GemmTile(rows: try container.decode(Int.self, forKey: .rows), columns: try container.decode(Int.self, forKey: .columns))
        guard Self.all.contains(tile) else {
            throw DecodingError.dataCorruptedError(forKey: .rows, in: container, debugDescription: "gemm.cl has no \(tile) register tile")
        }
        self = tile
    }
}

/// How gemm_reg computes on a device: its register `tile`; `rowTiles` tiles down and
/// `colTiles` across per work-item (one B panel reused down the rows, the A rows reused across
/// the panels: fewer, longer work-items where K is short, and rows written whole where the
/// output streams to memory), and `panelRows` K rows per launch (a panel of panelRows x tile
/// columns weights per work-item that stays in cache; partial sums go through the output).
/// Chosen per device by `GemmTuner` (cached beside the kernel binaries), else the defaults.
public struct GemmTuning: Codable, Equatable, Sendable {
    public var tile: GemmTile
    public var rowTiles: Int
    public var panelRows: Int
    /// Row tiles only for K up to this depth (longer K amortises a work-item's start already).
    public var rowTilesMaxDepth: Int
    public var colTiles: Int
    /// Column tiles only for outputs of at least this many elements (ones that leave the caches).
    public var colTilesMinOutput: Int

    public static let defaults = GemmTuning(rowTiles: 1, panelRows: 1024, rowTilesMaxDepth: 256, colTiles: 1, colTilesMinOutput: 1 << 21)

    /// The defaults for a context that has not been tuned (tuning off, or never asked): the
    /// 6x16 tile on a CPU whose native vectors are narrower than 16 floats (AVX2: the 4x64
    /// tile's accumulators spill there, 2x slower), else `defaults`.
    public static func defaults(for device: CLDeviceInfo, variant: KernelVariant) -> GemmTuning {
        var tuning = defaults
        if variant == .cpu && device.isCPU && (1..<16).contains(device.nativeFloatWidth) { tuning.tile = .narrow }
        return tuning
    }

    public init(tile: GemmTile = .wide, rowTiles: Int, panelRows: Int, rowTilesMaxDepth: Int, colTiles: Int = 1, colTilesMinOutput: Int = 1 << 21) {
        self.tile = tile
        self.rowTiles = rowTiles
        self.panelRows = panelRows
        self.rowTilesMaxDepth = rowTilesMaxDepth
        self.colTiles = colTiles
        self.colTilesMinOutput = colTilesMinOutput
    }

    /// The launch shape for one GEMM: row tiles where K is short, column tiles (at most the
    /// panels there are) where the output is large, each halved until every compute unit has
    /// at least 8 work-items (stage 3 at 224 has 49 rows).
    func plan(rows: Int, columns: Int, depth: Int, computeUnits: Int) -> (rowTiles: Int, colTiles: Int, panelRows: Int) {
        var down = depth <= rowTilesMaxDepth ? max(1, rowTiles) : 1
        var across = rows * columns >= colTilesMinOutput ? min(max(1, colTiles), ceilDiv(columns, tile.columns)) : 1
        let enough = 8 * max(1, computeUnits)
        func workItems() -> Int { ceilDiv(columns, tile.columns * across) * ceilDiv(rows, tile.rows * down) }
        while across > 1 && workItems() < enough { across /= 2 }
        while down > 1 && workItems() < enough { down /= 2 }
        return (down, across, max(16, panelRows))
    }
}
