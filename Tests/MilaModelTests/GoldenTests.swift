import Foundation
import MilaCore
import MilaModel
import MilaOpenCL
import MilaReference
import MilaWeights
import Testing

/// The golden fixtures from Tests/PyTorchReference/make_fixtures.py: a tiny MLLA (embed 16, one
/// block per stage) with random weights and BatchNorm statistics, 2 images at 98x150.
enum Golden {
    static let folder = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("tiny")
    static func path(_ name: String) -> String { folder.appendingPathComponent(name).path }
}

/// The issue's bound: float32 rounding differences between two correct implementations of the
/// whole network stay around 1e-7..1e-6 relative; a wrong op is off by 1e-2 or more.
let modelTolerance = 1e-5

@Suite("Golden fixtures from the PyTorch reference") struct GoldenTests {
    static func load(_ file: String) throws -> (ModelConfig, [String: Tensor]) {
        let weights = try WeightFile.open(Golden.path(file))
        let config = try ModelConfig.resolve(for: weights, arch: nil)
        return (config, try WeightBinding.prepare(file: weights, config: config))
    }

    static func check(_ backend: Backend, config: ModelConfig, weights: [String: Tensor]) throws {
        let input = try Layout.channelsLast(try NPY.read(Golden.path("input.npy")))
        let graph = try ModelGraph.build(config: config, weightShapes: weights.mapValues(\.shape),
                                         batch: input.shape[0], height: input.shape[1], width: input.shape[2])
        let outputs = try backend.run(graph, input: input, keep: [])
        let logits = try #require(outputs[graph.outputs["logits"]!])
        let expected = try NPY.read(Golden.path("logits.npy"))
        #expect(logits.shape == expected.shape)
        #expect(logits.relativeL2(to: expected) <= modelTolerance, "logits relative L2 \(logits.relativeL2(to: expected)) on \(backend.name)")
        for s in 0..<4 {
            let stage = try #require(outputs[graph.outputs["stage\(s)"]!])
            let want = try Layout.channelsLast(try NPY.read(Golden.path("stage\(s).npy")))
            #expect(stage.shape == want.shape, "stage \(s) shape")
            #expect(stage.relativeL2(to: want) <= modelTolerance, "stage \(s) relative L2 \(stage.relativeL2(to: want)) on \(backend.name)")
        }
    }

    @Test func configComesFromSafetensorsMetadata() throws {
        let (config, _) = try Self.load("weights.safetensors")
        #expect(config.embedDim == 16 && config.depths == [1, 1, 1, 1] && config.numHeads == [2, 2, 4, 4] && config.numClasses == 10)
    }

    @Test func referenceBackendMatchesPyTorch() throws {
        let (config, weights) = try Self.load("weights.safetensors")
        try Self.check(ReferenceBackend(weights: weights), config: config, weights: weights)
    }

    @Test func openCLBackendMatchesPyTorch() throws {
        let (config, weights) = try Self.load("weights.safetensors")
        try Self.check(CLBackend(context: try CLContext(), weights: weights), config: config, weights: weights)
    }

    @Test func trainingCheckpointLoadsTheSameWeights() throws {
        let safetensors = try WeightFile.open(Golden.path("weights.safetensors"))
        let checkpoint = try WeightFile.open(Golden.path("checkpoint.pth"))
        #expect(checkpoint.format == "pytorch")
        #expect(Set(checkpoint.tensors.keys) == Set(safetensors.tensors.keys))
        for name in safetensors.tensors.keys where safetensors.tensors[name]!.dtype != .int64 {
            #expect(try checkpoint.tensor(name) == (try safetensors.tensor(name)), "\(name)")
        }
        // No metadata and no preset of that size: the error says which flag to give.
        do {
            _ = try ModelConfig.resolve(for: checkpoint, arch: nil)
            Issue.record("a tiny checkpoint matched a preset")
        } catch let error as ModelError {
            #expect(error.description.contains("--arch"))
        }
    }
}

@Suite("Backbone checkpoints") struct BackboneTests {
    /// A detector-style file: the backbone under `backbone.` with norm0..norm3, plus a neck tensor.
    @Test(arguments: [BackendKindForTest.reference, .opencl])
    func stageOutputsGetTheirNorms(_ kind: BackendKindForTest) throws {
        let file = try WeightFile.open(Golden.path("backbone.safetensors"))
        #expect(file.droppedTensors == 1)
        let config = try ModelConfig.resolve(for: file, arch: nil)
        #expect(config.backbone)
        let weights = try WeightBinding.prepare(file: file, config: config)
        let input = try Layout.channelsLast(try NPY.read(Golden.path("input.npy")))
        let graph = try ModelGraph.build(config: config, weightShapes: weights.mapValues(\.shape), batch: 2, height: 98, width: 150)
        #expect(graph.outputs["logits"] == nil)
        let backend: Backend = kind == .reference ? ReferenceBackend(weights: weights) : CLBackend(context: try CLContext(), weights: weights)
        let values = try backend.run(graph, input: input, keep: [])
        for s in 0..<4 {
            let want = try Layout.channelsLast(try NPY.read(Golden.path("backbone_stage\(s).npy")))
            let got = try #require(values[graph.outputs["stage\(s)"]!])
            #expect(got.relativeL2(to: want) <= modelTolerance, "stage \(s): \(got.relativeL2(to: want))")
        }
    }
}

enum BackendKindForTest: String, CaseIterable, Sendable { case reference, opencl }

@Suite("Forget-gated models against the PyTorch reference") struct ForgetGateGoldenTests {
    @Test(arguments: ["fg_bidirectional", "fg_causal"], [BackendKindForTest.reference, .opencl])
    func matchesPyTorch(_ name: String, _ kind: BackendKindForTest) throws {
        let file = try WeightFile.open(Golden.path("\(name).safetensors"))
        let config = try ModelConfig.resolve(for: file, arch: nil)
        #expect(config.attention == .forgetGate)
        #expect(config.bidirectional == (name == "fg_bidirectional") && config.normalize == (name == "fg_bidirectional"))
        let weights = try WeightBinding.prepare(file: file, config: config)
        let input = try Layout.channelsLast(try NPY.read(Golden.path("input.npy")))
        let graph = try ModelGraph.build(config: config, weightShapes: weights.mapValues(\.shape), batch: 2, height: 98, width: 150)
        let backend: Backend = kind == .reference ? ReferenceBackend(weights: weights) : CLBackend(context: try CLContext(), weights: weights)
        let values = try backend.run(graph, input: input, keep: [])
        let logits = try #require(values[graph.outputs["logits"]!])
        let expected = try NPY.read(Golden.path("\(name)_logits.npy"))
        #expect(logits.relativeL2(to: expected) <= modelTolerance, "\(name) logits on \(kind): \(logits.relativeL2(to: expected))")
        for s in 0..<4 {
            let want = try Layout.channelsLast(try NPY.read(Golden.path("\(name)_stage\(s).npy")))
            let got = try #require(values[graph.outputs["stage\(s)"]!])
            #expect(got.relativeL2(to: want) <= modelTolerance, "\(name) stage \(s) on \(kind): \(got.relativeL2(to: want))")
        }
    }
}
