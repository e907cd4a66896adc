import Foundation
import MilaCore
@testable import MilaModel
import MilaOpenCL
import MilaReference
import MilaWeights
import Testing

/// Checkpoints written by the real software in the layouts users download (Tests/PyTorchReference/
/// make_checkpoint_fixtures.py: torch.save at protocols 2-5 and in the legacy format, the authors'
/// training layout with a yacs CfgNode, DataParallel names, fp16 / bf16, views and shared storages,
/// mmcv 1.x save_checkpoint, timm CheckpointSaver with EMA), each with PyTorch's logits.
enum CheckpointFixtures {
    static let folder = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("checkpoints")
    static func path(_ name: String) -> String { folder.appendingPathComponent(name).path }

    struct Case: CustomTestStringConvertible, Sendable {
        let file: String
        let logits: String
        let stateDict: String?
        let format: String
        let configFromFile: Bool
        let strippedPrefix: Bool
        var testDescription: String { file + (stateDict.map { " --state-dict \($0)" } ?? "") }
    }

    static let manifest: [String: Any] = {
        let data = try! Data(contentsOf: folder.appendingPathComponent("manifest.json"))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()

    static let cases: [Case] = (manifest["fixtures"] as! [[String: Any]]).map {
        Case(file: $0["file"] as! String, logits: $0["logits"] as! String, stateDict: $0["state_dict"] as? String,
             format: $0["format"] as! String, configFromFile: $0["config_from_file"] as! Bool, strippedPrefix: $0["stripped_prefix"] as! Bool)
    }

    /// The fixtures' network (embed 16, two stages), as the script's CONFIG says.
    static var config: ModelConfig {
        let c = manifest["config"] as! [String: Any]
        var config = ModelConfig(name: "tiny", embedDim: c["embed_dim"] as! Int, depths: c["depths"] as! [Int], numHeads: c["num_heads"] as! [Int])
        config.numClasses = c["num_classes"] as! Int
        return config
    }
}

@Suite("Checkpoint layouts written by PyTorch, mmcv and timm") struct CheckpointLayoutTests {
    typealias F = CheckpointFixtures

    static func logits(_ backend: Backend, config: ModelConfig, weights: [String: Tensor]) throws -> Tensor {
        let input = try Layout.channelsLast(try NPY.read(F.path("input.npy")))
        let graph = try ModelGraph.build(config: config, weightShapes: weights.mapValues(\.shape),
                                         batch: input.shape[0], height: input.shape[1], width: input.shape[2])
        let outputs = try backend.run(graph, input: input, keep: [])
        return try #require(outputs[graph.outputs["logits"]!])
    }

    @Test(arguments: F.cases)
    func loadsAndMatchesPyTorchsLogits(_ c: F.Case) throws {
        let before = try Data(contentsOf: URL(fileURLWithPath: F.path(c.file)))
        let modified = try FileManager.default.attributesOfItem(atPath: F.path(c.file))[.modificationDate] as? Date
        let file = try WeightFile.open(F.path(c.file), stateDictKey: c.stateDict)
        #expect(file.format == c.format)
        #expect((file.metadata["pytorch.stripped_prefix"] == "module.") == c.strippedPrefix)
        #expect(!file.tensors.keys.contains { $0.hasPrefix("module.") })
        let config: ModelConfig
        if c.configFromFile {
            // The training run's yacs config describes the model: no --arch needed.
            config = try ModelConfig.resolve(for: file, arch: nil)
            #expect(config.embedDim == F.config.embedDim && config.depths == F.config.depths && config.numHeads == F.config.numHeads
                    && config.numClasses == F.config.numClasses && config.imageSize == [64, 64] && config.cropFraction == 0.875)
        } else {
            config = F.config
        }
        let weights = try WeightBinding.prepare(file: file, config: config)
        let expected = try NPY.read(F.path(c.logits))
        let got = try Self.logits(ReferenceBackend(weights: weights), config: config, weights: weights)
        #expect(got.shape == expected.shape)
        #expect(got.relativeL2(to: expected) <= modelTolerance, "\(c.file): logits relative L2 \(got.relativeL2(to: expected))")
        // Nothing the user gave is modified.
        #expect(try Data(contentsOf: URL(fileURLWithPath: F.path(c.file))) == before)
        #expect(try FileManager.default.attributesOfItem(atPath: F.path(c.file))[.modificationDate] as? Date == modified)
    }

    @Test func theOpenCLBackendRunsALegacyCheckpoint() throws {
        let file = try WeightFile.open(F.path("legacy_training.pth"))
        let config = try ModelConfig.resolve(for: file, arch: nil)
        let weights = try WeightBinding.prepare(file: file, config: config)
        let got = try Self.logits(CLBackend(context: try CLContext(), weights: weights), config: config, weights: weights)
        let expected = try NPY.read(F.path("logits.npy"))
        #expect(got.relativeL2(to: expected) <= modelTolerance, "logits relative L2 \(got.relativeL2(to: expected))")
    }

    @Test func mmcvClassNamesBecomeTheLabels() throws {
        let file = try WeightFile.open(F.path("mmcv.pth"))
        #expect(file.metadata["pytorch.state_dict"] == "state_dict")
        var config = F.config
        config.labels = try ModelConfig.checkpointClasses(file)
        #expect(config.classLabels == (0..<7).map { "class \($0)" })
    }

    @Test func aMissingStateDictKeyListsTheCandidates() throws {
        do {
            _ = try WeightFile.open(F.path("timm_ema.pth.tar"), stateDictKey: "model_ema")
            Issue.record("opened with a key that is not there")
        } catch let error as WeightFileError {
            #expect(error.message.contains("no state dict under key 'model_ema'"), "\(error)")
            #expect(error.message.contains("entries holding tensors: state_dict, state_dict_ema"), "\(error)")
        }
        do {
            _ = try WeightFile.open(F.path("mlla_training_p2.pth"), stateDictKey: "config")
            Issue.record("opened a yacs config as a state dict")
        } catch let error as WeightFileError {
            #expect(error.message.contains("it is a object of class yacs.config.CfgNode"), "\(error)")
        }
    }
}
