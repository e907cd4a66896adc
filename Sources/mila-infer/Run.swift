import ArgumentParser
import Foundation
import MilaCore
import MilaEngine
import MilaWeights

extension BackendKind: ExpressibleByArgument {}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a preprocessed (N, 3, H, W) float32 batch and write the logits.",
        discussion: "The input is a .npy file, already normalised. Any H and W work (padded as the official backbones do). A backbone checkpoint (norm0..norm3, no head) writes only --features.")

    @OptionGroup var options: ModelOptions

    @Option(name: .long, help: "Input batch (.npy, float32, N x 3 x H x W).")
    var input: String

    @Option(name: .long, help: "Where to write the logits (.npy, N x classes). Default: print the top-5 per image.")
    var output: String?

    @Option(name: .long, help: "Folder for the four stage outputs, stage0.npy .. stage3.npy, each N x C_s x H_s x W_s.")
    var features: String?

    func run() throws {
        try reportingErrors {
            let engine = try Engine(model: options.model, arch: options.arch, stateDictKey: options.stateDict,
                                    backend: try options.backendKind(), device: options.device)
            let batch = try NPY.read(input)
            if engine.config.backbone && output != nil {
                throw ValidationError("\(engine.source) is a backbone without a classification head: there are no logits for --output; use --features DIR")
            }
            let (graph, values) = try engine.run(nchw: batch)
            if let logitsID = graph.outputs["logits"] {
                try report(values[logitsID]!)
            } else if features == nil {
                note("backbone model: no logits; give --features DIR to write the stage outputs")
            }
            if let features {
                try FileManager.default.createDirectory(atPath: features, withIntermediateDirectories: true)
                for s in 0..<engine.config.stages {
                    let map = values[graph.outputs["stage\(s)"]!]!
                    try NPY.write(try Layout.channelsFirst(map), to: URL(fileURLWithPath: features).appendingPathComponent("stage\(s).npy").path)
                }
            }
        }
    }

    /// Writes the logits to --output, or prints each image's top-5 logits.
    func report(_ logits: Tensor) throws {
        if let output {
            try NPY.write(logits, to: output)
            return
        }
        let classes = logits.shape[1]
        for n in 0..<logits.shape[0] {
            let row = Array(logits.data[(n * classes)..<((n + 1) * classes)])
            let top = row.indices.sorted { row[$0] > row[$1] }.prefix(5)
            print("image \(n): " + top.map { "\($0) (\(String(format: "%.4f", row[$0])))" }.joined(separator: ", "))
        }
    }
}
