import Foundation
import MilaCore
import MilaImage
import MilaModel

/// One class of a classification: its index, label and softmax probability.
public struct Classification: Equatable, Sendable {
    public let index: Int
    public let label: String
    public let probability: Double
}

/// A segmentation label map: one class index per pixel, row-major, at the image's size.
public struct LabelMap: Equatable, Sendable {
    public let width: Int
    public let height: Int
    public let labels: [Int32]
}

/// Softmax probabilities of one row of logits (in Double, shifted by the maximum), ranked.
public struct Ranking: Sendable {
    public let probabilities: [Double]

    public init(logits: some Collection<Float>) {
        let m = Double(logits.max() ?? 0)
        let e = logits.map { exp(Double($0) - m) }
        let total = e.reduce(0, +)
        probabilities = e.map { $0 / total }
    }

    /// The k most probable classes, highest first (ties by index).
    public func top(_ k: Int) -> [(index: Int, probability: Double)] {
        probabilities.indices.sorted { probabilities[$0] != probabilities[$1] ? probabilities[$0] > probabilities[$1] : $0 < $1 }
            .prefix(k).map { ($0, probabilities[$0]) }
    }
}

extension Engine {
    /// The classifier's preprocessing at its own input size (`config.imageSize`, resize and
    /// center crop by `config.cropFraction`, the model's mean and std), as `classify` uses it.
    public var preprocess: Preprocess {
        Preprocess(height: config.imageSize[0], width: config.imageSize[1], cropFraction: config.cropFraction,
                   mean: config.mean, std: config.std, crop: true)
    }

    /// The classes of each image, top `top` first, through `preprocess` (or the given one). The
    /// images run as one batch: (N, 3, H, W) at the preprocessing's size.
    public func classify(_ images: [RGBImage], top: Int = 5, preprocess: Preprocess? = nil) throws -> [[Classification]] {
        guard !isSegmentation, !config.backbone else {
            throw ModelError.config("\(source) has no classification head (use labels / segment, or run for features)")
        }
        guard !images.isEmpty else { return [] }
        let p = preprocess ?? self.preprocess
        let batch = try Tensor.stacking(try images.map { try p.tensor($0) })
        let (g, values) = try run(nchw: batch)
        let logits = values[g.outputs["logits"]!]!
        let classes = logits.shape[1], names = config.classLabels
        return (0..<images.count).map { b in
            Ranking(logits: logits.data[(b * classes)..<((b + 1) * classes)]).top(top).map {
                Classification(index: $0.index, label: names[$0.index], probability: $0.probability)
            }
        }
    }

    /// Classifies one image.
    public func classify(_ image: RGBImage, top: Int = 5) throws -> [Classification] {
        try classify([image], top: top)[0]
    }

    /// Decodes a JPEG or PNG file (refusing more than `maxPixels` from its header) and classifies it.
    public func classify(imageAt path: String, top: Int = 5, maxPixels: Int = ImageDecoder.defaultMaxPixels) throws -> [Classification] {
        try classify(try ImageDecoder.decode(path, maxPixels: maxPixels), top: top)
    }

    /// Decodes JPEG or PNG bytes and classifies them.
    public func classify(imageData: Data, top: Int = 5, maxPixels: Int = ImageDecoder.defaultMaxPixels) throws -> [Classification] {
        try classify(try ImageDecoder.decode(imageData, name: "image data", maxPixels: maxPixels), top: top)
    }

    /// A segmentation model's label map for an image at its own size, through mmseg's test
    /// pipeline (keep-ratio resize to the head's scale, or `scale` as (long, short)).
    public func segment(_ image: RGBImage, scale: [Int]? = nil) throws -> LabelMap {
        guard let head = config.segmentation else { throw ModelError.config("\(source) is not a segmentation model (no decode_head)") }
        let pipeline = SegmentationPreprocess(scale: scale ?? head.scale, mean: config.mean, std: config.std)
        let (tensor, _) = try pipeline.tensor(image)
        let map = try labels(nchw: tensor, height: image.height, width: image.width)[0]
        return LabelMap(width: image.width, height: image.height, labels: map)
    }
}

extension Tensor {
    /// Tensors of equal shape (1, ...) stacked along the first dimension: (N, ...).
    public static func stacking(_ parts: [Tensor]) throws -> Tensor {
        guard let first = parts.first else { throw MilaError.invalidArgument(op: "stack", message: "nothing to stack") }
        guard first.shape.first == 1, parts.allSatisfy({ $0.shape == first.shape }) else {
            throw MilaError.invalidArgument(op: "stack", message: "every part must have the shape of the first, \(Shape.describe(first.shape))")
        }
        var data = [Float]()
        data.reserveCapacity(first.data.count * parts.count)
        for p in parts { data += p.data }
        return try Tensor(shape: [parts.count] + first.shape.dropFirst(), data: data)
    }
}
