import ArgumentParser
import Foundation
import MilaCore
import MilaEngine
import MilaImage

/// Which block of a file list this process evaluates: flags first, then the schedulers'
/// variables (Kubernetes Indexed Jobs: JOB_COMPLETION_INDEX; Slurm job arrays:
/// SLURM_ARRAY_TASK_ID normalised by SLURM_ARRAY_TASK_MIN and _STEP, SLURM_ARRAY_TASK_COUNT),
/// then MILA_SHARD_COUNT. ../shared/notes/serving.md section 3.3.
struct Shard: Equatable {
    let index: Int
    let count: Int

    /// Nil when neither flags nor environment ask for sharding.
    static func resolve(index: Int?, count: Int?, environment: [String: String]) throws -> Shard? {
        func number(_ name: String) throws -> Int? {
            guard let text = environment[name] else { return nil }
            guard let n = Int(text) else { throw ValidationError("\(name)='\(text)' is not an integer") }
            return n
        }
        var k = index
        if k == nil, let job = try number("JOB_COMPLETION_INDEX") { k = job }
        if k == nil, let task = try number("SLURM_ARRAY_TASK_ID") {
            let minimum = try number("SLURM_ARRAY_TASK_MIN") ?? 0, step = try number("SLURM_ARRAY_TASK_STEP") ?? 1
            guard step >= 1, (task - minimum) % step == 0 else {
                throw ValidationError("SLURM_ARRAY_TASK_ID \(task) is not SLURM_ARRAY_TASK_MIN \(minimum) plus a multiple of SLURM_ARRAY_TASK_STEP \(step)")
            }
            k = (task - minimum) / step
        }
        let n = try count ?? number("SLURM_ARRAY_TASK_COUNT") ?? number("MILA_SHARD_COUNT")
        switch (k, n) {
        case (nil, nil): return nil
        case (_?, nil): throw ValidationError("a shard index without a shard count: give --shard-count N (or MILA_SHARD_COUNT)")
        case (nil, let n?): guard n == 1 else { throw ValidationError("--shard-count \(n) without a shard index: give --shard-index K") }
            return Shard(index: 0, count: 1)
        case let (k?, n?):
            guard n >= 1, (0..<n).contains(k) else { throw ValidationError("shard index \(k) is not within 0..<\(n) (the shard count)") }
            return Shard(index: k, count: n)
        }
    }

    /// The contiguous block [floor(K L / N), floor((K + 1) L / N)) of L items.
    func range(of total: Int) -> Range<Int> { (index * total / count)..<((index + 1) * total / count) }

    var fileName: String { String(format: "part-%05d-of-%05d.json", index, count) }
}

/// What one shard (or a whole run) counted; merged by summing.
struct EvalCounts: Codable, Equatable {
    var shardIndex: Int
    var shardCount: Int
    /// FNV-1a 64 of the sorted manifest (one "label\tpath relative to the folder" line per image).
    var manifestHash: String
    var manifestImages: Int
    var classes: Int
    var images = 0
    var failures = 0
    var top1 = 0
    var top5 = 0
    var seconds = 0.0

    enum CodingKeys: String, CodingKey {
        case shardIndex = "shard_index", shardCount = "shard_count", manifestHash = "manifest_hash", manifestImages = "manifest_images"
        case classes, images, failures, top1, top5, seconds
    }

    /// eval's summary line (merge prints the same).
    var summary: String {
        let n = Double(max(images, 1))
        return String(format: "top-1 %.2f%%  top-5 %.2f%%  (%d images, %d classes)", 100 * Double(top1) / n, 100 * Double(top5) / n, images, classes)
    }
}

func fnv1a64(_ text: String) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
    return String(format: "%016llx", hash)
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Top-1 / top-5 accuracy over an ImageFolder tree (one subfolder per class; sorted names are the class indices).",
        discussion: """
            Images are decoded on a second thread while the device runs batches of --batch. Sharded over a cluster: \
            each job evaluates a contiguous block of the sorted file list (--shard-index K --shard-count N, or \
            JOB_COMPLETION_INDEX / SLURM_ARRAY_TASK_ID with SLURM_ARRAY_TASK_COUNT or MILA_SHARD_COUNT) and writes \
            DIR/part-KKKKK-of-NNNNN.json (--out DIR) atomically; `mila-infer merge DIR` adds the parts up.
            """)

    @Argument(help: "Folder with one subfolder of images per class.")
    var folder: String

    @OptionGroup var options: ModelOptions
    @OptionGroup var input: InputOptions
    @OptionGroup var batching: BatchOptions

    @Option(name: .customLong("shard-index"), help: "This job's shard, 0..<N (default: $JOB_COMPLETION_INDEX, else the normalised $SLURM_ARRAY_TASK_ID).")
    var shardIndex: Int?

    @Option(name: .customLong("shard-count"), help: "Number of shards N (default: $SLURM_ARRAY_TASK_COUNT, else $MILA_SHARD_COUNT).")
    var shardCount: Int?

    @Option(name: .long, help: "Folder for the part file (needed when sharded; also written for a whole run when given).")
    var out: String?

    func run() throws {
        try reportingErrors {
            guard options.model != nil else { throw ValidationError("eval needs --model PATH or NAME (e.g. --model digits)") }
            let shard = try Shard.resolve(index: shardIndex, count: shardCount, environment: ProcessInfo.processInfo.environment)
            if shard != nil && out == nil { throw ValidationError("a sharded eval needs --out DIR for its part file") }
            let files = FileManager.default
            let classes = try files.contentsOfDirectory(atPath: folder).filter {
                var isDirectory: ObjCBool = false
                return files.fileExists(atPath: URL(fileURLWithPath: folder).appendingPathComponent($0).path, isDirectory: &isDirectory)
                    && isDirectory.boolValue && !$0.hasPrefix(".")
            }.sorted()
            guard !classes.isEmpty else { throw ValidationError("\(folder) has no class subfolders") }
            var samples: [(path: String, label: Int)] = []
            var manifest = ""
            for (label, name) in classes.enumerated() {
                let dir = URL(fileURLWithPath: folder).appendingPathComponent(name)
                let images = try files.contentsOfDirectory(atPath: dir.path)
                    .filter { ["jpg", "jpeg", "png"].contains(URL(fileURLWithPath: $0).pathExtension.lowercased()) }.sorted()
                samples += images.map { (dir.appendingPathComponent($0).path, label) }
                for image in images { manifest += "\(label)\t\(name)/\(image)\n" }
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
            let mine = shard.map { Array(samples[$0.range(of: samples.count)]) } ?? samples
            var counts = EvalCounts(shardIndex: shard?.index ?? 0, shardCount: shard?.count ?? 1, manifestHash: fnv1a64(manifest),
                                    manifestImages: samples.count, classes: classes.count)
            let progress = ProgressBar(total: mine.count)
            let started = Date()
            let maxPixels = input.maxPixels
            let batches = PrefetchingBatches(count: mine.count, batchSize: batching.size(for: engine)) { i in
                try preprocess.tensor(try ImageDecoder.decode(mine[i].path, maxPixels: maxPixels))
            }
            var done = 0
            for batch in batches {
                for (_, error) in batch.failures {
                    guard error is ImageError else { throw error }
                    counts.failures += 1
                    progress.clear()
                    note("mila-infer: \(error)")
                }
                if !batch.items.isEmpty {
                    let (graph, values) = try engine.run(nchw: try Tensor.stacking(batch.items.map(\.tensor)))
                    let logits = values[graph.outputs["logits"]!]!
                    let c = logits.shape[1]
                    for (row, item) in batch.items.enumerated() {
                        let ranked = Ranking(logits: logits.data[(row * c)..<((row + 1) * c)]).top(5).map(\.index)
                        if ranked.first == mine[item.index].label { counts.top1 += 1 }
                        if ranked.contains(mine[item.index].label) { counts.top5 += 1 }
                    }
                }
                done += batch.items.count + batch.failures.count
                counts.images = done - counts.failures
                progress.update(done, suffix: String(format: "top-1 %.2f%%", 100 * Double(counts.top1) / Double(max(counts.images, 1))))
            }
            progress.finish()
            counts.images = mine.count - counts.failures
            counts.seconds = Date().timeIntervalSince(started)
            print(counts.summary)
            note(String(format: "%.1f images/s (%d images in %.2f s, batch %d)", Double(mine.count) / max(counts.seconds, 1e-9), mine.count,
                        counts.seconds, batching.size(for: engine)))
            if let out {
                try writeAtomically(counts, folder: out, name: (shard ?? Shard(index: 0, count: 1)).fileName)
            }
            if counts.failures > 0 {
                note("\(counts.failures) image(s) could not be read")
                throw ExitCode(1)
            }
        }
    }

    /// Writes `counts` as `name` in `folder` through a temporary file and a rename, so a part
    /// file is whole or absent (a retried shard replaces it).
    func writeAtomically(_ counts: EvalCounts, folder: String, name: String) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        let final = URL(fileURLWithPath: folder).appendingPathComponent(name)
        let temporary = URL(fileURLWithPath: folder).appendingPathComponent(".\(name).\(ProcessInfo.processInfo.processIdentifier).tmp")
        try encoder.encode(counts).write(to: temporary)
        guard rename(temporary.path, final.path) == 0 else {
            throw ValidationError("cannot rename \(temporary.path) to \(final.path): \(String(cString: strerror(errno)))")
        }
    }
}

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Add up the part files of a sharded eval (DIR/part-KKKKK-of-NNNNN.json) and print eval's summary line.",
        discussion: "Every part 0..<N must be there, all of the same file list (manifest hash); a missing or mismatched part is an error.")

    @Argument(help: "The folder the shards wrote to (--out).")
    var folder: String

    @Flag(name: .long, help: "Print the merged counts as JSON instead.")
    var json = false

    func run() throws {
        try reportingErrors {
            let names = try FileManager.default.contentsOfDirectory(atPath: folder)
                .filter { $0.hasPrefix("part-") && $0.hasSuffix(".json") }.sorted()
            guard !names.isEmpty else { throw ValidationError("\(folder) has no part-*.json files (eval --out writes them)") }
            let decoder = JSONDecoder()
            let parts = try names.map { name -> (String, EvalCounts) in
                let path = URL(fileURLWithPath: folder).appendingPathComponent(name)
                do { return (name, try decoder.decode(EvalCounts.self, from: try Data(contentsOf: path))) } catch {
                    throw ValidationError("\(path.path): not an eval part file (\(error))")
                }
            }
            let first = parts[0].1
            for (name, part) in parts {
                guard part.shardCount == first.shardCount else {
                    throw ValidationError("\(name) is one of \(part.shardCount) shards, \(parts[0].0) one of \(first.shardCount)")
                }
                guard part.manifestHash == first.manifestHash, part.manifestImages == first.manifestImages else {
                    throw ValidationError("\(name) evaluated another file list (manifest \(part.manifestHash), \(part.manifestImages) images) than \(parts[0].0) (\(first.manifestHash), \(first.manifestImages))")
                }
                guard name == Shard(index: part.shardIndex, count: part.shardCount).fileName else {
                    throw ValidationError("\(name) holds shard \(part.shardIndex) of \(part.shardCount)")
                }
            }
            let present = Set(parts.map(\.1.shardIndex))
            let missing = (0..<first.shardCount).filter { !present.contains($0) }
            guard missing.isEmpty else {
                let shown = missing.prefix(10).map(String.init).joined(separator: ", ") + (missing.count > 10 ? ", ..." : "")
                throw ValidationError("\(missing.count) of \(first.shardCount) parts missing in \(folder): shard \(shown)")
            }
            var total = EvalCounts(shardIndex: 0, shardCount: first.shardCount, manifestHash: first.manifestHash,
                                   manifestImages: first.manifestImages, classes: first.classes)
            for (_, part) in parts {
                total.images += part.images
                total.failures += part.failures
                total.top1 += part.top1
                total.top5 += part.top5
                total.seconds += part.seconds
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                print(String(decoding: try encoder.encode(total), as: UTF8.self))
            } else {
                print(total.summary)
            }
            if total.failures > 0 { note("\(total.failures) image(s) could not be read") }
        }
    }
}
