import Foundation
import MilaCore
import MilaKernels
import MilaOpenCL
import Testing

@Suite("OpenCL runtime") struct RuntimeTests {
    @Test func errorsNameTheCallAndStatus() {
        let error = CLError(call: "clEnqueueNDRangeKernel", status: -5)
        #expect(error.description == "clEnqueueNDRangeKernel failed with CL_OUT_OF_RESOURCES")
        #expect(CLError.name(of: -11) == "CL_BUILD_PROGRAM_FAILURE")
        #expect(CLError.name(of: -9999) == "CL_UNKNOWN_ERROR(-9999)")
    }

    /// record / replay: a replay reruns the recorded launches on whatever the buffers hold
    /// now; a write inside a recording makes it incomplete unless it runs `unrecorded`; the
    /// temporaries an op gave back to the pool while recording are never handed out again.
    @Test func recordedLaunchesReplay() throws {
        let context = try CLContext(device: try TestDevice.context().device)
        let x = try context.upload(try Tensor(randomUniform: [3, 300, 5], seed: 1))
        let mean = try context.empty([3, 5]), copy = try context.empty([3, 5])
        let recorded = try context.record {
            _ = try context.meanTokens(x, output: mean)
            _ = try context.copy(mean, output: copy)
        }
        #expect(recorded.isComplete)
        #expect(recorded.kernelNames == ["token_sum_partial", "reduce_chunks", "copy_vec16"])
        let other = try Tensor(randomUniform: [3, 300, 5], seed: 2)
        try context.write(other.data, to: x.buffer)
        try context.replay(recorded)
        let expected = try context.download(try context.meanTokens(try context.upload(other)))
        #expect(try context.download(copy).data == expected.data)
        for buffer in recorded.buffers {
            let handedOut = try context.buffer(count: buffer.count)
            #expect(!recorded.buffers.contains { $0 === handedOut }, "a recorded buffer of \(buffer.count) floats went back to the pool")
        }
        let withWrite = try context.record { try context.write(other.data, to: x.buffer); _ = try context.copy(mean, output: copy) }
        #expect(!withWrite.isComplete)
        let withUnrecordedWrite = try context.record {
            try context.unrecorded { try context.write(other.data, to: x.buffer) }
            _ = try context.copy(mean, output: copy)
        }
        #expect(withUnrecordedWrite.isComplete && withUnrecordedWrite.count == 1)
    }

    @Test func failedBuildCarriesItsLog() throws {
        let context = try TestDevice.context()
        do {
            try context.compile(text: "__kernel void broken(__global float* x) { x[0] = undefined_name; }", file: "broken.cl")
            Issue.record("a kernel with an undefined name compiled")
        } catch let error as CLError {
            #expect(error.statusName == "CL_BUILD_PROGRAM_FAILURE")
            #expect(error.buildLog?.contains("undefined_name") == true)
            #expect(error.description.contains("build log"))
        }
    }

    @Test func deviceSelection() throws {
        let platforms = try CLDiscovery.platforms()
        let devices = platforms.flatMap(\.devices)
        try #require(!devices.isEmpty)
        let first = devices[0]
        #expect(try CLDiscovery.select("0", from: platforms).name == first.name)
        #expect(try CLDiscovery.select(first.selector, from: platforms).name == first.name)
        let needle = String(first.name.prefix(6)).uppercased()
        #expect(try CLDiscovery.select(needle, from: platforms).name == first.name)
        #expect(throws: CLDiscoveryError.self) { try CLDiscovery.select("no-such-device-xyz", from: platforms) }
        #expect(throws: CLDiscoveryError.self) { try CLDiscovery.select("\(devices.count)", from: platforms) }
        #expect(throws: CLDiscoveryError.self) { try CLDiscovery.select("0", from: []) }
        #expect(CLDiscoveryError.noDevice.description.contains("pocl-opencl-icd"))
    }

    /// CI installs all three implementations (`.ci/setup`); elsewhere a missing one only skips
    /// its tests (with the reason).
    @Test(.enabled(if: ProcessInfo.processInfo.environment["CI"] != nil, "not CI"))
    func ciHasEveryImplementation() {
        for implementation in Implementation.allCases {
            #expect(implementation.isPresent, "\(implementation.missing)")
        }
    }

    @Test func defaultDeviceIsNeverASimulator() throws {
        let devices = try CLDiscovery.platforms().flatMap(\.devices)
        if let chosen = CLDiscovery.defaultDevice(from: devices) {
            #expect(!chosen.isSimulator, "\(chosen.name) is a simulator")
            if devices.contains(where: { $0.isGPU && !$0.isSimulator }) { #expect(chosen.isGPU) }
        }
        if let oclgrind = Implementation.oclgrind.device {
            #expect(oclgrind.isSimulator && oclgrind.isGPU, "Oclgrind reports itself as a GPU and is marked a simulator")
            #expect(oclgrind.kindLabel == "GPU, simulator")
            // Alone, it is not picked: the error says why and how to name it.
            #expect(CLDiscovery.defaultDevice(from: [oclgrind]) == nil)
            let message = "\(CLDiscoveryError.onlySimulators(["\(oclgrind.selector) \(oclgrind.name)"]))"
            #expect(message.contains("--device") && !message.contains("\n"))
            #expect(try CLDiscovery.select("oclgrind", from: try CLDiscovery.platforms()).name == oclgrind.name)
        }
        if let pocl = Implementation.pocl.device, let intel = Implementation.intel.device {
            // Both CPUs: the README's rule (the faster by the kernel benchmark) puts Intel's first.
            #expect(CLDiscovery.defaultDevice(from: [pocl, intel])?.platformName == intel.platformName)
        }
    }

    @Test func deviceReportMarksTheSelectedDevice() throws {
        #expect(DeviceReport.render([], selected: nil) == DeviceReport.noPlatformMessage)
        #expect(!DeviceReport.noPlatformMessage.contains("\n"))
        let platforms = try CLDiscovery.platforms()
        let selected = try CLDiscovery.select("0", from: platforms)
        let report = DeviceReport.render(platforms, selected: selected)
        #expect(report.contains("* \(selected.selector)  \(selected.name)"))
        #expect(report.contains("compute units \(selected.computeUnits)"))
        #expect(report.contains("max work-group \(selected.maxWorkGroupSize)"))
    }

    @Test func workGroupLimitIsCheckedBeforeLaunch() {
        #expect(throws: MilaError.unsupported(op: "gemm_tiled", message: "needs work-groups of 256 work-items; tiny allows at most 128")) {
            try WorkGroupLimit.check(local: [16, 16], maximum: 128, kernel: "gemm_tiled", device: "tiny")
        }
        #expect(throws: Never.self) { try WorkGroupLimit.check(local: [16, 16], maximum: 256, kernel: "gemm_tiled", device: "big") }
    }

    @Test func buffersAreReused() throws {
        let context = try CLContext(device: try TestDevice.context().device)
        let a = try context.buffer(count: 1234)
        context.recycle(a)
        let b = try context.buffer(count: 1234)
        #expect(a === b)
        #expect(context.poolStatistics.reuses == 1)
        #expect(throws: CLError.self) { try context.buffer(count: 0) }
        #expect(throws: CLError.self) { try context.download(b, count: 2000) }
    }

    @Test func diskCacheRebuildsDamagedEntries() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mila-cache-test-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let cache = ProgramDiskCache(folder: folder)
        let device = try TestDevice.context().device
        func runAdd() throws -> [Float] {
            let context = try CLContext(device: device, variant: .cpu, diskCache: cache)
            let a = try context.upload([1, 2, 3]), b = try context.upload([10, 20, 30])
            let y = try context.elementwise(DeviceTensor(buffer: a, shape: [3]), DeviceTensor(buffer: b, shape: [3]), .add)
            return try context.download(y).data
        }
        #expect(try runAdd() == [11, 22, 33])
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".clbin") }
        #expect(files.count == 1)
        let path = folder.appendingPathComponent(files[0])
        let stored = try Data(contentsOf: path)

        // A flipped payload byte fails the checksum: ignored, rebuilt, rewritten.
        var damaged = stored
        damaged[damaged.count - 1] ^= 0xFF
        try damaged.write(to: path)
        #expect(try runAdd() == [11, 22, 33])
        let key = Array(stored[8..<24])
        #expect(cache.load(key: key) != nil, "the damaged entry was not rewritten")

        // A well-formed entry whose binary the driver refuses is rebuilt from source too.
        cache.store(key: key, binary: Array("not a program binary".utf8))
        #expect(cache.load(key: key) != nil)
        #expect(try runAdd() == [11, 22, 33])

        // A truncated file is ignored.
        try Data(stored.prefix(20)).write(to: path)
        #expect(cache.load(key: key) == nil)

        // The key covers device, driver, options and source.
        let base = ProgramDiskCache.key(deviceName: "d", driverVersion: "1", source: "s", options: "o")
        #expect(base != ProgramDiskCache.key(deviceName: "d", driverVersion: "2", source: "s", options: "o"))
        #expect(base != ProgramDiskCache.key(deviceName: "d", driverVersion: "1", source: "s2", options: "o"))
        #expect(base != ProgramDiskCache.key(deviceName: "d", driverVersion: "1", source: "s", options: "o -DX"))
    }

    @Test func kernelsLoadFromAFolderWhenAsked() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mila-kernels-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try "// edited\n".write(to: folder.appendingPathComponent("eltwise.cl"), atomically: true, encoding: .utf8)
        #expect(try KernelSource.eltwise.text(folder: folder.path) == "// edited\n")
        #expect(try KernelSource.eltwise.text(folder: nil) == KernelSource.eltwise.embeddedText)
        #expect(throws: KernelFileError.self) { try KernelSource.gemm.text(folder: folder.path) }
    }
}

/// gemm_reg with another register tile (the tuning pass's choice on some devices).
private func checkGemmTile(_ context: CLContext, _ tile: String, _ c: GemmCase) throws {
    context.useGemmTuning(GemmTuning(tile: try #require(GemmTile(parsing: tile)), rowTiles: 1, panelRows: 1024, rowTilesMaxDepth: 256))
    try checkGemm(context, c, provider: .register)
}

/// conv3x3_igemm with another register tile (the GEMM's tuned tile on some devices).
private func checkIgemmTile(_ context: CLContext, _ tile: String, _ c: ConvCase) throws {
    context.useGemmTuning(GemmTuning(tile: try #require(GemmTile(parsing: tile)), rowTiles: 1, panelRows: 1024, rowTilesMaxDepth: 256))
    try checkConv(context, c, implicitGemm: true)
}

/// Fails when a `__kernel` in Kernels/ has no exercise here, or its exercise does not launch it.
/// Each exercise is a small instance of the op tests' checks (so the result is checked too).
@Suite("Kernel coverage") struct KernelCoverageTests {
    static let exercises: [String: (variant: KernelVariant, run: (CLContext) throws -> Void)] = [
        "gemm_reg": (.cpu, { try checkGemmTile($0, "4x64", GemmCase(m: 5, k: 7, n: 19, activation: .gelu)) }),
        "gemm_reg_6x16": (.cpu, { try checkGemmTile($0, "6x16", GemmCase(m: 7, k: 5, n: 17, activation: .gelu)) }),
        "gemm_reg_3x32": (.cpu, { try checkGemmTile($0, "3x32", GemmCase(m: 4, k: 9, n: 33, residual: true)) }),
        "gemm_reg_8x32": (.cpu, { try checkGemmTile($0, "8x32", GemmCase(m: 9, k: 6, n: 31, activation: .silu)) }),
        "gemm_tiled": (.gpu, { try checkGemm($0, GemmCase(m: 5, k: 7, n: 9, activation: .silu), provider: .tiled) }),
        "gemm_epilogue": (.cpu, { try checkGemm($0, GemmCase(m: 5, k: 7, n: 9, residual: true), provider: .clblast) }),
        "conv3x3": (.cpu, { try checkConv($0, ConvCase(height: 5, width: 3, inChannels: 3, outChannels: 5, stride: 2)) }),
        "conv3x3_tiled": (.gpu, { try checkConv($0, ConvCase(height: 3, width: 5, inChannels: 16, outChannels: 20, stride: 1)) }),
        "dwconv3x3_tiled": (.gpu, { try checkConv($0, ConvCase(height: 5, width: 3, inChannels: 8, outChannels: 8, stride: 1, depthwise: true)) }),
        "dwconv3x3": (.gpu, { try checkConv($0, ConvCase(height: 5, width: 3, inChannels: 6, outChannels: 6, stride: 2, depthwise: true)) }),
        "dwconv3x3_strips_s2": (.cpu, { try checkConv($0, ConvCase(height: 11, width: 9, inChannels: 8, outChannels: 8, stride: 2, depthwise: true)) }),
        "dwconv3x3_strips_ln": (.cpu, { context in
            let c = ConvCase(height: 6, width: 5, inChannels: 16, outChannels: 16, stride: 1, depthwise: true, residual: true)
            if context.fusesDepthwiseLayerNorm(channels: 16, stride: 1) { try checkDepthwiseNorm(context, c) } else {
                #expect(throws: MilaError.self) { try checkDepthwiseNorm(context, c) }  // the GPU variant keeps the two launches
            }
        }),
        "dwconv3x3_rows": (.cpu, { try checkConv($0, ConvCase(height: 11, width: 5, inChannels: 8, outChannels: 8, stride: 1, depthwise: true)) }),
        "layernorm_rows": (.cpu, { try checkLayerNorm($0, rows: 3, channels: 5) }),
        "layernorm_wg": (.gpu, { try checkLayerNorm($0, rows: 3, channels: 5) }),
        "layernorm_rows_vec": (.cpu, { try checkLayerNorm($0, rows: 3, channels: 32) }),
        "token_sum_partial": (.cpu, { try checkMeanTokens($0, batch: 1, tokens: 3, channels: 2) }),
        "reduce_chunks": (.cpu, { try checkMeanTokens($0, batch: 1, tokens: 3, channels: 2) }),
        "la_kv_partial": (.cpu, { try checkLinearAttention($0, AttentionCase(height: 2, width: 3, channels: 8, heads: 2)) }),
        "la_output": (.cpu, { try checkLinearAttention($0, AttentionCase(height: 2, width: 3, channels: 8, heads: 2)) }),
        "la_kv_partial_vec": (.cpu, { try checkLinearAttention($0, AttentionCase(height: 2, width: 3, channels: 32, heads: 2)) }),
        "la_kv_wg": (.gpu, { try checkLinearAttention($0, AttentionCase(height: 2, width: 3, channels: 8, heads: 2)) }),
        "la_output_wg": (.gpu, { try checkLinearAttention($0, AttentionCase(height: 2, width: 3, channels: 8, heads: 2)) }),
        "la_output_vec": (.cpu, { try checkLinearAttention($0, AttentionCase(height: 2, width: 3, channels: 32, heads: 2)) }),
        "fgla_chunked": (.cpu, { try checkForgetGate($0, ForgetGateCase(tokens: 9, chunk: 4), kernel: .chunked(chunk: 4),
                                                     bidirectional: true, normalize: true, pattern: .strong) }),
        "fgla_recurrent": (.cpu, { try checkForgetGate($0, ForgetGateCase(tokens: 9, chunk: 0), kernel: .recurrent,
                                                       bidirectional: true, normalize: true, pattern: .strong) }),
        "fgla_states_seq": (.cpu, { try checkForgetGate($0, ForgetGateCase(tokens: 9, chunk: 4, channels: 32, heads: 2), kernel: .phased(chunk: 4),
                                                         bidirectional: true, normalize: true, pattern: .mild) }),
        "fgla_state_scan": (.gpu, { try checkForgetGate($0, ForgetGateCase(tokens: 9, chunk: 4, channels: 32, heads: 2), kernel: .phased(chunk: 4),
                                                        bidirectional: false, normalize: true, pattern: .mild) }),
        "fgla_output_vec": (.cpu, { try checkForgetGate($0, ForgetGateCase(tokens: 9, chunk: 4, channels: 32, heads: 2), kernel: .phased(chunk: 4),
                                                        bidirectional: false, normalize: false, pattern: .adversarial) }),
        "fgla_state_wg": (.gpu, { try checkForgetGate($0, ForgetGateCase(tokens: 9, chunk: 4, channels: 32, heads: 2), kernel: .phased(chunk: 4),
                                                      bidirectional: true, normalize: true, pattern: .mild) }),
        "fgla_output_wg": (.gpu, { try checkForgetGate($0, ForgetGateCase(tokens: 9, chunk: 4, channels: 32, heads: 2), kernel: .phased(chunk: 4),
                                                       bidirectional: false, normalize: false, pattern: .adversarial) }),
        "eltwise_binary": (.cpu, { try checkElementwise($0, shape: [5], op: .multiply) }),
        "eltwise_activation": (.cpu, { try checkActivation($0, .gelu, count: 7, range: -3...3) }),
        "copy_vec16": (.cpu, { try checkCopy($0, count: 21) }),
        "pad_bottom_right": (.cpu, { try checkPad($0, shape: [1, 1, 2, 3], height: 2, width: 3) }),
        "conv3x3_igemm_6x16": (.cpu, { try checkIgemmTile($0, "6x16", ConvCase(height: 4, width: 7, inChannels: 16, outChannels: 32, stride: 2)) }),
        "conv3x3_igemm_3x32": (.cpu, { try checkIgemmTile($0, "3x32", ConvCase(height: 5, width: 4, inChannels: 20, outChannels: 33, stride: 1)) }),
        "conv3x3_igemm_8x32": (.cpu, { try checkIgemmTile($0, "8x32", ConvCase(height: 3, width: 9, inChannels: 17, outChannels: 40, stride: 1)) }),
        "conv3x3_igemm": (.cpu, { try checkIgemmTile($0, "4x64", ConvCase(height: 3, width: 5, inChannels: 64, outChannels: 20, stride: 1)) }),
        "resize_bilinear": (.cpu, { try checkResize($0, ResizeCase(height: 3, width: 2, channels: 3, outHeight: 5, outWidth: 4)) }),
        "resize_bilinear_vec": (.cpu, { try checkResize($0, ResizeCase(height: 3, width: 2, channels: 32, outHeight: 5, outWidth: 4)) }),
        "adaptive_avg_pool": (.cpu, { try checkAdaptivePool($0, height: 5, width: 4, channels: 3, size: 3) }),
        "resize_argmax_vec": (.cpu, { try checkResizeArgmax($0, height: 3, width: 2, classes: 37, mid: (9, 7), out: (5, 6)) }),
        "resize_argmax": (.gpu, { try checkResizeArgmax($0, height: 3, width: 2, classes: 4, mid: (9, 7), out: (5, 6)) }),
    ]

    @Test func everyEntryPointHasAnExercise() {
        let declared = Set(KernelSource.allCases.flatMap(\.entryPoints))
        #expect(!declared.isEmpty)
        let missing = declared.subtracting(Self.exercises.keys).sorted()
        let stale = Set(Self.exercises.keys).subtracting(declared).sorted()
        #expect(missing.isEmpty, "kernel entry points with no test: \(missing)")
        #expect(stale.isEmpty, "exercises for kernels that no longer exist: \(stale)")
    }

    @Test(arguments: exercises.keys.sorted(), [Implementation.pocl, .intel].filter(\.isPresent))
    func exerciseLaunchesItsKernel(_ name: String, implementation: Implementation) throws {
        let exercise = try #require(Self.exercises[name])
        let context = try CLContext(device: try #require(implementation.device), variant: exercise.variant)
        try exercise.run(context)
        #expect(context.launchedKernelNames.contains(name), "\(name) was not launched by its exercise")
    }

    @Test func entryPointsAreParsed() {
        #expect(KernelSource.gemm.entryPoints == ["gemm_reg", "gemm_reg_6x16", "gemm_reg_3x32", "gemm_reg_8x32", "gemm_tiled", "gemm_epilogue"])
        #expect(GemmTile.all.map(\.kernelName) == ["gemm_reg", "gemm_reg_6x16", "gemm_reg_3x32", "gemm_reg_8x32"])
        #expect(KernelSource.common.entryPoints.isEmpty)
    }
}
