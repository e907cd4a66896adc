import MilaCore
import MilaModel
import MilaOpenCL
import MilaReference
import MilaWeights
import Testing

@Suite("Scheduler: fusion and memory plan") struct FusionTests {
    static let config = try! ModelConfig.resolve(for: try! WeightFile.open(Golden.path("weights.safetensors")), arch: nil)
    static let weights = try! WeightBinding.prepare(file: try! WeightFile.open(Golden.path("weights.safetensors")), config: config)

    static func graphs(_ h: Int, _ w: Int) throws -> (unfused: Graph, fused: Graph) {
        let shapes = weights.mapValues(\.shape)
        return (try ModelGraph.build(config: config, weightShapes: shapes, batch: 1, height: h, width: w, fused: false),
                try ModelGraph.build(config: config, weightShapes: shapes, batch: 1, height: h, width: w))
    }

    @Test func everyElementwiseNodeOfTheBlocksIsFolded() throws {
        let (unfused, fused) = try Self.graphs(37, 53)
        func count(_ g: Graph, _ kinds: Set<String>) -> Int { g.nodes.filter { kinds.contains($0.op.kind) }.count }
        let elementwise: Set<String> = ["add", "multiply", "relu", "silu", "gelu"]
        #expect(count(unfused, elementwise) > 0)
        #expect(count(fused, elementwise) == 0, "left: \(fused.nodes.filter { elementwise.contains($0.op.kind) }.map(\.name))")
        // One block: cpe1+add, dwc+silu, act_proj+silu+mul, out_proj+add, cpe2+add, fc1+gelu, fc2+add -> 10 nodes folded.
        #expect(unfused.nodes.count - fused.nodes.count >= 10 * 4)
        let actProj = try #require(fused.nodes.first { $0.name == "layers.0.blocks.0.act_proj" })
        guard case let .linear(_, _, activation) = actProj.op else { Issue.record("act_proj is not linear"); return }
        #expect(activation == .silu && actProj.multiply != nil && actProj.residual == nil)
    }

    @Test func fusedAndUnfusedGraphsComputeTheSameOutputs() throws {
        let (unfused, fused) = try Self.graphs(37, 53)
        let input = try Tensor(randomUniform: [1, 37, 53, 3], in: -2...2, seed: 9)
        let reference = ReferenceBackend(weights: Self.weights)
        let a = try reference.run(unfused, input: input, keep: [])
        let opencl = CLBackend(context: try CLContext(), weights: Self.weights)
        let b = try opencl.run(fused, input: input, keep: [])
        let c = try opencl.run(unfused, input: input, keep: [])
        for role in ["logits", "stage0", "stage3"] {
            let (x, y, z) = (a[unfused.outputs[role]!]!, b[fused.outputs[role]!]!, c[unfused.outputs[role]!]!)
            #expect(y.relativeL2(to: x) <= modelTolerance, "\(role) fused OpenCL vs unfused reference")
            #expect(z.relativeL2(to: x) <= modelTolerance, "\(role) unfused OpenCL vs unfused reference")
        }
    }

    @Test func memoryPlanReusesSlotsAndNeverAliasesAnOperand() throws {
        let (_, fused) = try Self.graphs(98, 150)
        let plan = MemoryPlan(fused)
        let total = fused.nodes.reduce(0) { $0 + Shape.count($1.shape) }
        #expect(plan.slotSizes.count < fused.nodes.count / 4)
        #expect(plan.slotSizes.reduce(0, +) < total / 4)
        let lastUse = fused.lastUses()
        for node in fused.nodes {
            #expect(plan.slotSizes[plan.slotOfNode[node.id]] >= Shape.count(node.shape))
            for operand in node.operands { #expect(plan.slotOfNode[operand] != plan.slotOfNode[node.id], "\(node.name) writes over an operand") }
            // No other live value shares the slot while this one is live.
            for other in fused.nodes where other.id > node.id && other.id <= lastUse[node.id] {
                #expect(plan.slotOfNode[other.id] != plan.slotOfNode[node.id] || other.id == node.id,
                        "\(other.name) overwrites \(node.name) before its last use")
            }
        }
    }

    /// On a CPU device each block's CPEs run with the LayerNorm after them (norm1, norm2) in one
    /// launch: the plan gives the LayerNorm's value its slot when the conv runs (apart from all
    /// the conv reads and writes, and from every value live until the LayerNorm's last reader),
    /// and the outputs equal the unfused launches' bit for bit.
    @Test func eachCPEAndItsLayerNormShareALaunch() throws {
        let (_, fused) = try Self.graphs(37, 53)
        let context = try CLContext()
        let opencl = CLBackend(context: context, weights: Self.weights)
        let pairs = opencl.normFusions(fused)
        let blocks = Self.config.depths.reduce(0, +)
        #expect(pairs.count == 2 * blocks, "\(pairs.map { (fused.nodes[$0.key].name, fused.nodes[$0.value].name) })")
        for (conv, norm) in pairs {
            #expect(fused.nodes[conv].name.hasSuffix(".cpe1") || fused.nodes[conv].name.hasSuffix(".cpe2"), "\(fused.nodes[conv].name)")
            #expect(fused.nodes[norm].inputs == [conv])
        }
        let plan = MemoryPlan(fused, alsoWrites: pairs)
        let lastUse = fused.lastUses()
        for (conv, norm) in pairs {
            let writer = fused.nodes[conv]
            for value in writer.operands + [conv] {
                #expect(plan.slotOfNode[value] != plan.slotOfNode[norm], "\(fused.nodes[norm].name) shares a slot with \(fused.nodes[value].name)")
            }
            for other in fused.nodes where other.id > conv && other.id <= lastUse[norm] && other.id != norm {
                #expect(plan.slotOfNode[other.id] != plan.slotOfNode[norm], "\(other.name) overwrites \(fused.nodes[norm].name)")
            }
        }
        let input = try Tensor(randomUniform: [1, 37, 53, 3], in: -2...2, seed: 11)
        let together = try opencl.run(fused, input: input, keep: [])
        #expect(context.launchedKernelNames.contains("dwconv3x3_strips_ln"))
        let apartContext = try CLContext()
        let apart = CLBackend(context: apartContext, weights: Self.weights)
        apart.fusesNorms = false
        #expect(apart.normFusions(fused).isEmpty)
        let separate = try apart.run(fused, input: input, keep: [])
        #expect(!apartContext.launchedKernelNames.contains("dwconv3x3_strips_ln"))
        for role in ["logits", "stage0", "stage3"] {
            #expect(together[fused.outputs[role]!]!.data == separate[fused.outputs[role]!]!.data, "\(role)")
        }
        // Turning the fusion on after a run re-plans: the next forward fuses.
        apart.fusesNorms = true
        let refused = try apart.run(fused, input: input, keep: [])
        #expect(apartContext.launchedKernelNames.contains("dwconv3x3_strips_ln"))
        #expect(refused[fused.outputs["logits"]!]!.data == separate[fused.outputs["logits"]!]!.data)
    }
}
