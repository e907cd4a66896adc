import ArgumentParser
import Foundation
import MilaEngine
import MilaImage

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Top-1 / top-5 accuracy over an ImageFolder tree (one subfolder per class; sorted names are the class indices).")

    @Argument(help: "Folder with one subfolder of images per class.")
    var folder: String

    @OptionGroup var options: ModelOptions
    @OptionGroup var input: InputOptions

    func run() throws {
        try reportingErrors {
            guard options.model != nil else { throw ValidationError("eval needs --model PATH or NAME (e.g. --model digits)") }
            let files = FileManager.default
            let classes = try files.contentsOfDirectory(atPath: folder).filter {
                var isDirectory: ObjCBool = false
                return files.fileExists(atPath: URL(fileURLWithPath: folder).appendingPathComponent($0).path, isDirectory: &isDirectory)
                    && isDirectory.boolValue && !$0.hasPrefix(".")
            }.sorted()
            guard !classes.isEmpty else { throw ValidationError("\(folder) has no class subfolders") }
            var samples: [(path: String, label: Int)] = []
            for (label, name) in classes.enumerated() {
                let dir = URL(fileURLWithPath: folder).appendingPathComponent(name)
                let images = try files.contentsOfDirectory(atPath: dir.path)
                    .filter { ["jpg", "jpeg", "png"].contains(URL(fileURLWithPath: $0).pathExtension.lowercased()) }.sorted()
                samples += images.map { (dir.appendingPathComponent($0).path, label) }
            }
            guard !samples.isEmpty else { throw ValidationError("\(folder) holds no .jpg, .jpeg or .png images") }
            let engine = try Engine(model: options.model, arch: options.arch, stateDictKey: options.stateDict,
                                    backend: try options.backendKind(), device: options.device, precision: options.precision)
            if engine.isSegmentation { throw ValidationError("\(engine.source) is a segmentation model; eval measures classifiers (segment writes label maps)") }
            guard !engine.config.backbone else { throw ValidationError("\(engine.source) is a backbone without a classification head") }
            guard engine.config.numClasses >= classes.count else {
                throw ValidationError("\(folder) has \(classes.count) classes, the model only \(engine.config.numClasses)")
            }
            let preprocess = try input.preprocess(for: engine.config)
            var (top1, top5, failures) = (0, 0, 0)
            let progress = ProgressBar(total: samples.count)
            for (i, sample) in samples.enumerated() {
                do {
                    let (graph, values) = try engine.run(nchw: try preprocess.tensor(try ImageDecoder.decode(sample.path, maxPixels: input.maxPixels)))
                    let ranked = Ranking(logits: values[graph.outputs["logits"]!]!.data).top(5).map(\.index)
                    if ranked.first == sample.label { top1 += 1 }
                    if ranked.contains(sample.label) { top5 += 1 }
                } catch let error as ImageError {
                    failures += 1
                    progress.clear()
                    note("mila-infer: \(error)")
                }
                progress.update(i + 1, suffix: String(format: "top-1 %.2f%%", 100 * Double(top1) / Double(i + 1)))
            }
            progress.finish()
            let n = Double(samples.count - failures)
            print(String(format: "top-1 %.2f%%  top-5 %.2f%%  (%d images, %d classes)", 100 * Double(top1) / n, 100 * Double(top5) / n,
                         samples.count - failures, classes.count))
            if failures > 0 {
                note("\(failures) image(s) could not be read")
                throw ExitCode(1)
            }
        }
    }
}

/// A one-line progress bar on stderr (only when stderr is a terminal, else silent).
final class ProgressBar {
    let total: Int
    let enabled = isatty(2) != 0
    init(total: Int) { self.total = total }

    func update(_ done: Int, suffix: String) {
        guard enabled else { return }
        let width = 30, filled = width * done / max(total, 1)
        let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
        FileHandle.standardError.write(Data("\r[\(bar)] \(done)/\(total) \(suffix)".utf8))
    }

    func clear() { if enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) } }
    func finish() { if enabled { FileHandle.standardError.write(Data("\n".utf8)) } }
}
