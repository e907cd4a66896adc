import ArgumentParser
import Foundation
import MilaCore
import MilaEngine
import MilaImage
import MilaModel
import MilaModelZoo
import MilaWeights

/// How images become network inputs: --resolution / --size / --no-crop over the model's defaults.
struct InputOptions: ParsableArguments {
    @Option(name: .long, help: "Square input size R (default: the model's image size, 224 for the released models).")
    var resolution: Int?

    @Option(name: .long, help: "Input size HxW, e.g. 384x512 (instead of --resolution).")
    var size: String?

    @Flag(name: .customLong("no-crop"), help: "Resize the whole image to the input size instead of resize-then-center-crop.")
    var noCrop = false

    @Option(name: .customLong("max-pixels"), help: "Refuse images of more pixels (width x height) than this, from the file header, before decoding.")
    var maxPixels: Int = ImageDecoder.defaultMaxPixels

    func preprocess(for config: ModelConfig) throws -> Preprocess {
        if resolution != nil && size != nil { throw ValidationError("give --resolution or --size, not both") }
        var (h, w) = (config.imageSize[0], config.imageSize[1])
        if let resolution {
            guard resolution >= 1 else { throw ValidationError("--resolution must be positive") }
            (h, w) = (resolution, resolution)
        }
        if let parsed = try parseSize(size) { (h, w) = parsed }
        return Preprocess(height: h, width: w, cropFraction: config.cropFraction, mean: config.mean, std: config.std, crop: !noCrop)
    }
}

struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Classify images (JPEG or PNG) and print the top classes.",
        discussion: """
            Without --model (and without --arch) the embedded digit classifier `digits` runs. Images are decoded on \
            a second thread while the device runs batches of --batch. A file that cannot be read is reported with \
            its name and skipped; the exit status is then 1.
            """)

    @Argument(help: "Image files.")
    var images: [String]

    @OptionGroup var options: ModelOptions
    @OptionGroup var input: InputOptions
    @OptionGroup var batching: BatchOptions

    @Option(name: .long, help: "How many classes to show per image.")
    var top: Int = 5

    @Flag(name: .long, help: "Print JSON Lines: {\"image\", \"top\": [{\"index\", \"label\", \"probability\"}]} per image.")
    var json = false

    @Option(name: .customLong("save-input"), help: "Also write each image's network input (1 x 3 x H x W, normalised) as DIR/<image file name>.npy.")
    var saveInput: String?

    func run() throws {
        try reportingErrors {
            guard top >= 1 else { throw ValidationError("--top must be at least 1") }
            // No model and no architecture: the embedded digit classifier.
            let model = options.model ?? (options.arch == nil ? ModelZoo.defaultName : nil)
            let engine = try Engine(model: model, arch: options.arch, stateDictKey: options.stateDict,
                                    backend: try options.backendKind(), device: options.device, precision: options.precision)
            if engine.isSegmentation { throw ValidationError("\(engine.source) is a segmentation model; use segment") }
            guard !engine.config.backbone else {
                throw ValidationError("\(engine.source) is a backbone without a classification head; use run --features")
            }
            let preprocess = try input.preprocess(for: engine.config)
            let labels = engine.config.classLabels
            if let saveInput { try FileManager.default.createDirectory(atPath: saveInput, withIntermediateDirectories: true) }
            var failures = 0
            let maxPixels = input.maxPixels
            let batches = PrefetchingBatches(count: images.count, batchSize: batching.size(for: engine)) { [images] i in
                try preprocess.tensor(try ImageDecoder.decode(images[i], maxPixels: maxPixels))
            }
            for batch in batches {
                for (_, error) in batch.failures {
                    guard error is ImageError else { throw error }
                    failures += 1
                    note("mila-infer: \(error)")
                }
                guard !batch.items.isEmpty else { continue }
                if let saveInput {
                    for item in batch.items {
                        let name = URL(fileURLWithPath: images[item.index]).lastPathComponent + ".npy"
                        try NPY.write(item.tensor, to: URL(fileURLWithPath: saveInput).appendingPathComponent(name).path)
                    }
                }
                let (graph, values) = try engine.run(nchw: try Tensor.stacking(batch.items.map(\.tensor)))
                let logits = values[graph.outputs["logits"]!]!
                let c = logits.shape[1]
                for (row, item) in batch.items.enumerated() {
                    let path = images[item.index]
                    let ranked = Ranking(logits: logits.data[(row * c)..<((row + 1) * c)]).top(top)
                    if json {
                        let entries = ranked.map { ["index": $0.index, "label": labels[$0.index], "probability": $0.probability] as [String: Any] }
                        let object: [String: Any] = ["image": path, "top": entries]
                        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
                        print(String(decoding: data, as: UTF8.self))
                    } else {
                        print(path)
                        for r in ranked { print(String(format: "  %7.4f  ", r.probability) + "\(labels[r.index]) (\(r.index))") }
                    }
                }
            }
            if failures > 0 { throw ExitCode(1) }
        }
    }
}
