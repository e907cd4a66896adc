import Foundation
import MilaCore
import MilaKernels

/// The per-device tuning pass of gemm_reg: times each register tile and split of the work on a few
/// model-like shapes and keeps the fastest. Runs once per (device, driver, gemm.cl source) on
/// first use and is cached beside the kernel binaries (`ProgramDiskCache`'s folder, keyed the
/// same way), so later processes load it in microseconds. `MILA_GEMM_TUNING=0` turns it off
/// (the defaults run); `MILA_GEMM_TUNING=retune` times again and overwrites the cache.
public enum GemmTuner {
    public static let environmentVariable = "MILA_GEMM_TUNING"
    static let version = "gemm-tuning-v4"

    /// Shapes (M, K, N) standing for the model's GEMMs: short K (stage 1 at 224 and every size
    /// above it), medium K, small M (stage 4), one K long enough to need panels (the UperNet
    /// head's convs as GEMMs), and a 16 MiB output that leaves the caches (stage 1 at 512 and
    /// up). 0.1-0.5 GFLOP each, so the whole pass stays near a second.
    static let shapes: [(m: Int, k: Int, n: Int)] = [(3136, 64, 256), (784, 128, 512), (49, 512, 2048), (256, 4608, 64), (16384, 64, 256)]
    public static let rowTileCandidates = [1, 2, 4]
    public static let colTileCandidates = [1, 2, 4]
    public static let panelCandidates = [512, 1024, 2048]
    /// How much faster (a fraction of its time) another register tile must be to replace the
    /// device's default one (`GemmTuning.defaults(for:variant:)`). The tiles that suit a CPU
    /// differ by 1.5-2x (4x64 against 6x16 on AVX2); where they run alike (all four within
    /// 5-10% on the Zen 4 VM, run to run) the pass used to pick whichever the VM's noise
    /// favoured, a different tile per cache.
    public static let tileMargin = 0.05

    /// The fastest value of `timings`, except that `incumbent` keeps its place unless another is
    /// faster by more than `margin` (a fraction of the incumbent's time).
    public static func pick<Value: Equatable>(_ timings: [(value: Value, seconds: Double)], incumbent: Value, margin: Double) -> Value {
        guard let fastest = timings.min(by: { $0.seconds < $1.seconds }) else { return incumbent }
        guard let own = timings.first(where: { $0.value == incumbent }) else { return fastest.value }
        return fastest.seconds < own.seconds * (1 - margin) ? fastest.value : incumbent
    }

    /// The tuning for `context`: cached, else timed now (and cached), else the defaults when
    /// tuning is off, the device is not a CPU-variant one (gemm_reg is the CPU kernel) or is a
    /// simulator, or the pass fails (said on stderr; the engine still runs).
    @discardableResult
    public static func prepare(_ context: CLContext, cache: ProgramDiskCache? = ProgramDiskCache.fromEnvironment(),
                               progress: ((String) -> Void)? = nil) -> GemmTuning {
        let mode = ProcessInfo.processInfo.environment[environmentVariable]?.lowercased()
        // A simulator's timings say nothing about any hardware (and Oclgrind would take hours
        // to run the candidates): it keeps the defaults.
        guard context.variant == .cpu, !context.device.isSimulator, mode != "0", mode != "off" else { return context.gemmTuning }
        let file = cache.map { cacheFile(for: context, in: $0) }
        if mode != "retune", let file, let data = FileManager.default.contents(atPath: file.path),
           let tuning = try? JSONDecoder().decode(GemmTuning.self, from: data) {
            context.useGemmTuning(tuning)
            return tuning
        }
        do {
            progress?("tuning gemm_reg for \(context.device.name) (once per device and driver; cached)")
            let tuning = try measure(context)
            context.useGemmTuning(tuning)
            if let file, let data = try? JSONEncoder().encode(tuning) {
                try? FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
                let temporary = file.appendingPathExtension("tmp-\(getpid())")
                if (try? data.write(to: temporary)) != nil, rename(temporary.path, file.path) != 0 {
                    try? FileManager.default.removeItem(at: temporary)
                }
            }
            return tuning
        } catch {
            FileHandle.standardError.write(Data("mila: GEMM tuning failed on \(context.device.name) (\(error)); using the defaults\n".utf8))
            context.useGemmTuning(nil)
            return context.gemmTuning
        }
    }

    /// `<cache folder>/gemm-tuning-<key>.json`, the key built like the kernel binaries' (device
    /// name, driver version, gemm.cl's text, the tuning version).
    public static func cacheFile(for context: CLContext, in cache: ProgramDiskCache) -> URL {
        let source = (try? KernelSource.common.text() + KernelSource.gemm.text()) ?? ""
        let key = ProgramDiskCache.key(deviceName: context.device.name, driverVersion: context.device.driverVersion,
                                       source: source, options: version)
        return cache.folder.appendingPathComponent("gemm-tuning-" + key.map { String(format: "%02x", $0) }.joined() + ".json")
    }

    /// Times every candidate: the register tile on all the shapes, row tiles on the short-K
    /// shapes, column tiles on the large output, then the panel depth on the long-K shape; each the median of 5 device-timed runs
    /// after a warm-up.
    public static func measure(_ context: CLContext) throws -> GemmTuning {
        let cases = try shapes.enumerated().map { index, shape -> (x: DeviceTensor, w: GemmWeights, y: DeviceTensor, k: Int) in
            let x = try Tensor(randomUniform: [shape.m, shape.k], seed: UInt64(2 * index))
            let w = try Tensor(randomUniform: [shape.n, shape.k], seed: UInt64(2 * index + 1))
            let weights = try GemmWeights(context: context, weight: w, bias: nil)
            return (try context.upload(x), weights, try context.empty([shape.m, shape.n]), shape.k)
        }
        func time(_ tuning: GemmTuning, _ selected: [Int]) throws -> Double {
            context.useGemmTuning(tuning)
            var total = 0.0
            for index in selected {
                let c = cases[index]
                _ = try context.gemm(c.x, c.w, provider: .register, output: c.y)  // warm-up (and build)
                var samples: [Double] = []
                for _ in 0..<5 { samples.append(try context.deviceTime { _ = try context.gemm(c.x, c.w, provider: .register, output: c.y) }) }
                total += samples.sorted()[2]
            }
            return total
        }
        var best = GemmTuning.defaults(for: context.device, variant: context.variant)
        let large = cases.indices.filter { cases[$0].y.count >= best.colTilesMinOutput }
        let shortK = cases.indices.filter { cases[$0].k <= best.rowTilesMaxDepth && !large.contains($0) }
        let longK = cases.indices.filter { cases[$0].k > 2048 }
        // One knob at a time, the others at their best so far.
        func choose<Value: Equatable>(_ knob: WritableKeyPath<GemmTuning, Value>, from values: [Value], on selected: [Int],
                                      margin: Double = 0) throws {
            var timings: [(value: Value, seconds: Double)] = []
            for value in values {
                var candidate = best
                candidate[keyPath: knob] = value
                timings.append((value, try time(candidate, selected)))
            }
            best[keyPath: knob] = pick(timings, incumbent: best[keyPath: knob], margin: margin)
        }
        try choose(\.tile, from: GemmTile.all, on: Array(cases.indices), margin: tileMargin)
        try choose(\.rowTiles, from: rowTileCandidates, on: shortK)
        try choose(\.colTiles, from: colTileCandidates, on: large)
        try choose(\.panelRows, from: panelCandidates, on: longK)
        return best
    }
}
