import Foundation
import MilaCore
import MilaImage
@testable import MilaModel
import MilaModelZoo
import MilaOpenCL
import MilaWeights
import Testing

/// The embedded `digits-seg` model on held-out scenes (composed only from digits with
/// index % 5 == 0, Tests/PyTorchReference/train_digits_seg.py): the engine's labels through the
/// segmentation pipeline, their mIoU against the ground truth, and agreement with PyTorch's.
@Suite("digits-seg on held-out scenes") struct DigitsSegTests {
    static let folder = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("digits-seg")
    static func path(_ name: String) -> String { folder.appendingPathComponent(name).path }
    static let about: [String: Any] = {
        let data = try! Data(contentsOf: folder.appendingPathComponent("heldout.json"))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()

    /// IoU per class over all scenes (intersection / union of the pixel sets), and their mean
    /// over the classes that occur in prediction or truth.
    static func iou(_ predicted: [Float], _ truth: [Float], classes: Int) -> (perClass: [Double], mean: Double) {
        var intersection = [Int](repeating: 0, count: classes), union = [Int](repeating: 0, count: classes)
        for (p, t) in zip(predicted, truth) {
            let (a, b) = (Int(p), Int(t))
            if a == b { intersection[a] += 1; union[a] += 1 } else { union[a] += 1; union[b] += 1 }
        }
        let perClass = (0..<classes).map { union[$0] == 0 ? Double.nan : Double(intersection[$0]) / Double(union[$0]) }
        let present = perClass.filter { !$0.isNaN }
        return (perClass, present.reduce(0, +) / Double(max(present.count, 1)))
    }

    @Test func engineLabelsReachTheMIoUAndAgreeWithPyTorch() throws {
        let file = try WeightFile.read(try #require(ModelZoo.data(named: ModelZoo.segmentationDefaultName)), name: "digits-seg")
        let config = try ModelConfig.resolve(for: file, arch: nil)
        let head = try #require(config.segmentation)
        let weights = try WeightBinding.prepare(file: file, config: config)
        let scenes = try NPY.read(Self.path("scenes.npy")), truth = try NPY.read(Self.path("masks.npy"))
        let pytorch = try NPY.read(Self.path("pytorch_labels.npy"))
        let (n, h, w) = (scenes.shape[0], scenes.shape[1], scenes.shape[2])
        // Each scene through the segmentation pipeline (the model's scale keeps 96x96), as one batch.
        let preprocess = SegmentationPreprocess(scale: head.scale, mean: config.mean, std: config.std)
        var batch: [Float] = []
        for i in 0..<n {
            let pixels = scenes.data[(i * h * w * 3)..<((i + 1) * h * w * 3)].map { UInt8($0) }
            let (tensor, _) = try preprocess.tensor(RGBImage(width: w, height: h, pixels: pixels))
            #expect(tensor.shape == [1, 3, h, w])
            batch += tensor.data
        }
        let input = try Layout.channelsLast(try Tensor(shape: [n, 3, h, w], data: batch))
        let graph = try ModelGraph.build(config: config, weightShapes: weights.mapValues(\.shape), batch: n, height: h, width: w,
                                         segmentation: .labels(height: h, width: w))
        let labels = try #require(try CLBackend(context: try CLContext(selector: nil), weights: weights)
            .run(graph, input: input, keep: [])[graph.outputs["labels"]!])
        let (perClass, miou) = Self.iou(labels.data, truth.data, classes: config.numClasses)
        let agreement = Double(zip(labels.data, pytorch.data).filter { $0 == $1 }.count) / Double(labels.count)
        print("digits-seg engine mIoU \(miou) on \(n) held-out scenes; per class \(perClass); agrees with PyTorch on \(agreement)")
        #expect(miou >= 0.70, "held-out mIoU \(miou)")
        #expect(abs(miou - (Self.about["pytorch_miou"] as! Double)) <= 0.005)
        #expect(agreement >= 0.999, "labels agree with PyTorch's on \(agreement) of the pixels")
    }
}
