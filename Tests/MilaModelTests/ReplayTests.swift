import MilaCore
import MilaModel
import MilaOpenCL
import MilaWeights
import Testing

/// The OpenCL backend records a planned forward's launches on one run and replays them on the
/// next (CLContext.record / replay): a replayed forward must give bit-identical outputs to one
/// built on the host, for any input, across other graphs run in between, and for the
/// forget-gated model, whose first run uploads its gate factors (so that run is not recorded).
@Suite("Recorded forwards", .serialized) struct ReplayTests {
    static func check(config: ModelConfig, weights: [String: Tensor], sizes: [(Int, Int)]) throws {
        let shapes = weights.mapValues(\.shape)
        let graphs = try sizes.map { try ModelGraph.build(config: config, weightShapes: shapes, batch: 1, height: $0.0, width: $0.1) }
        let inputs = try sizes.enumerated().map { i, size in
            try (0..<3).map { try Tensor(randomUniform: [1, size.0, size.1, 3], in: -2...2, seed: UInt64(100 * i + $0)) }
        }
        let replaying = CLBackend(context: try CLContext(), weights: weights)
        // Each graph three times, the graphs interleaved: runs 2-3 of each are replays (3 for
        // the forget gate, whose first run is not recordable).
        var got: [[[Int: Tensor]]] = graphs.map { _ in [] }
        for round in 0..<3 {
            for (g, graph) in graphs.enumerated() { got[g].append(try replaying.run(graph, input: inputs[g][round], keep: [])) }
        }
        for (g, graph) in graphs.enumerated() {
            for round in 0..<3 {
                // A fresh backend builds each forward on the host (its first run).
                let built = try CLBackend(context: try CLContext(), weights: weights).run(graph, input: inputs[g][round], keep: [])
                for (role, id) in graph.outputs {
                    #expect(got[g][round][id]!.data == built[id]!.data, "\(config.name) \(sizes[g]) run \(round): \(role) differs")
                }
            }
        }
    }

    @Test func mllaReplaysAreExact() throws {
        let config = try ModelConfig.resolve(for: try WeightFile.open(Golden.path("weights.safetensors")), arch: nil)
        let weights = try WeightBinding.prepare(file: try WeightFile.open(Golden.path("weights.safetensors")), config: config)
        try Self.check(config: config, weights: weights, sizes: [(37, 53), (64, 64)])
    }

    @Test func forgetGatedReplaysAreExact() throws {
        let config = try ModelConfig.preset("mila_fg_t")
        let weights = try WeightBinding.prepare(file: try RandomWeights.make(config, seed: 7), config: config)
        try Self.check(config: config, weights: weights, sizes: [(70, 45)])
    }
}
