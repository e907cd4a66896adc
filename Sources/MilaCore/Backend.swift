/// The seam between the model and a device: which ops it can run, and running a graph.
/// A backend is created with the model's prepared weights (by graph name) and caches whatever
/// it derives per graph size (schedules, memory plans).
public protocol Backend: AnyObject {
    var name: String { get }
    /// Names of the nodes whose op this backend cannot run (checked before any run).
    func unsupportedNodes(in graph: Graph) -> [String]
    /// Runs `graph` on `input` (B, H, W, 3) and returns the values of `keep` (and the graph's outputs).
    func run(_ graph: Graph, input: Tensor, keep: Set<Int>) throws -> [Int: Tensor]
}

extension Backend {
    /// Throws before the run when an op is not supported.
    public func checkSupport(_ graph: Graph) throws {
        let missing = unsupportedNodes(in: graph)
        guard missing.isEmpty else {
            throw MilaError.unsupported(op: name, message: "cannot run \(missing.count) node(s): \(missing.prefix(5).joined(separator: ", "))")
        }
    }
}

/// Where the values of a graph live: slots reused by liveness (a value's slot is free once its
/// last reader has run, and an op never writes into a slot it reads). Graph outputs keep theirs.
/// A concatenated value lives in its channel slice of the concat's slot, which is taken when
/// the first producer runs and held until the concat and every producer are no longer read.
public struct MemoryPlan: Sendable {
    /// Slot index of each node's value (the input included).
    public let slotOfNode: [Int]
    /// Capacity of each slot in float32 elements.
    public let slotSizes: [Int]
    /// The channel slice each concatenated value is stored in (by node id).
    public let slices: [Int: ChannelSlice]

    public var plannedBytes: Int { slotSizes.reduce(0, +) * 4 }

    /// `alsoWrites` maps a node to a later node whose value its launch writes too (a backend's
    /// fused pair, e.g. a depthwise conv and the LayerNorm of its output): that value takes its
    /// slot when the writer runs, so it never shares one with anything the writer reads.
    public init(_ graph: Graph, alsoWrites: [Int: Int] = [:]) {
        let slices = (try? graph.concatSlices()) ?? [:]
        var lastUse = graph.lastUses()
        for (producer, slice) in slices { lastUse[slice.concat] = max(lastUse[slice.concat], lastUse[producer]) }
        var slotOfNode = [Int](repeating: -1, count: graph.nodes.count)
        var sizes: [Int] = []
        var free: [Int] = []
        var releaseAt: [Int: [Int]] = [:]  // node index -> slots freed after it runs
        func take(_ size: Int) -> Int {
            let slot: Int
            if let best = free.filter({ sizes[$0] >= size }).min(by: { sizes[$0] < sizes[$1] }) {
                slot = best
            } else if let largest = free.max(by: { sizes[$0] < sizes[$1] }) {
                slot = largest
                sizes[slot] = size
            } else {
                slot = sizes.count
                sizes.append(size)
            }
            free.removeAll { $0 == slot }
            return slot
        }
        for node in graph.nodes {
            let owner = slices[node.id]?.concat ?? node.id
            if slotOfNode[owner] < 0 {
                slotOfNode[owner] = take(Shape.count(graph.nodes[owner].shape))
                releaseAt[max(lastUse[owner], node.id), default: []].append(slotOfNode[owner])
            }
            slotOfNode[node.id] = slotOfNode[owner]
            if let later = alsoWrites[node.id], slotOfNode[later] < 0 {
                precondition(later > node.id && slices[later] == nil, "a fused value is a later, unsliced node")
                slotOfNode[later] = take(Shape.count(graph.nodes[later].shape))
                releaseAt[max(lastUse[later], later), default: []].append(slotOfNode[later])
            }
            free += releaseAt.removeValue(forKey: node.id) ?? []
        }
        self.slotOfNode = slotOfNode
        self.slotSizes = sizes
        self.slices = slices
    }
}
