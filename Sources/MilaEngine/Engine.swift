import Foundation
import MilaCore
import MilaModel
import MilaModelZoo
import MilaOpenCL
import MilaReference
import MilaWeights

/// Which backend runs the model.
public enum BackendKind: String, CaseIterable, Sendable {
    case opencl
    case reference
}

/// A loaded model ready to run: configuration, prepared weights, one backend, and a graph per
/// input size (built once, with its memory plan cached by the backend).
///
/// Thread safety: an engine may be shared between threads and tasks. Its device work is
/// serialised: `run`, `labels`, `graph`, `releaseGraphs` and the image methods built on them
/// take one lock per engine, so concurrent callers run one after another on its single queue.
/// For concurrency across inputs, batch them (`classify(_ images:)`), or open one engine per
/// device. The calls block the calling thread while the device works: from Swift
/// concurrency, call them from a thread of your own (as `mila-infer serve` does), not from
/// the cooperative pool.
public final class Engine: @unchecked Sendable {
    public let config: ModelConfig
    public let weights: [String: Tensor]
    public let backend: Backend
    public let source: String
    /// How the backend stores the weights.
    public let precision: Precision
    private var graphs: [String: Graph] = [:]
    private let lock = NSRecursiveLock()

    /// Loads `model` (a file path, or the name of an embedded model) or, with no model, random
    /// weights for `arch`. `device` selects the OpenCL device (`CLDiscovery.select`), `variant`
    /// its kernel family (default: by device type, or `MILA_KERNEL_VARIANT`); `precision` how
    /// the weights are stored (fp16 needs cl_khr_fp16; the reference then rounds the same
    /// weights to half).
    public init(model: String?, arch: String? = nil, stateDictKey: String? = nil, backend kind: BackendKind = .opencl,
                device: String? = nil, variant: KernelVariant? = nil, precision: Precision = .fp32, seed: UInt64 = 0) throws {
        self.precision = precision
        if let model {
            let file = try Engine.openModel(model, stateDictKey: stateDictKey)
            config = try ModelConfig.resolve(for: file, arch: arch)
            weights = try WeightBinding.prepare(file: file, config: config)
            source = file.path
        } else if let arch {
            config = try ModelConfig.preset(arch)
            weights = try WeightBinding.prepare(file: try RandomWeights.make(config, seed: seed), config: config)
            source = "random \(config.name) weights (seed \(seed))"
        } else {
            throw ModelError.config("give --model PATH or --arch NAME")
        }
        switch kind {
        case .opencl:
            let context = try CLContext(selector: device, variant: variant)
            GemmTuner.prepare(context, progress: { FileHandle.standardError.write(Data("mila: \($0)\n".utf8)) })
            backend = try CLBackend(context: context, weights: weights, precision: precision)
        case .reference: backend = ReferenceBackend(weights: weights, precision: precision)
        }
    }

    /// `model` as a file path when such a file exists, else as the name of an embedded model
    /// (`ModelZoo`: digits, digits-fg); the error names both possibilities.
    public static func openModel(_ model: String, stateDictKey: String? = nil) throws -> WeightFile {
        if !FileManager.default.fileExists(atPath: model), let data = ModelZoo.data(named: model) {
            return try WeightFile.read(data, name: "embedded model \(model)", stateDictKey: stateDictKey)
        }
        guard FileManager.default.fileExists(atPath: model) else {
            throw WeightFileError(file: model, "no such file, and no embedded model of that name (embedded: \(ModelZoo.names.joined(separator: ", ")))")
        }
        return try WeightFile.open(model, stateDictKey: stateDictKey)
    }

    /// Whether the model is a segmenter (backbone + UPerHead).
    public var isSegmentation: Bool { config.segmentation != nil }

    /// The graph for a (batch, height, width) input, cached; `segmentation` says what a
    /// segmentation graph ends with (ignored by other models).
    public func graph(batch: Int, height: Int, width: Int,
                      segmentation: ModelGraph.SegmentationOutput = .headLogits) throws -> Graph {
        lock.lock(); defer { lock.unlock() }
        let key = "\(batch)x\(height)x\(width) \(segmentation)"
        if let g = graphs[key] { return g }
        let g = try ModelGraph.build(config: config, weightShapes: weights.mapValues(\.shape), batch: batch, height: height, width: width,
                                     segmentation: segmentation)
        try backend.checkSupport(g)
        graphs[key] = g
        return g
    }

    /// Drops the cached graphs and the backend's per-graph device memory (between the sizes of
    /// a sweep, so they do not add up).
    public func releaseGraphs() {
        lock.lock(); defer { lock.unlock() }
        graphs = [:]
        (backend as? CLBackend)?.releasePlans()
    }

    /// Runs an (N, 3, H, W) batch; returns the graph and the values of its outputs (and `keep`).
    public func run(nchw input: Tensor, keep: Set<Int> = [], segmentation: ModelGraph.SegmentationOutput = .headLogits) throws -> (Graph, [Int: Tensor]) {
        guard input.shape.count == 4, input.shape[1] == 3 else {
            throw MilaError.shapeMismatch(op: "run", tensor: "input", expected: "(N, 3, H, W)", actual: input.shape)
        }
        lock.lock(); defer { lock.unlock() }
        let g = try graph(batch: input.shape[0], height: input.shape[2], width: input.shape[3], segmentation: segmentation)
        return (g, try backend.run(g, input: try Layout.channelsLast(input), keep: keep))
    }

    /// A segmentation model's label maps for a preprocessed (N, 3, h, w) batch at (height,
    /// width): the head's logits resized to (h, w), then to (height, width), argmax (mmseg's
    /// whole-image inference), fused so no per-class full-size tensor exists. Returns
    /// (N, height, width) class indices.
    public func labels(nchw input: Tensor, height: Int, width: Int) throws -> [[Int32]] {
        guard isSegmentation else { throw ModelError.config("\(source) is not a segmentation model (no decode_head)") }
        let (g, values) = try run(nchw: input, segmentation: .labels(height: height, width: width))
        let map = values[g.outputs["labels"]!]!
        let n = height * width
        return (0..<input.shape[0]).map { b in map.data[(b * n)..<((b + 1) * n)].map { Int32($0) } }
    }
}
