import ArgumentParser
import Foundation
import MilaCore
import MilaEngine
import MilaImage
import MilaModel
import MilaModelZoo
import MilaWeights

struct Segment: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Segment images (JPEG or PNG): write a label map per image and print the classes it shows.",
        discussion: """
            Runs mmseg's whole-image test pipeline: EXIF orientation, keep-ratio resize to --scale with OpenCV's \
            bilinear arithmetic, (x - mean) / std in RGB, the network at that size, the logits resized to the \
            network input's size and then to the image's, argmax. Writes DIR/<image name>.png, an 8-bit palette \
            PNG of class indices (0..K-1) at the image's own size coloured by the model's palette, and prints \
            the classes covering at least 1% of the pixels. Without --model the embedded `\(ModelZoo.segmentationDefaultName)` \
            model runs. A file that cannot be read is reported with its name and skipped; the exit status is then 1.
            """)

    @Argument(help: "Image files.")
    var images: [String]

    @OptionGroup var options: ModelOptions

    @Option(name: .long, help: "Folder for the label maps (created if missing).")
    var out: String = "."

    @Flag(name: .long, help: "Also write DIR/<name>.overlay.png: the image blended 50% with the class colours.")
    var overlay = false

    @Flag(name: .long, help: "Print JSON Lines: {\"image\", \"size\": [H, W], \"mask\", \"classes\": [{\"index\", \"label\", \"share\"}]} per image.")
    var json = false

    @Option(name: .long, help: "Keep-ratio resize target LONGxSHORT (default: the model's, 2048x512 for ADE20K models).")
    var scale: String?

    @Option(name: .customLong("save-input"), help: "Also write each image's network input (1 x 3 x h x w, normalised) as DIR/<image file name>.npy.")
    var saveInput: String?

    @Option(name: .customLong("max-pixels"), help: "Refuse images of more pixels (width x height) than this, from the file header, before decoding.")
    var maxPixels: Int = ImageDecoder.defaultMaxPixels

    @OptionGroup var batching: BatchOptions

    /// Classes covering less of the image than this are not listed.
    static let minimumShare = 0.01

    func run() throws {
        try reportingErrors {
            let model = options.model ?? (options.arch == nil ? ModelZoo.segmentationDefaultName : nil)
            let engine = try Engine(model: model, arch: options.arch, stateDictKey: options.stateDict,
                                    backend: try options.backendKind(), device: options.device, precision: options.precision)
            guard let head = engine.config.segmentation else {
                throw ValidationError("\(engine.source) is not a segmentation model (it has no decode_head); use classify")
            }
            guard engine.config.numClasses <= 256 else {
                throw ValidationError("\(engine.source) has \(engine.config.numClasses) classes; label maps are 8-bit palette PNGs (at most 256)")
            }
            var target = head.scale
            if let scale {
                guard let parsed = try? parseSize(scale) else { throw ValidationError("--scale must look like 2048x512, not '\(scale)'") }
                target = [parsed.0, parsed.1]
            }
            let preprocess = SegmentationPreprocess(scale: target, mean: engine.config.mean, std: engine.config.std)
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            if let saveInput { try FileManager.default.createDirectory(atPath: saveInput, withIntermediateDirectories: true) }
            let labels = engine.config.classLabels, palette = engine.config.classPalette
            var failures = 0
            let maxPixels = self.maxPixels
            // Batches of images with the same network input and output size (label maps come
            // back at the image's own size).
            let batches = PrefetchingBatches<(image: RGBImage, tensor: Tensor)>(
                count: images.count, batchSize: batching.size(for: engine),
                key: { $0.tensor.shape + [$0.image.height, $0.image.width] }
            ) { [images] i in
                let image = try ImageDecoder.decode(images[i], maxPixels: maxPixels)
                return (image, try preprocess.tensor(image).tensor)
            }
            for batch in batches {
                for (_, error) in batch.failures {
                    guard error is ImageError else { throw error }
                    failures += 1
                    note("mila-infer: \(error)")
                }
                guard let first = batch.items.first?.tensor.image else { continue }
                let maps = try engine.labels(nchw: try Tensor.stacking(batch.items.map(\.tensor.tensor)), height: first.height, width: first.width)
                for (item, map) in zip(batch.items, maps) {
                    let (path, image, tensor) = (images[item.index], item.tensor.image, item.tensor.tensor)
                    do {
                        if let saveInput {
                            try NPY.write(tensor, to: URL(fileURLWithPath: saveInput).appendingPathComponent(URL(fileURLWithPath: path).lastPathComponent + ".npy").path)
                        }
                        let stem = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
                        let mask = URL(fileURLWithPath: out).appendingPathComponent("\(stem).png").path
                        let indices = map.map { UInt8(truncatingIfNeeded: $0) }
                        try write(try ImageEncoder.palettePNG(indices: indices, width: image.width, height: image.height, palette: palette), to: mask)
                        if overlay {
                            let blended = Self.overlay(image, labels: indices, palette: palette)
                            try ImageEncoder.writePNG(blended, to: URL(fileURLWithPath: out).appendingPathComponent("\(stem).overlay.png").path)
                        }
                        let shares = Self.shares(map, classes: engine.config.numClasses).filter { $0.share >= Self.minimumShare }
                        if json {
                            let classes = shares.map { ["index": $0.index, "label": labels[$0.index], "share": $0.share] as [String: Any] }
                            let object: [String: Any] = ["image": path, "size": [image.height, image.width], "mask": mask, "classes": classes]
                            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
                            print(String(decoding: data, as: UTF8.self))
                        } else {
                            print("\(path) (\(image.height)x\(image.width)) -> \(mask)")
                            for s in shares { print(String(format: "  %6.2f%%  ", 100 * s.share) + "\(labels[s.index]) (\(s.index))") }
                        }
                    } catch let error as ImageError {
                        failures += 1
                        note("mila-infer: \(error)")
                    }
                }
            }
            if failures > 0 { throw ExitCode(1) }
        }
    }

    func write(_ data: Data, to path: String) throws {
        do { try data.write(to: URL(fileURLWithPath: path)) } catch {
            throw ImageError(file: path, message: "cannot write: \((error as NSError).localizedDescription)")
        }
    }

    /// Share of the pixels per class, largest first (ties by index).
    static func shares(_ map: [Int32], classes: Int) -> [(index: Int, share: Double)] {
        var counts = [Int](repeating: 0, count: classes)
        for label in map where label >= 0 && Int(label) < classes { counts[Int(label)] += 1 }
        let total = Double(max(map.count, 1))
        return counts.indices.filter { counts[$0] > 0 }.map { ($0, Double(counts[$0]) / total) }
            .sorted { $0.share != $1.share ? $0.share > $1.share : $0.index < $1.index }
    }

    /// mmseg's show_result at opacity 0.5: image * 0.5 + colour * 0.5, truncated to uint8.
    static func overlay(_ image: RGBImage, labels: [UInt8], palette: [[Int]]) -> RGBImage {
        var pixels = image.pixels
        for p in 0..<labels.count {
            let colour = palette[Int(labels[p])]
            for c in 0..<3 { pixels[p * 3 + c] = UInt8((Int(image.pixels[p * 3 + c]) + colour[c]) / 2) }
        }
        return RGBImage(width: image.width, height: image.height, pixels: pixels)
    }
}
