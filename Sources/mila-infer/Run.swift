import ArgumentParser
import Foundation
import MilaCore
import MilaEngine
import MilaModel
import MilaWeights

extension BackendKind: ExpressibleByArgument {}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a preprocessed (N, 3, H, W) float32 batch and write the logits.",
        discussion: """
            The input is a .npy file, already normalised. Any H and W work (padded as the official backbones do). \
            A backbone checkpoint (norm0..norm3, no head) writes only --features. A segmentation model writes the \
            decode head's logits (N, K, ceil(H/4), ceil(W/4)); with --output-size HxW, the logits resized to the \
            input's size and then to HxW (N, K, H, W), as mmseg's whole-image inference returns them.
            """)

    @OptionGroup var options: ModelOptions

    @Option(name: .long, help: "Input batch (.npy, float32, N x 3 x H x W).")
    var input: String

    @Option(name: .long, help: "Where to write the logits (.npy, N x classes). Default: print the top-5 per image.")
    var output: String?

    @Option(name: .long, help: "Folder for the four stage outputs, stage0.npy .. stage3.npy, each N x C_s x H_s x W_s.")
    var features: String?

    @Option(name: .customLong("output-size"), help: "Segmentation models: write the logits after both resizes, to the input's size and then to HxW.")
    var outputSize: String?

    func run() throws {
        try reportingErrors {
            let engine = try Engine(model: options.model, arch: options.arch, stateDictKey: options.stateDict,
                                    backend: try options.backendKind(), device: options.device, precision: options.precision)
            let batch = try NPY.read(input)
            if engine.config.backbone && !engine.isSegmentation && output != nil {
                throw ValidationError("\(engine.source) is a backbone without a classification head: there are no logits for --output; use --features DIR")
            }
            var segmentation = ModelGraph.SegmentationOutput.headLogits
            if let outputSize {
                guard engine.isSegmentation else { throw ValidationError("--output-size is for segmentation models; \(engine.source) is not one") }
                guard let (h, w) = try? parseSize(outputSize) else { throw ValidationError("--output-size must look like 512x683, not '\(outputSize)'") }
                segmentation = .fullLogits(height: h, width: w)
            }
            let (graph, values) = try engine.run(nchw: batch, segmentation: segmentation)
            if engine.isSegmentation {
                let id = graph.outputs["full_logits"] ?? graph.outputs["logits"]!
                let logits = try Layout.channelsFirst(values[id]!)
                if let output { try NPY.write(logits, to: output) } else { Self.summarise(logits, labels: engine.config.classLabels) }
            } else if let logitsID = graph.outputs["logits"] {
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

    /// Per image of (N, K, H, W) logits: its size and the classes of the most pixels (argmax).
    static func summarise(_ logits: Tensor, labels: [String]) {
        let (n, k, h, w) = (logits.shape[0], logits.shape[1], logits.shape[2], logits.shape[3])
        for b in 0..<n {
            var counts = [Int](repeating: 0, count: k)
            for p in 0..<(h * w) {
                var best = 0
                for c in 1..<k where logits.data[(b * k + c) * h * w + p] > logits.data[(b * k + best) * h * w + p] { best = c }
                counts[best] += 1
            }
            let top = counts.indices.sorted { counts[$0] > counts[$1] }.prefix(5).filter { counts[$0] > 0 }
            print("image \(b) (\(h)x\(w) logits): " + top.map { "\(labels[$0]) \(String(format: "%.1f%%", 100 * Double(counts[$0]) / Double(h * w)))" }.joined(separator: ", "))
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
