import MilaCore
import MilaModel
import MilaOpenCL
import MilaReference
import MilaWeights
import Testing

/// Full-size MLLA-T with random weights: the OpenCL backend against the Float64 reference, at
/// the training size and at a non-square size that is not a multiple of 32 (odd maps before
/// every downsample: 198x150 -> 50x38 -> 25x19 -> 13x10 -> 7x5).
@Suite("MLLA-T, OpenCL vs reference", .serialized) struct FullModelTests {
    static let config = try! ModelConfig.preset("mlla_t")
    static let weights = try! WeightBinding.prepare(file: try RandomWeights.make(config, seed: 42), config: config)

    @Test(arguments: [(224, 224), (198, 150)])
    func openCLMatchesReference(_ height: Int, _ width: Int) throws {
        let graph = try ModelGraph.build(config: Self.config, weightShapes: Self.weights.mapValues(\.shape), batch: 1, height: height, width: width)
        let input = try Tensor(randomUniform: [1, height, width, 3], in: -2...2, seed: UInt64(height * 1000 + width))
        let reference = try ReferenceBackend(weights: Self.weights).run(graph, input: input, keep: [])
        let opencl = try CLBackend(context: try CLContext(), weights: Self.weights).run(graph, input: input, keep: [])
        for (role, id) in graph.outputs.sorted(by: { $0.key < $1.key }) {
            let error = opencl[id]!.relativeL2(to: reference[id]!)
            #expect(error <= modelTolerance, "\(role) at \(height)x\(width): relative L2 \(error)")
        }
        let logitsID = graph.outputs["logits"]!
        func top5(_ t: Tensor) -> [Int] { Array(t.data.indices.sorted { t.data[$0] > t.data[$1] }.prefix(5)) }
        #expect(top5(opencl[logitsID]!) == top5(reference[logitsID]!))
    }
}
