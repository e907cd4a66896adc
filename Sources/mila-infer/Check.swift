import ArgumentParser
import Foundation
import MilaCore
import MilaEngine
import MilaModel
import MilaOpenCL
import MilaReference

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the OpenCL backend and the CPU reference on the same input and compare them op by op.",
        discussion: """
            Prints each op's max abs error and relative L2 (OpenCL vs reference), then the logits' \
            relative L2. Exit status 1 when an op exceeds \(Check.opTolerance) or the logits exceed \(Check.logitsTolerance). \
            With --precision fp16 the reference rounds the same weights to half as the device stores them (so the \
            tolerances are unchanged), and a further column gives each op's relative L2 against the fp32 reference: \
            the agreement fp16 costs, reported, not judged. With only --arch, random weights are used.
            """)

    /// Per op: errors accumulate along the network, so later ops carry the rounding of earlier
    /// ones (a correct engine stays near 1e-6; a wrong op is off by 1e-2 or more).
    static let opTolerance = 1e-4
    static let logitsTolerance = 1e-5

    @OptionGroup var options: ModelOptions

    @Option(name: .long, help: "Input size HxW (default: the model's image size).")
    var size: String?

    @Option(name: .long, help: "Seed of the random input (and of random weights).")
    var seed: UInt64 = 1

    func run() throws {
        try reportingErrors {
            let engine = try Engine(model: options.model, arch: options.arch, stateDictKey: options.stateDict, backend: .opencl,
                                    device: options.device, precision: options.precision, seed: seed)
            let (height, width) = try parseSize(size) ?? (engine.config.imageSize[0], engine.config.imageSize[1])
            let graph = try engine.graph(batch: 1, height: height, width: width)
            let input = try Tensor(randomUniform: [1, height, width, 3], in: -2...2, seed: seed)
            let everything = Set(graph.nodes.map(\.id))
            let half = engine.precision == .fp16
            note("running OpenCL (\(engine.source), \(height)x\(width), \(engine.precision) weights)...")
            let opencl = try engine.backend.run(graph, input: input, keep: everything)
            note(half ? "running the CPU reference with the weights rounded to fp16..." : "running the CPU reference...")
            let reference = try ReferenceBackend(weights: engine.weights, precision: engine.precision).run(graph, input: input, keep: everything)
            var fp32: [Int: Tensor] = [:]
            if half {
                note("running the fp32 CPU reference...")
                fp32 = try ReferenceBackend(weights: engine.weights).run(graph, input: input, keep: everything)
            }
            var failures = 0
            print(column("op", 44) + column("kind", 18) + column("max abs err", 13, right: true) + column("rel L2", 13, right: true)
                  + (half ? column("vs fp32", 13, right: true) : ""))
            for node in graph.nodes.dropFirst() {
                let (a, e) = (opencl[node.id]!, reference[node.id]!)
                let (maxError, l2) = (a.maxAbsDifference(to: e), a.relativeL2(to: e))
                let bad = !(l2 <= Self.opTolerance)
                if bad { failures += 1 }
                let agreement = half ? column(String(format: "%.3e", a.relativeL2(to: fp32[node.id]!)), 13, right: true) : ""
                print(column(node.name, 44) + column(node.op.kind, 18) + column(String(format: "%.3e", maxError), 13, right: true)
                      + column(String(format: "%.3e", l2), 13, right: true) + agreement + (bad ? "  <- exceeds \(Self.opTolerance)" : ""))
            }
            // The network's final output: the logits, or a backbone's last stage output.
            let (finalName, finalID) = graph.outputs["logits"].map { ("logits", $0) } ?? ("stage\(engine.config.stages - 1)", graph.outputs["stage\(engine.config.stages - 1)"]!)
            let logitsL2 = opencl[finalID]!.relativeL2(to: reference[finalID]!)
            print("\(finalName) relative L2: " + String(format: "%.3e (tolerance %.0e)", logitsL2, Self.logitsTolerance)
                  + (half ? " against the reference with fp16-rounded weights" : ""))
            if half, let fp32Final = fp32[finalID] {
                var line = "\(finalName) against the fp32 reference: relative L2 " + String(format: "%.3e", opencl[finalID]!.relativeL2(to: fp32Final))
                if finalName == "logits" {
                    let same = zip(opencl[finalID]!.argmaxRows(), fp32Final.argmaxRows()).filter { $0 == $1 }.count
                    line += ", top-1 the same for \(same) of \(fp32Final.shape[0]) image(s)"
                }
                print(line)
            }
            if let cl = engine.backend as? CLBackend {
                let plan = MemoryPlan(graph)
                print(String(format: "planned activation memory: %.1f MiB in one arena of %d slots (%d values); ",
                             Double(cl.plannedBytes(graph)) / 1_048_576, plan.slotSizes.count, graph.nodes.count)
                      + String(format: "weights on the device (\(engine.precision.rawValue)): %.1f MiB", Double(cl.weightBytes) / 1_048_576))
            }
            if failures > 0 || !(logitsL2 <= Self.logitsTolerance) {
                note("check failed: \(failures) op(s) over tolerance")
                throw ExitCode(1)
            }
        }
    }
}

extension Tensor {
    /// The index of the largest value of each row of a (rows, columns) tensor.
    func argmaxRows() -> [Int] {
        let columns = shape.last ?? 1
        return (0..<(count / columns)).map { r in
            let row = data[(r * columns)..<((r + 1) * columns)]
            return row.indices.max { row[$0] < row[$1] }! - r * columns
        }
    }
}

/// "HxW" -> (H, W).
func parseSize(_ text: String?) throws -> (Int, Int)? {
    guard let text else { return nil }
    let parts = text.lowercased().split(separator: "x").compactMap { Int($0) }
    guard parts.count == 2, parts[0] >= 1, parts[1] >= 1 else { throw ValidationError("--size must look like 224x224, not '\(text)'") }
    return (parts[0], parts[1])
}

/// `text` padded with spaces to `width` (left-aligned unless `right`).
func column(_ text: String, _ width: Int, right: Bool = false) -> String {
    let padding = String(repeating: " ", count: max(1, width - text.count))
    return right ? padding + text : text + padding
}
