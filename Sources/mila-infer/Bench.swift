import ArgumentParser
import Foundation
import MilaCore
import MilaEngine
import MilaOpenCL

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Throughput against resolution: whole forward passes (input upload to logits download) timed per input size.",
        discussion: """
            Random weights when only --arch is given (default: --arch mlla_t; mlla_b_upernet is the released \
            segmentation model), so no checkpoint is needed. A segmentation forward ends at the decode head's logits. Per resolution: \
            --warmup untimed runs, then --runs timed ones; median, min and max wall time. gflops_per_s divides the graph's \
            counted FLOPs (a multiply-add is 2) by the median; peak_mem_mb is the planned activation memory plus the \
            weights on the device, in MiB. A size that does not fit the device gets a row with the reason and the sweep \
            goes on. --profile adds the device time per op kind and per stage (OpenCL profiling events) and the share of \
            the forward spent outside kernels; --compare-reference also runs the CPU reference where it is predicted to \
            take under a minute, with its time, the speedup and the logits' relative L2.
            """)

    @OptionGroup var options: ModelOptions

    @Option(name: .long, help: "Comma-separated square sizes, or HxW entries (e.g. 224,512x768). Default: 224,384,512,768,1024; for segmentation models 512x512,512x1024,512x2048,1024x2048.")
    var resolutions: String?

    static let classifierSizes = "224,384,512,768,1024"
    static let segmentationSizes = "512x512,512x1024,512x2048,1024x2048"

    @Option(name: .long, help: "Images per forward pass.")
    var batch: Int = 1

    @Option(name: .long, help: "Timed runs per resolution.")
    var runs: Int = 5

    @Option(name: .long, help: "Untimed runs first, per resolution.")
    var warmup: Int = 1

    @Option(name: .long, help: "table, csv or json.")
    var format: String = "table"

    @Option(name: .long, help: "Write an SVG plot of images/s and megapixels/s against resolution to this file.")
    var plot: String?

    @Flag(name: .long, help: "Time per op kind and per stage from OpenCL profiling events, and the time outside kernels.")
    var profile = false

    @Flag(name: .customLong("compare-reference"), help: "Also run the CPU reference where it takes under a minute.")
    var compareReference = false

    @Option(name: .long, help: "Seed of the random weights and inputs.")
    var seed: UInt64 = 0

    func validate() throws {
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
        guard warmup >= 0 else { throw ValidationError("--warmup must be 0 or more") }
        guard ["table", "csv", "json"].contains(format) else { throw ValidationError("--format must be table, csv or json, not '\(format)'") }
        _ = try sizes(segmentation: false)
    }

    func sizes(segmentation: Bool) throws -> [(height: Int, width: Int)] {
        let text = resolutions ?? (segmentation ? Self.segmentationSizes : Self.classifierSizes)
        let entries = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard !entries.isEmpty else { throw ValidationError("--resolutions needs at least one size") }
        return try entries.map { entry in
            if let r = Int(entry) {
                guard r >= 1 else { throw ValidationError("--resolutions: \(entry) is not a positive size") }
                return (r, r)
            }
            guard let parsed = try? parseSize(entry) else { throw ValidationError("--resolutions: '\(entry)' is neither R nor HxW") }
            return parsed
        }
    }

    func run() throws {
        try reportingErrors {
            let kind = try options.backendKind()
            let arch = options.model == nil && options.arch == nil ? "mlla_t" : options.arch
            let engine = try Engine(model: options.model, arch: arch, stateDictKey: options.stateDict, backend: kind,
                                    device: options.device, precision: options.precision, seed: seed)
            let sizes = try sizes(segmentation: engine.isSegmentation)
            let reference = compareReference && kind == .opencl
                ? try Engine(model: options.model, arch: arch, stateDictKey: options.stateDict, backend: .reference,
                                 precision: options.precision, seed: seed) : nil
            if profile && kind != .opencl { throw ValidationError("--profile reads OpenCL profiling events: use it with --backend opencl") }
            let header = BenchHeader(engine: engine)
            // A preset's name, else the model's (an embedded model or the file name).
            let archName = engine.config.name != "custom" ? engine.config.name
                : URL(fileURLWithPath: options.model ?? "custom").deletingPathExtension().lastPathComponent
            var rows: [BenchRow] = []
            var profiles: [(size: String, profile: ForwardProfile)] = []
            let progress = ProgressBar(total: sizes.count * (warmup + runs))
            var referenceSecondsPerFlop: Double?
            for (index, size) in sizes.enumerated() {
                let label = "\(size.height)x\(size.width)"
                progress.update(index * (warmup + runs), suffix: label)
                var row = BenchRow(backend: kind.rawValue, device: header.deviceName, arch: archName, height: size.height, width: size.width,
                                   batch: batch)
                row.precision = engine.precision.rawValue
                do {
                    let measured = try measure(engine, size: size) { done in
                        progress.update(index * (warmup + runs) + done, suffix: label)
                    }
                    row.fill(measured)
                    if profile, let cl = engine.backend as? CLBackend {
                        profiles.append((label, try ForwardProfile.measure(engine: engine, backend: cl, input: measured.input)))
                    }
                    if let reference {
                        let flops = measured.flops
                        let predicted = referenceSecondsPerFlop.map { $0 * flops }
                        var refRow = BenchRow(backend: "reference", device: "CPU (Swift, Float64 accumulation)", arch: archName,
                                              height: size.height, width: size.width, batch: batch)
                        if let predicted, predicted > 60 {
                            refRow.note = String(format: "skipped: predicted %.0f s (over a minute)", predicted)
                        } else {
                            progress.clear()
                            note("mila-infer: running the CPU reference at \(label)" + (predicted.map { String(format: " (~%.0f s)", $0) } ?? ""))
                            let start = Date()
                            let (graph, values) = try reference.run(nchw: measured.input)
                            let seconds = Date().timeIntervalSince(start)
                            referenceSecondsPerFlop = seconds / flops
                            refRow.fill(Measured(times: [seconds], flops: flops, peakBytes: measured.referenceBytes, input: measured.input,
                                                 logits: values[graph.outputs["logits"] ?? graph.outputs.values.first!]!, referenceBytes: 0))
                            row.speedup = seconds / row.msMedian! * 1e3
                            row.logitsRelativeL2 = measured.logits.relativeL2(to: refRow.logits!)
                        }
                        rows.append(row)
                        rows.append(refRow)
                        continue
                    }
                } catch {
                    row.note = Self.reason(error)
                    engine.releaseGraphs()
                }
                rows.append(row)
            }
            progress.update(sizes.count * (warmup + runs), suffix: "done")
            progress.finish()
            let report = BenchReport(header: header, rows: rows, profiles: profiles, compare: reference != nil)
            switch format {
            case "csv": print(report.csv(), terminator: "")
            case "json": print(report.json())
            default: print(report.table(), terminator: "")
            }
            if format == "csv", !profiles.isEmpty { FileHandle.standardError.write(Data(report.profileTables().utf8)) }
            if let plot {
                do {
                    try BenchPlot.svg(rows: rows, title: "mila-infer bench: \(archName), batch \(batch), on \(header.deviceName)")
                        .write(toFile: plot, atomically: true, encoding: .utf8)
                } catch {
                    throw ValidationError("cannot write the plot to \(plot): \((error as NSError).localizedDescription)")
                }
            }
        }
    }

    /// One resolution: warm-up and timed forward passes (upload, every kernel, logits download).
    func measure(_ engine: Engine, size: (height: Int, width: Int), progress: (Int) -> Void) throws -> Measured {
        let graph = try engine.graph(batch: batch, height: size.height, width: size.width)
        let flops = graph.flops
        let planned: Int
        if let cl = engine.backend as? CLBackend {
            planned = cl.plannedBytes(graph)
            let device = cl.context.device
            // The arena is one allocation: it must fit the largest allocation, and with the
            // weights the device memory.
            if UInt64(planned) > device.maxAllocation || UInt64(planned + cl.weightBytes) > device.globalMemory {
                throw BenchSkip(message: String(format: "does not fit: %.0f MiB of activations (one allocation of at most %.0f MiB) plus %.0f MiB of weights, device memory %.0f MiB",
                                                Double(planned) / 1_048_576, Double(device.maxAllocation) / 1_048_576,
                                                Double(cl.weightBytes) / 1_048_576, Double(device.globalMemory) / 1_048_576))
            }
        } else {
            planned = MemoryPlan(graph).plannedBytes
        }
        let input = try Tensor(randomUniform: [batch, 3, size.height, size.width], in: -2...2,
                               seed: seed &+ UInt64(size.height * 7919 + size.width))
        var logits: Tensor?
        for i in 0..<warmup {
            logits = try forward(engine, input)
            progress(i + 1)
        }
        var times: [Double] = []
        for i in 0..<runs {
            let start = DispatchTime.now().uptimeNanoseconds
            logits = try forward(engine, input)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
            progress(warmup + i + 1)
        }
        let weights = (engine.backend as? CLBackend)?.weightBytes ?? engine.weights.values.reduce(0) { $0 + $1.count * 4 }
        let hostWeights = engine.weights.values.reduce(0) { $0 + $1.count * 4 }
        return Measured(times: times, flops: flops, peakBytes: planned + weights, input: input, logits: logits!,
                        referenceBytes: MemoryPlan(graph).plannedBytes + hostWeights)
    }

    func forward(_ engine: Engine, _ input: Tensor) throws -> Tensor {
        let (graph, values) = try engine.run(nchw: input)
        return values[graph.outputs["logits"] ?? graph.outputs.values.first!]!
    }

    /// The reason a resolution has no figures: out of device memory is said as such.
    static func reason(_ error: Error) -> String {
        if let skip = error as? BenchSkip { return skip.message }
        let text = "\(error)"
        if text.contains("MEM_OBJECT_ALLOCATION_FAILURE") || text.contains("OUT_OF_RESOURCES") || text.contains("OUT_OF_HOST_MEMORY") {
            return "does not fit the device: \(text)"
        }
        return "failed: \(text)"
    }
}

struct BenchSkip: Error {
    let message: String
}

/// What one resolution measured.
struct Measured {
    let times: [Double]
    let flops: Double
    let peakBytes: Int
    let input: Tensor
    let logits: Tensor
    /// The reference backend's planned activations plus its weights (for its row).
    let referenceBytes: Int
}
