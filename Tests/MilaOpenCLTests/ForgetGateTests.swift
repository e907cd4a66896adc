import MilaCore
import MilaOpenCL
import MilaReference
import Testing

/// Gate patterns (log a per token and head) of the issue: mild, strong, and adversarial runs.
enum GatePattern: String, CaseIterable, Sendable {
    case mild         // log a ~ -0.01
    case strong       // log a uniform in [-20, 0]
    case adversarial  // runs of -20 next to runs of ~0, of awkward lengths

    func values(tokens: Int, heads: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<(tokens * heads)).map { i in
            let t = i / heads
            switch self {
            case .mild: return -0.01 * rng.nextFloat(in: 0.5...1.5)
            case .strong: return rng.nextFloat(in: -20...0)
            case .adversarial: return (t / 37) % 2 == 0 ? -20 : -1e-4 * rng.nextFloat(in: 0...1)
            }
        }
    }
}

struct ForgetGateCase: CustomTestStringConvertible, Sendable {
    var tokens: Int
    var chunk: Int
    var channels = 16
    var heads = 2
    var testDescription: String { "fgla L=\(tokens) T=\(chunk) C=\(channels) heads=\(heads)" }
}

/// The issue's bound: relative L2 <= 1e-5 against the Float64 recurrent reference, fp32 kernels.
let forgetGateTolerance = 1e-5

func checkForgetGate(_ context: CLContext, _ c: ForgetGateCase, kernel: ForgetGateKernel, bidirectional: Bool, normalize: Bool,
                     pattern: GatePattern, batch: Int = 1, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let label = "\(c.testDescription) \(kernel) \(bidirectional ? "bidirectional" : "causal") normalize=\(normalize) gates=\(pattern)"
    let qk = try random([batch, c.tokens, 2 * c.channels], label + "qk", in: -2...2)
    let v = try random([batch, c.tokens, c.channels], label + "v")
    let gates = try Tensor(shape: [batch, c.tokens, c.heads], data: pattern.values(tokens: batch * c.tokens, heads: c.heads, seed: seed(label)))
    let expected = try Reference.forgetGateAttention(qk: qk, v: v, logGate: gates, heads: c.heads, bidirectional: bidirectional, normalize: normalize)
    let y = try context.download(try context.forgetGateAttention(qk: try context.upload(qk), v: try context.upload(v),
                                                                  logGate: try context.upload(gates), heads: c.heads,
                                                                  bidirectional: bidirectional, normalize: normalize, kernel: kernel))
    let finite = y.data.allSatisfy(\.isFinite)
    let error = y.relativeL2(to: expected)
    #expect(finite, "\(label): NaN or Inf in the output", sourceLocation: sourceLocation)
    #expect(error <= forgetGateTolerance, "\(label): relative L2 \(error)", sourceLocation: sourceLocation)
}

@Suite("Forget-gated attention") struct ForgetGateTests {
    /// With LePE the phased CPU kernel adds it in fgla_output_vec: bit for bit the attention
    /// alone followed by the depthwise conv with the attention as its residual (bias or none,
    /// causal or both ways, a 5 x 7 grid whose 4-token chunks cross rows, two images, both CPU
    /// runtimes). The GPU variant adds LePE with the conv after its own kernels: it agrees
    /// within the kernels' tolerance. A grid that does not hold the tokens is refused.
    @Test(arguments: [Implementation.pocl, .intel].filter(\.isPresent))
    func lepeInTheOutputKernelEqualsTheConvAfterIt(_ implementation: Implementation) throws {
        let (b, h, w, c, heads) = (2, 5, 7, 64, 2)
        let qk = try random([b, h * w, 2 * c], "fg lepe qk", in: -2...2), v = try random([b, h * w, c], "fg lepe v")
        let gates = try Tensor(shape: [b, h * w, heads], data: GatePattern.strong.values(tokens: b * h * w, heads: heads, seed: 7))
        let lw = try random([c, 1, 3, 3], "fg lepe w", in: -0.5...0.5), lb = try random([c], "fg lepe b")
        var fused: [Float] = []
        for variant in [KernelVariant.cpu, .gpu] {
            let context = try CLContext(device: implementation.device!, variant: variant)
            let (dqk, dv, dg) = (try context.upload(qk), try context.upload(v), try context.upload(gates))
            for bidirectional in [true, false] {
                let alone = try context.forgetGateAttention(qk: dqk, v: dv, logGate: dg, heads: heads, bidirectional: bidirectional,
                                                            normalize: true, kernel: .phased(chunk: 4))
                for bias in [true, false] {
                    let weights = try Conv3x3Weights(context: context, weight: lw, bias: bias ? lb : nil, depthwise: true)
                    let with = try context.download(try context.forgetGateAttention(
                        qk: dqk, v: dv, logGate: dg, heads: heads, bidirectional: bidirectional, normalize: true, kernel: .phased(chunk: 4),
                        lepe: ForgetGateLePE(weights: weights, height: h, width: w)))
                    let after = try context.download(try context.conv3x3(
                        DeviceTensor(buffer: dv.buffer, shape: [b, h, w, c]), weights, stride: 1,
                        residual: DeviceTensor(buffer: alone.buffer, shape: [b, h, w, c])))
                    let label = "\(variant) bidirectional \(bidirectional) bias \(bias)"
                    if variant == .cpu {
                        #expect(with.data == after.data, "\(label)")
                        fused += with.data
                    } else {
                        #expect(with.data == after.data, "\(label)")  // the same conv after the attention
                        let cpu = try Tensor(shape: with.shape, data: Array(fused[0..<with.count]))
                        fused.removeFirst(with.count)
                        #expect(with.relativeL2(to: cpu) <= forgetGateTolerance, "\(label) against the CPU kernel")
                    }
                }
            }
            if variant == .cpu { #expect(context.launchedKernelNames.contains("fgla_output_vec")) }
            let weights = try Conv3x3Weights(context: context, weight: lw, bias: lb, depthwise: true)
            #expect(throws: MilaError.self) {
                try context.forgetGateAttention(qk: dqk, v: dv, logGate: dg, heads: heads, bidirectional: true, normalize: true,
                                                kernel: .phased(chunk: 4), lepe: ForgetGateLePE(weights: weights, height: 6, width: 7))
            }
        }
    }

    static let cases: [ForgetGateCase] = [1, 5, 63, 64, 65, 197, 3136].flatMap { l in [16, 32, 64].map { ForgetGateCase(tokens: l, chunk: $0) } }

    @Test("chunked kernel vs Float64 recurrent reference", arguments: onImplementations(cases))
    func chunked(_ t: Targeted<ForgetGateCase>) throws {
        let context = try t.context(), c = t.value
        for bidirectional in [false, true] {
            for normalize in [false, true] {
                for pattern in GatePattern.allCases {
                    try checkForgetGate(context, c, kernel: .chunked(chunk: c.chunk), bidirectional: bidirectional,
                                        normalize: normalize, pattern: pattern)
                }
            }
        }
    }

    @Test("head dimension 32 and batch 2", arguments: [(64, 1), (16, 2), (64, 2)], KernelTarget.hardware.filter { $0.variant == .cpu })
    func modelHeadDimension(_ shape: (channels: Int, batch: Int), target: KernelTarget) throws {
        let context = try target.context(), channels = shape.channels, batch = shape.batch
        for bidirectional in [false, true] {
            try checkForgetGate(context, ForgetGateCase(tokens: 197, chunk: 32, channels: channels, heads: 2), kernel: .chunked(chunk: 32),
                                bidirectional: bidirectional, normalize: true, pattern: .strong, batch: batch)
        }
    }

    static let phasedCases: [ForgetGateCase] = [1, 5, 63, 64, 65, 197, 3136].flatMap { l in
        [16, 32, 64].map { ForgetGateCase(tokens: l, chunk: $0, channels: 64, heads: 2) }
    } + [
        // Chunks that are not a multiple of the output kernel's 4-token blocks or of 16 lanes,
        // and d = 16 with 3 heads (one 16-float vector per state row).
        ForgetGateCase(tokens: 65, chunk: 7, channels: 48, heads: 3),
        ForgetGateCase(tokens: 197, chunk: 20, channels: 64, heads: 2),
    ]

    @Test("phased kernels (d = 32, and 16) vs Float64 recurrent reference", arguments: onImplementations(phasedCases))
    func phased(_ t: Targeted<ForgetGateCase>) throws {
        let context = try t.context(), c = t.value
        for bidirectional in [false, true] {
            for normalize in [false, true] {
                for pattern in GatePattern.allCases {
                    try checkForgetGate(context, c, kernel: .phased(chunk: c.chunk), bidirectional: bidirectional,
                                        normalize: normalize, pattern: pattern, batch: c.tokens == 63 ? 2 : 1)
                }
            }
        }
    }

    /// The GPU variant's phases (fgla_state_wg, the scan with one vector per work-item,
    /// fgla_output_wg) on the same awkward lengths and chunks, a subset to bound CI time.
    @Test("phased kernels, GPU variant (local-memory phases)",
          arguments: [1, 5, 65, 197].flatMap { l in [16, 32, 64].map { ForgetGateCase(tokens: l, chunk: $0, channels: 64, heads: 2) } }
              + [ForgetGateCase(tokens: 3136, chunk: 32, channels: 64, heads: 2)] + phasedCases.suffix(2),
          KernelTarget.hardware.filter { $0.variant == .gpu })
    func phasedGPU(_ c: ForgetGateCase, target: KernelTarget) throws {
        let context = try target.context()
        for bidirectional in [false, true] {
            for normalize in [false, true] {
                for pattern in GatePattern.allCases {
                    try checkForgetGate(context, c, kernel: .phased(chunk: c.chunk), bidirectional: bidirectional,
                                        normalize: normalize, pattern: pattern, batch: c.tokens == 65 ? 2 : 1)
                }
            }
        }
    }

    @Test("recurrent kernel vs Float64 recurrent reference", arguments: onImplementations([1, 65, 197]))
    func recurrent(_ t: Targeted<Int>) throws {
        let context = try t.context(), tokens = t.value
        for bidirectional in [false, true] {
            for normalize in [false, true] {
                for pattern in GatePattern.allCases {
                    try checkForgetGate(context, ForgetGateCase(tokens: tokens, chunk: 0), kernel: .recurrent, bidirectional: bidirectional,
                                        normalize: normalize, pattern: pattern)
                }
            }
        }
    }

    @Test("L = 65536 (1024 px stage 0), adversarial gates")
    func longSequence() throws {
        try checkForgetGate(try TestDevice.context(), ForgetGateCase(tokens: 65536, chunk: 64, channels: 8, heads: 1),
                            kernel: .chunked(chunk: 64), bidirectional: true, normalize: true, pattern: .adversarial)
    }

    /// The engine's kernels at a long sequence with many heads (1024 px stage-1 length, 8 heads).
    /// The benchmark once crashed at this shape while PoCL chose the work-group sizes (stack
    /// overflow; fixed by explicit local sizes); this test did not reproduce that crash, it
    /// checks the numbers at a size the other cases do not reach.
    @Test("phased kernels at L = 16384, 8 heads (work-group sizes)")
    func phasedLongManyHeads() throws {
        try checkForgetGate(try TestDevice.context(), ForgetGateCase(tokens: 16384, chunk: 32, channels: 256, heads: 8),
                            kernel: .phased(chunk: 32), bidirectional: false, normalize: true, pattern: .strong)
    }

    @Test func rejectsBadShapes() throws {
        let context = try TestDevice.context()
        let qk = try context.upload(try Tensor(zeros: [1, 4, 16])), v = try context.upload(try Tensor(zeros: [1, 4, 8]))
        let gates = try context.upload(try Tensor(zeros: [1, 4, 3]))
        #expect(throws: MilaError.self) {
            try context.forgetGateAttention(qk: qk, v: v, logGate: gates, heads: 2, bidirectional: true, normalize: true)
        }
        let good = try context.upload(try Tensor(zeros: [1, 4, 2]))
        #expect(throws: MilaError.self) {
            try context.forgetGateAttention(qk: qk, v: v, logGate: good, heads: 2, bidirectional: true, normalize: true, kernel: .chunked(chunk: 0))
        }
    }
}
