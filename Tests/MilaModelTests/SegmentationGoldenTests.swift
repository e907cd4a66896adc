import Foundation
import MilaCore
@testable import MilaModel
import MilaOpenCL
import MilaReference
import MilaWeights
import Testing

/// The tiny MLLA + UperNet of Tests/PyTorchReference/make_seg_fixtures.py, saved by mmcv's
/// IterBasedRunner (meta with CLASSES, PALETTE and the config text, state_dict with the
/// auxiliary head and randomised BatchNorm statistics, AdamW state), with the PyTorch
/// reference's (upernet.py) head logits and whole-image logits at sizes that exercise every
/// padding and pooling rule.
enum SegmentationFixtures {
    static let folder = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("segmentation")
    static func path(_ name: String) -> String { folder.appendingPathComponent(name).path }

    static let manifest: [String: Any] = {
        let data = try! Data(contentsOf: folder.appendingPathComponent("manifest.json"))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()

    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let outSize: [Int]
        var testDescription: String { "\(name) -> \(outSize[0])x\(outSize[1])" }
    }

    static let cases: [Case] = (manifest["cases"] as! [[String: Any]]).map {
        Case(name: $0["name"] as! String, outSize: $0["out_size"] as! [Int])
    }

    /// Loaded once: the checkpoint's own configuration and the prepared (BN-folded) weights.
    static let model: Result<(ModelConfig, [String: Tensor]), Error> = Result {
        let file = try WeightFile.open(path(manifest["model"] as! String))
        let config = try ModelConfig.resolve(for: file, arch: nil)
        return (config, try WeightBinding.prepare(file: file, config: config))
    }

    /// The reference backend computes in Float64 with plain loops (debug builds are slow): it runs
    /// the cases below this many input pixels; OpenCL runs all of them.
    static let referencePixelLimit = 7_000
}

/// Head and whole-image logits: float32 against PyTorch's float32, whose own distance from the
/// float64 model is <= 1.2e-6 relative L2 on these cases (manifest `*_vs_float64`); 1e-5 leaves
/// room for the different summation orders and no room for a wrong tap, bin or weight.
let segmentationTolerance = 1e-5
/// Labels: the fixtures' closest top-two margins are >= 1.8e-4 (manifest), so only a pixel whose
/// top two classes are that close may differ; the issue asks for 99.99%.
let segmentationLabelAgreement = 0.9999

@Suite("MLLA + UperNet against the PyTorch reference") struct SegmentationGoldenTests {
    typealias F = SegmentationFixtures

    @Test func configurationComesFromTheCheckpoint() throws {
        let (config, weights) = try F.model.get()
        let m = F.manifest["config"] as! [String: Any]
        #expect(config.embedDim == m["embed_dim"] as! Int && config.depths == m["depths"] as! [Int] && config.numHeads == m["num_heads"] as! [Int])
        #expect(config.segmentation?.channels == m["channels"] as? Int && config.segmentation?.poolScales == m["pool_scales"] as? [Int])
        #expect(config.numClasses == m["num_classes"] as! Int)
        #expect(config.classLabels == m["classes"] as! [String])
        #expect(config.classPalette == m["palette"] as! [[Int]])
        #expect(config.mean == [123.675, 116.28, 103.53] && config.std == [58.395, 57.12, 57.375])
        // BatchNorm folded at load; the auxiliary head, rope tables and counters are not bound.
        #expect(weights["decode_head.fpn_bottleneck#folded.weight"] != nil)
        #expect(!weights.keys.contains { $0.hasPrefix("auxiliary_head.") || $0.contains("running_mean") || $0.contains("rotations") })
    }

    static func run(_ backend: Backend, _ c: F.Case, output: ModelGraph.SegmentationOutput) throws -> (Graph, [Int: Tensor]) {
        let (config, weights) = try F.model.get()
        let input = try Layout.channelsLast(try NPY.read(F.path("\(c.name).input.npy")))
        let graph = try ModelGraph.build(config: config, weightShapes: weights.mapValues(\.shape), batch: input.shape[0],
                                         height: input.shape[1], width: input.shape[2], segmentation: output)
        return (graph, try backend.run(graph, input: input, keep: []))
    }

    static func backend(_ kind: String) throws -> Backend {
        let (_, weights) = try F.model.get()
        return kind == "opencl" ? CLBackend(context: try CLContext(selector: nil), weights: weights) : ReferenceBackend(weights: weights)
    }

    static let runs: [(F.Case, String)] = F.cases.flatMap { c -> [(F.Case, String)] in
        let shape = try! NPY.read(F.path("\(c.name).input.npy")).shape
        return shape[2] * shape[3] <= F.referencePixelLimit ? [(c, "opencl"), (c, "reference")] : [(c, "opencl")]
    }

    @Test(arguments: runs)
    func headAndWholeImageLogits(_ c: F.Case, backend kind: String) throws {
        let backend = try Self.backend(kind)
        let (graph, values) = try Self.run(backend, c, output: .fullLogits(height: c.outSize[0], width: c.outSize[1]))
        let head = try Layout.channelsFirst(try #require(values[graph.outputs["logits"]!]))
        let expectedHead = try NPY.read(F.path("\(c.name).head.npy"))
        #expect(head.shape == expectedHead.shape)
        #expect(head.relativeL2(to: expectedHead) <= segmentationTolerance, "\(c.name) \(kind): head logits relative L2 \(head.relativeL2(to: expectedHead))")
        let full = try Layout.channelsFirst(try #require(values[graph.outputs["full_logits"]!]))
        let expectedFull = try NPY.read(F.path("\(c.name).full.npy"))
        #expect(full.shape == expectedFull.shape)
        #expect(full.relativeL2(to: expectedFull) <= segmentationTolerance, "\(c.name) \(kind): full logits relative L2 \(full.relativeL2(to: expectedFull))")
    }

    /// The reference's labels come from its materialised resizes (one small case suffices).
    static let labelRuns = runs.filter { $0.1 == "opencl" || $0.0.name == "seg_41x29" }

    @Test(arguments: labelRuns)
    func labelsOfTheFusedResizeArgmax(_ c: F.Case, backend kind: String) throws {
        let backend = try Self.backend(kind)
        let (graph, values) = try Self.run(backend, c, output: .labels(height: c.outSize[0], width: c.outSize[1]))
        let labels = try #require(values[graph.outputs["labels"]!])
        let expected = try NPY.read(F.path("\(c.name).labels.npy"))
        #expect(labels.count == expected.count)
        let agree = zip(labels.data, expected.data).filter { $0 == $1 }.count
        let share = Double(agree) / Double(expected.count)
        #expect(share >= segmentationLabelAgreement, "\(c.name) \(kind): \(expected.count - agree) of \(expected.count) labels differ")
    }
}
