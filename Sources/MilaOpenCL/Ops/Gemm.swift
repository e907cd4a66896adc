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

/// Linear-layer weights on the device, packed once: (N, K) -> (K, ldb) with ldb = N rounded up
/// to 64 and zero columns, bias padded to ldb. With `.fp16` the packed weight is stored as
/// half floats (the bias stays float32).
public struct GemmWeights {
    public let inFeatures: Int   // K
    public let outFeatures: Int  // N
    public let leadingDimension: Int
    public let precision: Precision
    let packed: CLBuffer
    let bias: CLBuffer?
    public var weightShape: [Int] { [outFeatures, inFeatures] }
    /// Bytes of the packed weight and bias on the device.
    public var bytes: Int { inFeatures * leadingDimension * precision.bytesPerWeight + (bias == nil ? 0 : leadingDimension * 4) }

    /// `name` labels errors (the checkpoint tensor). `.fp16` needs a device with cl_khr_fp16.
    public init(context: CLContext, weight: Tensor, bias: Tensor?, precision: Precision = .fp32, name: String = "weight") throws {
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
        var packed = [Float](repeating: 0, count: k * ldb)
        for o in 0..<n { for i in 0..<k { packed[i * ldb + o] = weight.data[o * k + i] } }
        (inFeatures, outFeatures, leadingDimension) = (k, n, ldb)
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
        let defines = weights.precision.kernelDefines
        switch chosen {
        case .register:
            let plan = gemmTuning.plan(rows: spec.rows, columns: spec.outFeatures, depth: spec.inFeatures, computeUnits: device.computeUnits)
            let kernel = try self.kernel(.gemm, "gemm_reg", defines: defines)
            let tiles = [ceilDiv(spec.outFeatures, 64 * plan.colTiles), ceilDiv(spec.rows, 4 * plan.rowTiles)]
            let rowsFirst = spec.outFeatures > spec.rows
            // K panels accumulate their partial sums in y, so y must not also be read by the
            // epilogue (an in-place residual or multiply): then K runs in one panel.
            let aliased = residual?.buffer === y.buffer || multiply?.buffer === y.buffer
            let step = aliased ? spec.inFeatures : plan.panelRows
            for begin in Swift.stride(from: 0, to: spec.inFeatures, by: step) {
                try launch(kernel, global: rowsFirst ? tiles.reversed() : tiles, local: [1, 1],
                           arguments: [.int(m), .int(n), .int(k), .int(Int32(weights.leadingDimension)), .buffer(x.buffer), .buffer(weights.packed)]
                               + epilogue + [.buffer(y.buffer), .int(activation.rawValue), .int(flags.rawValue), .int(rowsFirst ? 1 : 0),
                                             .int(Int32(begin)), .int(Int32(min(begin + step, spec.inFeatures))),
                                             .int(Int32(plan.rowTiles)), .int(Int32(plan.colTiles))])
            }
        case .tiled:
            let kernel = try self.kernel(.gemm, "gemm_tiled", defines: defines)
            try launch(kernel, global: [16 * ceilDiv(spec.outFeatures, 64), 16 * ceilDiv(spec.rows, 64)], local: [16, 16],
                       arguments: [.int(m), .int(n), .int(k), .int(Int32(weights.leadingDimension)), .buffer(x.buffer), .buffer(weights.packed)]
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

/// How gemm_reg splits its work on a device: `rowTiles` 4 x 64 tiles down and `colTiles`
/// across per work-item (one B panel reused down the rows, the A rows reused across the
/// panels: fewer, longer work-items where K is short, and rows written whole where the output
/// streams to memory), and `panelRows` K rows per launch (a panel of panelRows x 64 weights
/// per work-item that stays in cache; partial sums go through the output). Chosen per device
/// by `GemmTuner` (cached beside the kernel binaries), else the defaults.
public struct GemmTuning: Codable, Equatable, Sendable {
    public var rowTiles: Int
    public var panelRows: Int
    /// Row tiles only for K up to this depth (longer K amortises a work-item's start already).
    public var rowTilesMaxDepth: Int
    public var colTiles: Int
    /// Column tiles only for outputs of at least this many elements (ones that leave the caches).
    public var colTilesMinOutput: Int

    public static let defaults = GemmTuning(rowTiles: 1, panelRows: 1024, rowTilesMaxDepth: 256, colTiles: 1, colTilesMinOutput: 1 << 21)

    public init(rowTiles: Int, panelRows: Int, rowTilesMaxDepth: Int, colTiles: Int = 1, colTilesMinOutput: Int = 1 << 21) {
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
        var across = rows * columns >= colTilesMinOutput ? min(max(1, colTiles), ceilDiv(columns, 64)) : 1
        let enough = 8 * max(1, computeUnits)
        while across > 1 && ceilDiv(columns, 64 * across) * ceilDiv(rows, 4 * down) < enough { across /= 2 }
        while down > 1 && ceilDiv(columns, 64 * across) * ceilDiv(rows, 4 * down) < enough { down /= 2 }
        return (down, across, max(16, panelRows))
    }
}
