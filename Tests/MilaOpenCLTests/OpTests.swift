import Foundation
import MilaCore
import MilaOpenCL
import MilaReference
import Testing

// Every op against its Float64 CPU reference on random inputs of awkward sizes: odd H and W,
// channel counts that are not multiples of the vector width or work-group size, L = 1, stride 2
// on odd sizes. Each variant (cpu, gpu) runs on every hardware implementation that is here
// (PoCL and Intel's runtime in CI; OclgrindTests runs small cases on the simulator).

@Suite("GEMM") struct GemmTests {
    static let cases: [GemmCase] = [
        GemmCase(m: 1, k: 1, n: 1),
        GemmCase(m: 5, k: 3, n: 7, activation: .relu),
        GemmCase(m: 197, k: 65, n: 150, activation: .gelu, residual: true, multiply: true),
        GemmCase(m: 63, k: 128, n: 64, activation: .silu, multiply: true),
        GemmCase(m: 130, k: 257, n: 200, activation: .relu, residual: true),
        GemmCase(m: 49, k: 512, n: 130, activation: .gelu, bias: false),
        GemmCase(m: 196, k: 256, n: 512, activation: .gelu),
        GemmCase(m: 7, k: 2048, n: 33, residual: true),
    ]

    @Test("own kernels", arguments: onImplementations(cases), [GemmProvider.register, .tiled])
    func ownKernels(_ c: Targeted<GemmCase>, provider: GemmProvider) throws {
        try checkGemm(try c.context(), c.value, provider: provider)
    }

    @Test("CLBlast provider with the epilogue kernel", arguments: onImplementations([cases[2], cases[4]]))
    func clblast(_ c: Targeted<GemmCase>) throws {
        try checkGemm(try c.context(), c.value, provider: .clblast)
    }

    /// The GPU default is CLBlast; once CLBlast is marked failed on a context (what gemm does
    /// when a CLBlast call fails), the default runs gemm_tiled, still exact, while an explicit
    /// `.clblast` still goes to CLBlast. A fresh context, so no other test sees the mark.
    @Test(.enabled(if: Implementation.pocl.isPresent, Implementation.pocl.missing))
    func clblastFailureFallsBackToTheTiledKernel() throws {
        guard ProcessInfo.processInfo.environment[GemmProvider.environmentVariable] == nil else { return }
        let context = try CLContext(device: Implementation.pocl.device!, variant: .gpu)
        try checkGemm(context, Self.cases[2], provider: nil)
        #expect(context.clblastUnavailable == nil)
        #expect(!context.launchedKernelNames.contains("gemm_tiled"), "\(context.launchedKernelNames)")
        struct Failure: Error, CustomStringConvertible { var description: String { "CLBlastSgemm: status -2048" } }
        context.markCLBlastUnavailable(Failure())
        #expect(context.clblastUnavailable == "CLBlastSgemm: status -2048")
        try checkGemm(context, Self.cases[4], provider: nil)
        #expect(context.launchedKernelNames.contains("gemm_tiled"), "\(context.launchedKernelNames)")
        try checkGemm(context, Self.cases[1], provider: .clblast)
    }

    /// gemm_reg's register tiles and work splits (several tiles per work-item, K in panels
    /// through the output) against the reference, and bit for bit against the unsplit 4x64
    /// kernel: every tile sums over K in the same order, and a partial sum round-trips float32 exactly. An in-place
    /// residual (output = residual) runs in one panel and is still right. Fresh contexts, so
    /// the shared ones keep their tuning.
    @Test(arguments: [Implementation.pocl, .intel].filter(\.isPresent))
    func registerKernelSplits(_ implementation: Implementation) throws {
        let plain = try CLContext(device: implementation.device!, variant: .cpu)
        plain.useGemmTuning(GemmTuning(rowTiles: 1, panelRows: 1 << 20, rowTilesMaxDepth: 1 << 20))
        let tiles = GemmTile.all
        #expect(tiles.count == 4, "each register tile below gets one split")
        let splits = [GemmTuning(tile: tiles[0], rowTiles: 2, panelRows: 16, rowTilesMaxDepth: 1 << 20),
                      GemmTuning(tile: tiles[1], rowTiles: 4, panelRows: 48, rowTilesMaxDepth: 300, colTiles: 2, colTilesMinOutput: 1),
                      GemmTuning(tile: tiles[2], rowTiles: 8, panelRows: 1000, rowTilesMaxDepth: 64, colTiles: 4, colTilesMinOutput: 5000),
                      GemmTuning(tile: tiles[3], rowTiles: 1, panelRows: 100, rowTilesMaxDepth: 0, colTiles: 8, colTilesMinOutput: 0),
                      GemmTuning(tile: tiles[1], rowTiles: 1, panelRows: 1 << 20, rowTilesMaxDepth: 0)]
        for tuning in splits {
            let context = try CLContext(device: implementation.device!, variant: .cpu)
            context.useGemmTuning(tuning)
            for c in Self.cases + [GemmCase(m: 3137, k: 64, n: 70, activation: .gelu, residual: true)] {
                try checkGemm(context, c, provider: .register)
                let outputs = try registerGemmOutputs(c, on: [context, plain], label: "split")
                #expect(outputs[0] == outputs[1], "\(c.testDescription) with \(tuning)")
            }
            let c = GemmCase(m: 33, k: 300, n: 65, residual: true)
            let x = try random([c.m, c.k], "in place x"), w = try random([c.n, c.k], "in place w"), r = try random([c.m, c.n], "in place r")
            let expected = try Reference.gemm(x, weight: w, bias: nil, activation: .none, residual: r)
            let inPlace = try context.upload(r)
            _ = try context.gemm(try context.upload(x), try GemmWeights(context: context, weight: w, bias: nil), residual: inPlace,
                                 provider: .register, output: inPlace)
            expectClose(try context.download(inPlace), expected, Tolerances.accumulation, "in-place residual with \(tuning)")
        }
    }

    /// An output of 16 columns or fewer (the forget gate's projection, N = heads) runs on the
    /// 16-column tile whatever the tuned one, and stays exact; 17 columns keep the tuned tile.
    @Test(arguments: [Implementation.pocl, .intel].filter(\.isPresent))
    func narrowOutputsTakeTheSixteenColumnTile(_ implementation: Implementation) throws {
        let wide = try CLContext(device: implementation.device!, variant: .cpu)
        wide.useGemmTuning(GemmTuning(tile: .wide, rowTiles: 2, panelRows: 1 << 20, rowTilesMaxDepth: 1 << 20))
        for c in [GemmCase(m: 301, k: 64, n: 2, activation: .softplus), GemmCase(m: 33, k: 130, n: 16, residual: true)] {
            try checkGemm(wide, c, provider: .register)
        }
        #expect(wide.launchedKernelNames == ["gemm_reg_6x16"], "\(wide.launchedKernelNames)")
        try checkGemm(wide, GemmCase(m: 9, k: 8, n: 17, activation: .relu), provider: .register)
        #expect(wide.launchedKernelNames.contains("gemm_reg"), "\(wide.launchedKernelNames)")
    }

    /// Non-temporal stores (EPI_STREAM, taken by outputs of `streamMinBytes` or more) give the
    /// same bits as plain stores: gemm_reg with ragged columns (rows not 64-byte aligned take the
    /// fallback store), K in panels (partial sums stored plainly, the final panel streamed),
    /// conv3x3_igemm, conv3x3 and the depthwise kernels (dwconv3x3_rows at stride 1,
    /// dwconv3x3_strips_s2 at stride 2, dwconv3x3_strips_ln with its LayerNorm). Threshold 0
    /// streams every output here; .max streams none.
    @Test(arguments: [Implementation.pocl, .intel].filter(\.isPresent))
    func streamingStoresMatchPlainStores(_ implementation: Implementation) throws {
        func context(streaming: Bool, panelRows: Int) throws -> CLContext {
            let context = try CLContext(device: implementation.device!, variant: .cpu)
            context.useGemmTuning(GemmTuning(rowTiles: 2, panelRows: panelRows, rowTilesMaxDepth: 1 << 20))
            context.streamMinBytes = streaming ? 0 : .max
            return context
        }
        for panelRows in [1 << 20, 48] {
            let (streamed, plain) = (try context(streaming: true, panelRows: panelRows), try context(streaming: false, panelRows: panelRows))
            #expect(streamed.streamsOutput(elements: 1) && !plain.streamsOutput(elements: 1 << 30))
            for c in Self.cases + [GemmCase(m: 67, k: 130, n: 1030, activation: .gelu, residual: true)] {
                try checkGemm(streamed, c, provider: .register)
                let outputs = try registerGemmOutputs(c, on: [streamed, plain], label: "stream")
                #expect(outputs[0] == outputs[1], "\(c.testDescription), K panels of \(panelRows)")
            }
        }
        let streamed = try context(streaming: true, panelRows: 1 << 20), plain = try context(streaming: false, panelRows: 1 << 20)
        let convolutions = ConvolutionTests.dense.map { ($0, false) } + ConvolutionTests.dense.filter { $0.inChannels >= 16 }.map { ($0, true) }
            + ConvolutionTests.depthwise.map { ($0, false) }
        for (c, igemm) in convolutions {
            try checkConv(streamed, c, implicitGemm: c.depthwise ? nil : igemm)
            let cout = c.depthwise ? c.inChannels : c.outChannels
            let x = try random([c.batch, c.height, c.width, c.inChannels], "stream conv x")
            let w = try random(c.depthwise ? [cout, 1, 3, 3] : [cout, c.inChannels, 3, 3], "stream conv w", in: -0.5...0.5)
            let b = try random([cout], "stream conv b")
            let outShape = [c.batch, Shape.conv3x3Output(c.height, stride: c.stride), Shape.conv3x3Output(c.width, stride: c.stride), cout]
            let r = try random(outShape, "stream conv r")
            func run(_ on: CLContext) throws -> [Float] {
                let weights = try Conv3x3Weights(context: on, weight: w, bias: b, depthwise: c.depthwise, implicitGemm: c.depthwise ? nil : igemm)
                return try on.download(try on.conv3x3(try on.upload(x), weights, stride: c.stride, activation: .relu,
                                                      residual: try on.upload(r))).data
            }
            #expect(try run(streamed) == run(plain), "\(c.testDescription) igemm=\(igemm)")
        }
        // dwconv3x3_strips_ln streams both outputs (checked against the reference and, bit for
        // bit, against the two kernels, which stream too).
        try checkDepthwiseNorm(streamed, ConvCase(batch: 2, height: 9, width: 7, inChannels: 32, outChannels: 32, stride: 1,
                                                  depthwise: true, residual: true))
    }

    /// The tuning pass writes its choice beside the kernel binaries and a later context reads
    /// it back instead of timing again (shown by planting a choice no timing would make).
    @Test(.enabled(if: Implementation.pocl.isPresent, Implementation.pocl.missing))
    func tuningIsCachedPerDevice() throws {
        guard ProcessInfo.processInfo.environment[GemmTuner.environmentVariable] == nil else { return }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mila-tuning-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let cache = ProgramDiskCache(folder: folder)
        let first = try CLContext(device: Implementation.pocl.device!, variant: .cpu)
        let tuned = GemmTuner.prepare(first, cache: cache)
        #expect(first.gemmTuning == tuned)
        #expect(GemmTuner.rowTileCandidates.contains(tuned.rowTiles) && GemmTuner.panelCandidates.contains(tuned.panelRows)
                && GemmTuner.colTileCandidates.contains(tuned.colTiles))
        let file = GemmTuner.cacheFile(for: first, in: cache)
        #expect(try JSONDecoder().decode(GemmTuning.self, from: Data(contentsOf: file)) == tuned)
        let planted = GemmTuning(tile: GemmTile(parsing: "3x32")!, rowTiles: 8, panelRows: 777, rowTilesMaxDepth: 99, colTiles: 2, colTilesMinOutput: 12345)
        try JSONEncoder().encode(planted).write(to: file)
        let second = try CLContext(device: Implementation.pocl.device!, variant: .cpu)
        #expect(GemmTuner.prepare(second, cache: cache) == planted)
        #expect(second.gemmTuning == planted)
        // A tile gemm.cl has no kernel for is refused, and the pass times again.
        var foreign = try JSONSerialization.jsonObject(with: JSONEncoder().encode(planted)) as! [String: Any]
        foreign["tile"] = ["rows": 5, "columns": 24]
        try JSONSerialization.data(withJSONObject: foreign).write(to: file)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(GemmTuning.self, from: Data(contentsOf: file)) }
        let third = try CLContext(device: Implementation.pocl.device!, variant: .cpu)
        #expect(GemmTile.all.contains(GemmTuner.prepare(third, cache: cache).tile))
        let gpu = try CLContext(device: Implementation.pocl.device!, variant: .gpu)
        #expect(GemmTuner.prepare(gpu, cache: cache) == .defaults, "gemm_reg is the CPU kernel: no tuning on the GPU variant")
        // A simulator is never timed (Oclgrind would take hours over the candidates).
        if let simulator = Implementation.oclgrind.device {
            let context = try CLContext(device: simulator, variant: .cpu)
            #expect(GemmTuner.prepare(context, cache: cache) == context.gemmTuning)
            #expect(!FileManager.default.fileExists(atPath: GemmTuner.cacheFile(for: context, in: cache).path))
        }
    }

    /// The tuning pass leaves the device's default tile only for a clear gain.
    @Test func tilePassKeepsTheDefaultInANearTie() {
        let wide = GemmTile.wide, narrow = GemmTile.narrow
        #expect(GemmTuner.pick([(wide, 1.00), (narrow, 0.97)], incumbent: wide, margin: 0.05) == wide)
        #expect(GemmTuner.pick([(wide, 1.00), (narrow, 0.90)], incumbent: wide, margin: 0.05) == narrow)
        #expect(GemmTuner.pick([(narrow, 0.99), (wide, 1.00)], incumbent: narrow, margin: 0.05) == narrow)
        #expect(GemmTuner.pick([(1, 3.0), (2, 2.0), (4, 2.5)], incumbent: 1, margin: 0) == 2)
        #expect(GemmTuner.pick([(2, 2.0), (4, 1.5)], incumbent: 1, margin: 0.05) == 4, "an incumbent that was not timed does not hold")
    }

    /// An untuned CPU context starts from the tile its native vector width suits (6x16 below 16
    /// floats: AVX2), a GPU-variant one from the 4x64 defaults.
    @Test(arguments: [Implementation.pocl, .intel].filter(\.isPresent))
    func untunedTileFollowsTheVectorWidth(_ implementation: Implementation) throws {
        guard ProcessInfo.processInfo.environment["MILA_GEMM_TILE"] == nil else { return }
        let device = try #require(implementation.device)
        #expect([4, 8, 16].contains(device.nativeFloatWidth), "\(device.name): native float width \(device.nativeFloatWidth)")
        let cpu = try CLContext(device: device, variant: .cpu)
        #expect(cpu.gemmTuning.tile == (device.nativeFloatWidth >= 16 ? .wide : .narrow))
        #expect(try CLContext(device: device, variant: .gpu).gemmTuning == .defaults)
    }

    /// Weights packed for one provider: panels for gemm_reg and gemm_tiled, rows for CLBlast;
    /// gemm_reg and gemm_tiled read both (the GPU default's fallback runs on CLBlast's rows), and CLBlast
    /// refuses panels in one line instead of reading them as rows.
    @Test(arguments: [Implementation.pocl, .intel].filter(\.isPresent))
    func weightLayouts(_ implementation: Implementation) throws {
        let context = try CLContext(device: implementation.device!, variant: .cpu)
        let x = try random([37, 70], "layout x"), w = try random([90, 70], "layout w", in: -0.5...0.5), b = try random([90], "layout b")
        let expected = try Reference.gemm(x, weight: w, bias: b, activation: .silu)
        let panels = try GemmWeights(context: context, weight: w, bias: b)
        let rows = try GemmWeights(context: context, weight: w, bias: b, provider: .clblast)
        #expect(panels.layout == .panels && rows.layout == .rows)
        let input = try context.upload(x)
        for (weights, provider) in [(panels, GemmProvider.register), (panels, .tiled), (rows, .register), (rows, .tiled), (rows, .clblast)] {
            expectClose(try context.download(try context.gemm(input, weights, activation: .silu, provider: provider)), expected,
                        Tolerances.accumulation, "\(weights.layout) weights on \(provider)")
        }
        #expect(throws: MilaError.unsupported(op: "gemm", message: "the CLBlast provider needs row-major weights; these were packed in panels for gemm_reg (pack them with provider: .clblast)")) {
            try context.gemm(input, panels, provider: .clblast)
        }
    }

    @Test func rejectsMismatchedShapes() throws {
        let context = try TestDevice.context()
        let weights = try GemmWeights(context: context, weight: try Tensor(zeros: [4, 6]), bias: nil)
        let x = try context.upload(try Tensor(zeros: [3, 5]))
        #expect(throws: MilaError.shapeMismatch(op: "gemm", tensor: "weight", expected: "(4, 5)", actual: [4, 6])) {
            try context.gemm(x, weights)
        }
        let good = try context.upload(try Tensor(zeros: [3, 6]))
        let residual = try context.upload(try Tensor(zeros: [3, 5]))
        #expect(throws: MilaError.shapeMismatch(op: "gemm", tensor: "residual", expected: "(3, 4)", actual: [3, 5])) {
            try context.gemm(good, weights, residual: residual)
        }
    }
}

@Suite("Convolutions") struct ConvolutionTests {
    static let dense: [ConvCase] = [
        ConvCase(height: 9, width: 7, inChannels: 3, outChannels: 32, stride: 2, activation: .relu),
        ConvCase(batch: 2, height: 7, width: 5, inChannels: 5, outChannels: 19, stride: 1, activation: .relu, residual: true),
        ConvCase(height: 11, width: 13, inChannels: 16, outChannels: 37, stride: 2),
        ConvCase(height: 1, width: 1, inChannels: 3, outChannels: 16, stride: 1),
        ConvCase(height: 3, width: 5, inChannels: 32, outChannels: 256, stride: 2, activation: .relu),
        ConvCase(height: 28, width: 28, inChannels: 32, outChannels: 32, stride: 1, activation: .relu, residual: true),
    ]
    static let depthwise: [ConvCase] = [
        ConvCase(height: 7, width: 9, inChannels: 64, outChannels: 64, stride: 1, depthwise: true, residual: true),
        ConvCase(batch: 2, height: 5, width: 3, inChannels: 37, outChannels: 37, stride: 1, depthwise: true, activation: .silu),
        ConvCase(height: 11, width: 13, inChannels: 20, outChannels: 20, stride: 2, depthwise: true, activation: .relu),
        ConvCase(height: 1, width: 1, inChannels: 16, outChannels: 16, stride: 1, depthwise: true),
        ConvCase(height: 15, width: 17, inChannels: 48, outChannels: 48, stride: 2, depthwise: true, activation: .relu, residual: true),
        ConvCase(batch: 2, height: 2, width: 1, inChannels: 32, outChannels: 32, stride: 2, depthwise: true, activation: .silu),
        ConvCase(height: 56, width: 56, inChannels: 64, outChannels: 64, stride: 1, depthwise: true, activation: .silu),
        // dwconv3x3_rows (CPU, stride 1): ragged row tiles (19 = 8 + 8 + 3) and 4-pixel strips
        // (10 = 4 + 4 + 2), float4 channels, two images; exactly one row tile plus one row.
        ConvCase(batch: 2, height: 19, width: 10, inChannels: 20, outChannels: 20, stride: 1, depthwise: true, activation: .relu, residual: true),
        ConvCase(height: 9, width: 6, inChannels: 32, outChannels: 32, stride: 1, depthwise: true, activation: .silu, residual: true),
    ]

    @Test("dense 3x3", arguments: onHardware(dense))
    func dense(_ c: Targeted<ConvCase>) throws { try checkConv(try c.context(), c.value) }

    @Test("depthwise 3x3", arguments: onHardware(depthwise))
    func depthwise(_ c: Targeted<ConvCase>) throws { try checkConv(try c.context(), c.value) }

    /// dwconv3x3_rows and dwconv3x3_strips_s2 (the CPU variant's kernels at stride 1 and 2) sum
    /// each output's taps in dwconv3x3's order, so they agree with it bit for bit; dwconv3x3 runs
    /// here as the GPU variant's kernel for channel counts that are not a multiple of 4. 21
    /// columns give stride 2 an interior strip between two edge strips (the last ragged), 19 rows
    /// a bottom row without its third input row.
    @Test(arguments: [Implementation.pocl, .intel].filter(\.isPresent))
    func depthwiseRowsMatchTheDirectKernel(_ implementation: Implementation) throws {
        let x = try random([2, 19, 21, 7], "dw rows x"), w = try random([7, 1, 3, 3], "dw rows w", in: -0.5...0.5)
        let b = try random([7], "dw rows b")
        for stride in [1, 2] {
            let r = try random([2, Shape.conv3x3Output(19, stride: stride), Shape.conv3x3Output(21, stride: stride), 7], "dw rows r")
            var outputs: [[Float]] = []
            for variant in [KernelVariant.cpu, .gpu] {
                let context = try CLContext(device: implementation.device!, variant: variant)
                let weights = try Conv3x3Weights(context: context, weight: w, bias: b, depthwise: true)
                let y = try context.conv3x3(try context.upload(x), weights, stride: stride, activation: .silu, residual: try context.upload(r))
                outputs.append(try context.download(y).data)
                #expect(context.launchedKernelNames.contains(variant == .gpu ? "dwconv3x3" : stride == 1 ? "dwconv3x3_rows" : "dwconv3x3_strips_s2"))
            }
            #expect(outputs[0] == outputs[1], "stride \(stride)")
        }
    }

    /// The CPE conv and the LayerNorm after it in one launch (dwconv3x3_strips_ln), on both CPU
    /// runtimes: ragged 4-pixel strips (13 = 4 + 4 + 4 + 1, 6 = 4 + 2) and row tiles (19 = 4 x 4
    /// + 3), a 1 x 1 image, two images, no bias, SiLU, the widest stage (512 channels), and a
    /// mean of 100 (the LayerNorm's two passes; LayerNormTests' offset). The GPU variant and widths that are not a
    /// multiple of 16 are refused, and so is a norm output in the conv's buffer.
    @Test(arguments: [Implementation.pocl, .intel].filter(\.isPresent))
    func depthwiseConvWithItsLayerNorm(_ implementation: Implementation) throws {
        let context = try CLContext(device: implementation.device!, variant: .cpu)
        let cases: [(ConvCase, Bool, Float)] = [
            (ConvCase(batch: 2, height: 19, width: 13, inChannels: 48, outChannels: 48, stride: 1, depthwise: true, residual: true), true, 0),
            (ConvCase(height: 1, width: 1, inChannels: 16, outChannels: 16, stride: 1, depthwise: true, residual: true), true, 0),
            (ConvCase(height: 7, width: 6, inChannels: 32, outChannels: 32, stride: 1, depthwise: true, activation: .silu), false, 0),
            (ConvCase(height: 5, width: 9, inChannels: 512, outChannels: 512, stride: 1, depthwise: true, residual: true), true, 0),
            (ConvCase(height: 6, width: 5, inChannels: 64, outChannels: 64, stride: 1, depthwise: true, residual: true), true, 100),
        ]
        for (c, bias, offset) in cases { try checkDepthwiseNorm(context, c, bias: bias, offset: offset) }
        #expect(context.launchedKernelNames.contains("dwconv3x3_strips_ln"))
        #expect(!context.fusesDepthwiseLayerNorm(channels: 40, stride: 1) && !context.fusesDepthwiseLayerNorm(channels: 64, stride: 2))
        #expect(!context.fusesDepthwiseLayerNorm(channels: 2048, stride: 1))
        // The graph fuses maps up to stage 1 at 224 (56 x 56); larger ones run the two kernels.
        #expect(context.fusesDepthwiseLayerNorm(channels: 64, height: 56, width: 56))
        #expect(!context.fusesDepthwiseLayerNorm(channels: 64, height: 64, width: 64))

        let x = try context.upload(try random([1, 4, 4, 24], "dwln refused x"))
        let norm24 = try LayerNormWeights(context: context, weight: try random([24], "w"), bias: try random([24], "b"))
        let weights24 = try Conv3x3Weights(context: context, weight: try random([24, 1, 3, 3], "w"), bias: nil, depthwise: true)
        #expect(throws: MilaError.self) { _ = try context.depthwiseConvLayerNorm(x, weights24, norm: norm24) }
        let x16 = try context.upload(try random([1, 4, 4, 16], "dwln x16"))
        let norm16 = try LayerNormWeights(context: context, weight: try random([16], "w"), bias: try random([16], "b"))
        let weights16 = try Conv3x3Weights(context: context, weight: try random([16, 1, 3, 3], "w"), bias: nil, depthwise: true)
        let out = try context.empty([1, 4, 4, 16])
        #expect(throws: MilaError.self) { _ = try context.depthwiseConvLayerNorm(x16, weights16, norm: norm16, output: out, normOutput: out) }
        let gpu = try CLContext(device: implementation.device!, variant: .gpu)
        let gpuWeights = try Conv3x3Weights(context: gpu, weight: try random([16, 1, 3, 3], "w"), bias: nil, depthwise: true)
        let gpuNorm = try LayerNormWeights(context: gpu, weight: try random([16], "w"), bias: try random([16], "b"))
        #expect(throws: MilaError.self) { _ = try gpu.depthwiseConvLayerNorm(try gpu.upload(try random([1, 4, 4, 16], "x")), gpuWeights, norm: gpuNorm) }
    }

    /// With a narrow (AVX2) GEMM tile the CPU convolutions change tiles: conv3x3 builds with
    /// float8 x 2 x 6 pixels, conv3x3_igemm runs the same narrow tile, and a conv whose output
    /// channels fill whole 16-column tiles (the stem's 32 -> 32) takes the implicit GEMM.
    @Test(arguments: [Implementation.pocl, .intel].filter(\.isPresent))
    func narrowRegisterTiles(_ implementation: Implementation) throws {
        let context = try CLContext(device: implementation.device!, variant: .cpu)
        context.useGemmTuning(GemmTuning(tile: try #require(GemmTile(parsing: "6x16")), rowTiles: 1, panelRows: 1024, rowTilesMaxDepth: 256))
        #expect(context.directConvTile(outChannels: 37) == (8, 2, 6))
        for c in Self.dense {
            try checkConv(context, c, implicitGemm: false)
            if c.inChannels >= 16 { try checkConv(context, c, implicitGemm: true) }
        }
        let stem = try Conv3x3Weights(context: context, weight: try Tensor(zeros: [32, 32, 3, 3]), bias: nil, depthwise: false)
        let odd = try Conv3x3Weights(context: context, weight: try Tensor(zeros: [40, 32, 3, 3]), bias: nil, depthwise: false)
        #expect(stem.implicitGemm && !odd.implicitGemm)
        #expect(context.launchedKernelNames.isSuperset(of: ["conv3x3", "conv3x3_igemm_6x16"]), "\(context.launchedKernelNames)")
    }

    /// With the wide (4x64) tile, output channels that are a multiple of 32 but not of 64 (the
    /// stem's 32 -> 32, and 96) run conv3x3_igemm on the 8x32 tile, padded to 32 columns, not 64.
    @Test(arguments: [Implementation.pocl, .intel].filter(\.isPresent))
    func implicitGemmTileFitsTheOutputChannels(_ implementation: Implementation) throws {
        let context = try CLContext(device: implementation.device!, variant: .cpu)
        context.useGemmTuning(GemmTuning(tile: .wide, rowTiles: 1, panelRows: 1024, rowTilesMaxDepth: 256))
        let tile8x32 = try #require(GemmTile(parsing: "8x32"))
        let tiles = try [32, 96, 64, 128, 40].map { cout in
            try Conv3x3Weights(context: context, weight: try Tensor(zeros: [cout, 32, 3, 3]), bias: nil, depthwise: false).implicitGemmTile
        }
        #expect(tiles == [tile8x32, tile8x32, .wide, .wide, nil])
        let stem = try Conv3x3Weights(context: context, weight: try Tensor(zeros: [32, 32, 3, 3]), bias: nil, depthwise: false)
        #expect(stem.bytes == 9 * 32 * 32 * 4)  // 32 output channels, no padding
        try checkConv(context, ConvCase(height: 28, width: 28, inChannels: 32, outChannels: 32, stride: 1, activation: .relu, residual: true))
        try checkConv(context, ConvCase(batch: 2, height: 9, width: 13, inChannels: 24, outChannels: 96, stride: 2, activation: .relu))
        #expect(context.launchedKernelNames.contains("conv3x3_igemm_8x32"), "\(context.launchedKernelNames)")
    }

    @Test func rejectsBadArguments() throws {
        let context = try TestDevice.context()
        let weights = try Conv3x3Weights(context: context, weight: try Tensor(zeros: [8, 1, 3, 3]), bias: nil, depthwise: true)
        let x = try context.upload(try Tensor(zeros: [1, 4, 4, 8]))
        #expect(throws: MilaError.invalidArgument(op: "dwconv3x3", message: "stride 3; only 1 and 2 are supported")) {
            try context.conv3x3(x, weights, stride: 3)
        }
        let wrong = try context.upload(try Tensor(zeros: [1, 4, 4, 7]))
        #expect(throws: MilaError.self) { try context.conv3x3(wrong, weights, stride: 1) }
        #expect(throws: MilaError.self) {
            try Conv3x3Weights(context: context, weight: try Tensor(zeros: [8, 2, 3, 3]), bias: nil, depthwise: true)
        }
    }
}

/// fp16 weights (`Precision.fp16`) in every kernel that reads GEMM or convolution weights, on
/// every target with cl_khr_fp16 in both variants, against the reference with the weights
/// rounded to half; and the refusal where the extension is missing.
@Suite("fp16 weights") struct HalfWeightTests {
    @Test("GEMM, own kernels", arguments: onHalfPrecisionHardware([GemmTests.cases[1], GemmTests.cases[2], GemmTests.cases[4], GemmTests.cases[7]]),
          [GemmProvider.register, .tiled])
    func gemm(_ c: Targeted<GemmCase>, provider: GemmProvider) throws {
        try checkGemm(try c.context(), c.value, provider: provider, precision: .fp16)
    }

    /// The engine's own choice: on a GPU-variant context the default provider is CLBlast, which
    /// cannot read half weights, so fp16 takes gemm_tiled.
    @Test("GEMM, default provider", arguments: onHalfPrecisionHardware([GemmTests.cases[3]]))
    func gemmDefault(_ c: Targeted<GemmCase>) throws {
        try checkGemm(try c.context(), c.value, provider: nil, precision: .fp16)
    }

    @Test("dense 3x3", arguments: onHalfPrecisionHardware([ConvolutionTests.dense[1], ConvolutionTests.dense[2], ConvolutionTests.dense[4]]))
    func dense(_ c: Targeted<ConvCase>) throws { try checkConv(try c.context(), c.value, precision: .fp16) }

    @Test("dense 3x3, implicit GEMM", arguments: onHalfPrecisionHardware([
        ConvCase(height: 5, width: 7, inChannels: 64, outChannels: 70, stride: 1, activation: .relu, residual: true),
        ConvCase(height: 6, width: 5, inChannels: 96, outChannels: 64, stride: 2),
    ]))
    func implicitGemm(_ c: Targeted<ConvCase>) throws { try checkConv(try c.context(), c.value, implicitGemm: true, precision: .fp16) }

    @Test("depthwise 3x3", arguments: onHalfPrecisionHardware([ConvolutionTests.depthwise[1], ConvolutionTests.depthwise[4], ConvolutionTests.depthwise[0]]))
    func depthwise(_ c: Targeted<ConvCase>) throws { try checkConv(try c.context(), c.value, precision: .fp16) }

    @Test func clblastRefusesHalfWeights() throws {
        guard let target = KernelTarget.halfPrecision.first else { return }
        let context = try target.context()
        let weights = try GemmWeights(context: context, weight: try Tensor(zeros: [4, 6]), bias: nil, precision: .fp16)
        #expect(throws: MilaError.unsupported(op: "gemm", message: "the CLBlast provider needs float32 weights; fp16 weights run on gemm_reg or gemm_tiled")) {
            try context.gemm(try context.upload(try Tensor(zeros: [3, 6])), weights, provider: .clblast)
        }
    }

    /// A device without cl_khr_fp16 (PoCL) refuses fp16 in one line naming the device and the
    /// extension, for weights and for a whole backend.
    @Test(.enabled(if: Implementation.pocl.isPresent, Implementation.pocl.missing))
    func deviceWithoutTheExtensionRefuses() throws {
        let context = try KernelTarget(implementation: .pocl, variant: .cpu).context()
        try #require(!context.device.supportsFP16, "this PoCL build has cl_khr_fp16; the refusal cannot be tested on it")
        let expected = MilaError.unsupported(op: "fp16", message: context.device.refusal(of: .fp16)!)
        #expect(throws: expected) { try GemmWeights(context: context, weight: try Tensor(zeros: [4, 6]), bias: nil, precision: .fp16) }
        #expect(throws: expected) {
            try Conv3x3Weights(context: context, weight: try Tensor(zeros: [8, 1, 3, 3]), bias: nil, depthwise: true, precision: .fp16)
        }
        #expect(throws: expected) { try CLBackend(context: context, weights: [:], precision: .fp16) }
        let message = context.device.refusal(of: .fp16)!
        #expect(message.contains("cl_khr_fp16") && message.contains(context.device.name) && !message.contains("\n"))
        #expect(context.device.refusal(of: .fp32) == nil)
    }

    @Test func weightBeyondTheHalfRangeIsNamed() throws {
        guard let target = KernelTarget.halfPrecision.first else { return }
        let context = try target.context()
        var w = try Tensor(zeros: [2, 3])
        w.data[4] = 70000
        #expect(throws: MilaError.invalidArgument(op: "fp16", message: "layers.0.fc1.weight[1, 1] = 70000.0 does not fit a half float (|w| <= 65504); use --precision fp32")) {
            try GemmWeights(context: context, weight: w, bias: nil, precision: .fp16, name: "layers.0.fc1.weight")
        }
    }
}

@Suite("LayerNorm") struct LayerNormTests {
    static let shapes: [(rows: Int, channels: Int, offset: Float)] = [
        (1, 1, 0), (1, 64, 0), (197, 96, 0), (5, 1000, 0), (3, 37, 100), (7, 512, 50), (2, 16, 0),
    ]

    @Test("layernorm", arguments: KernelTarget.hardware)
    func layerNorm(target: KernelTarget) throws {
        for s in Self.shapes { try checkLayerNorm(try target.context(), rows: s.rows, channels: s.channels, offset: s.offset) }
    }
}

@Suite("Linear attention") struct LinearAttentionTests {
    static let cases: [AttentionCase] = [
        AttentionCase(height: 1, width: 1, channels: 4, heads: 1),
        AttentionCase(height: 3, width: 5, channels: 8, heads: 2),
        AttentionCase(batch: 2, height: 5, width: 7, channels: 16, heads: 2),
        AttentionCase(height: 7, width: 9, channels: 16, heads: 4),
        AttentionCase(height: 4, width: 3, channels: 12, heads: 4),   // d = 3: RoPE pairs straddle heads
        AttentionCase(height: 13, width: 15, channels: 24, heads: 2),
        AttentionCase(height: 14, width: 14, channels: 64, heads: 2), // MLLA head dim 32, L = 196
        AttentionCase(batch: 2, height: 9, width: 13, channels: 64, heads: 4), // d = 16
        AttentionCase(height: 1, width: 1, channels: 32, heads: 1),  // d = 32, L = 1
        AttentionCase(height: 3, width: 7, channels: 96, heads: 3),  // MLLA-B stage 0 heads, d = 32
        AttentionCase(height: 1, width: 9, channels: 32, heads: 1),  // one row: LePE without rows above or below
        AttentionCase(height: 6, width: 1, channels: 64, heads: 2),  // one column
    ]

    /// la_output_vec adds LePE itself (CPU, d % 16 == 0): bit for bit the attention alone (LePE
    /// weights and bias zero) followed by the depthwise conv with the attention as its residual,
    /// with and without a bias, on both CPU runtimes.
    @Test(arguments: [Implementation.pocl, .intel].filter(\.isPresent))
    func lepeInTheOutputKernelEqualsTheConvAfterIt(_ implementation: Implementation) throws {
        let context = try CLContext(device: implementation.device!, variant: .cpu)
        let (b, h, w, c, heads) = (2, 5, 7, 64, 2)
        let qk = try context.upload(try random([b, h * w, 2 * c], "lepe qk", in: -2...2))
        let v = try random([b, h * w, c], "lepe v")
        let lw = try random([c, 1, 3, 3], "lepe w", in: -0.5...0.5), lb = try random([c], "lepe b")
        let dv = try context.upload(v)
        let alone = try context.download(try context.linearAttention(
            qk: qk, v: dv, height: h, width: w, heads: heads,
            lepe: try Conv3x3Weights(context: context, weight: try Tensor(zeros: [c, 1, 3, 3]), bias: try Tensor(zeros: [c]), depthwise: true)))
        for bias in [true, false] {
            let lepe = try Conv3x3Weights(context: context, weight: lw, bias: bias ? lb : nil, depthwise: true)
            let fused = try context.download(try context.linearAttention(qk: qk, v: dv, height: h, width: w, heads: heads, lepe: lepe))
            let apart = try context.download(try context.conv3x3(
                try context.upload(try Tensor(shape: [b, h, w, c], data: v.data)), lepe, stride: 1,
                residual: try context.upload(try Tensor(shape: [b, h, w, c], data: alone.data))))
            #expect(fused.data == apart.data, "bias \(bias)")
        }
        #expect(context.launchedKernelNames.contains("la_output_vec"))
    }

    /// Both variants: cpu uses the vectorised kernels where d % 16 == 0, gpu the scalar ones.
    @Test("linear attention", arguments: onHardware(cases))
    func attention(_ c: Targeted<AttentionCase>) throws {
        try checkLinearAttention(try c.context(), c.value)
    }

    @Test("linear attention at L = 65536 (1024 px stage 0)")
    func largeL() throws {
        try checkLinearAttention(try TestDevice.context(), AttentionCase(height: 256, width: 256, channels: 8, heads: 2))
    }

    @Test func rejectsBadArguments() throws {
        let context = try TestDevice.context()
        let lepe = try Conv3x3Weights(context: context, weight: try Tensor(zeros: [6, 1, 3, 3]), bias: try Tensor(zeros: [6]), depthwise: true)
        let qk = try context.upload(try Tensor(zeros: [1, 4, 12])), v = try context.upload(try Tensor(zeros: [1, 4, 6]))
        #expect(throws: MilaError.invalidArgument(op: "linear_attention", message: "channels 6 must be a multiple of 4 for 2-D RoPE")) {
            try context.linearAttention(qk: qk, v: v, height: 2, width: 2, heads: 2, lepe: lepe)
        }
        #expect(throws: MilaError.self) {
            try context.linearAttention(qk: qk, v: v, height: 1, width: 2, heads: 2, lepe: lepe)
        }
    }
}

@Suite("Reductions and elementwise") struct ReductionTests {
    @Test(arguments: KernelTarget.hardware)
    func meanTokens(target: KernelTarget) throws {
        let context = try target.context()
        try checkMeanTokens(context, batch: 1, tokens: 1, channels: 3)
        try checkMeanTokens(context, batch: 2, tokens: 197, channels: 37)
        try checkMeanTokens(context, batch: 1, tokens: 65536, channels: 16, offset: 10)
    }

    @Test(arguments: [ElementwiseOp.add, .multiply], KernelTarget.hardware)
    func elementwise(_ op: ElementwiseOp, target: KernelTarget) throws {
        let context = try target.context()
        try checkElementwise(context, shape: [1], op: op)
        try checkElementwise(context, shape: [3, 37], op: op)
        #expect(throws: MilaError.self) {
            try context.elementwise(try context.upload(try Tensor(zeros: [2])), try context.upload(try Tensor(zeros: [3])), op)
        }
    }

    @Test(arguments: Activation.allCases, KernelTarget.hardware)
    func activation(_ activation: Activation, target: KernelTarget) throws {
        let context = try target.context()
        try checkActivation(context, activation, count: 4099, range: -10...10)
        try checkActivation(context, activation, count: 1001, range: -100...100)
        try checkActivation(context, activation, count: 1001, range: -1e-3...1e-3)
    }

    @Test(arguments: KernelTarget.hardware)
    func copy(target: KernelTarget) throws {
        let context = try target.context()
        for count in [1, 15, 16, 17, 4099] { try checkCopy(context, count: count) }
        #expect(throws: MilaError.self) { try context.copy(try context.upload(try Tensor(zeros: [3])), output: try context.empty([2])) }
    }

    @Test(arguments: KernelTarget.hardware)
    func pad(target: KernelTarget) throws {
        let context = try target.context()
        try checkPad(context, shape: [1, 3, 5, 7], height: 4, width: 6)
        try checkPad(context, shape: [2, 1, 1, 16], height: 2, width: 2)
        try checkPad(context, shape: [1, 2, 2, 3], height: 2, width: 2)
        #expect(throws: MilaError.self) { try context.padBottomRight(try context.upload(try Tensor(zeros: [1, 3, 3, 1])), height: 2, width: 3) }
    }
}
