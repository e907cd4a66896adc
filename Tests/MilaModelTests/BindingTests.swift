import Foundation
import MilaCore
import MilaModel
import MilaWeights
import Testing

@Suite("Weight binding") struct BindingTests {
    /// The golden weights with one change, written to a temporary safetensors file.
    static func variant(_ change: (inout [String: Tensor]) throws -> Void) throws -> WeightFile {
        let golden = try WeightFile.open(Golden.path("weights.safetensors"))
        var tensors: [String: Tensor] = [:]
        for name in golden.tensors.keys where golden.tensors[name]!.dtype != .int64 { tensors[name] = try golden.tensor(name) }
        try change(&tensors)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mila-binding-\(UUID().uuidString).safetensors").path
        try WeightFile.writeSafeTensors(tensors, metadata: golden.metadata, to: path)
        return try WeightFile.open(path)
    }

    static func expectError(_ file: WeightFile, contains text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            let config = try ModelConfig.resolve(for: file, arch: nil)
            _ = try WeightBinding.prepare(file: file, config: config)
            Issue.record("binding succeeded", sourceLocation: sourceLocation)
        } catch {
            #expect("\(error)".contains(text), "\(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func missingTensorIsNamed() throws {
        let file = try Self.variant { $0["layers.1.blocks.0.attn.qk.weight"] = nil }
        Self.expectError(file, contains: "missing tensor layers.1.blocks.0.attn.qk.weight, expected shape (64, 32)")
    }

    @Test func wrongShapeNamesBothShapes() throws {
        let file = try Self.variant { $0["head.bias"] = try Tensor(zeros: [11]) }
        Self.expectError(file, contains: "tensor head.bias has shape (11), expected (10)")
    }

    @Test func unusedTensorIsNamed() throws {
        let file = try Self.variant { $0["layers.0.blocks.0.extra.weight"] = try Tensor(zeros: [3]) }
        Self.expectError(file, contains: "layers.0.blocks.0.extra.weight (3)")
    }

    @Test func ropeTablesAndBatchCountersAreAccepted() throws {
        let file = try Self.variant { $0["layers.0.blocks.0.attn.rope.rotations"] = try Tensor(zeros: [25, 38, 8, 2]) }
        let config = try ModelConfig.resolve(for: file, arch: nil)
        #expect(throws: Never.self) { try WeightBinding.prepare(file: file, config: config) }
    }

    @Test func unknownArchitectureSaysWhichFlag() {
        #expect(throws: ModelError.self) { try ModelConfig.preset("mlla_xl") }
        #expect(throws: Never.self) { try ModelConfig.preset("MLLA_T") }
    }
}
