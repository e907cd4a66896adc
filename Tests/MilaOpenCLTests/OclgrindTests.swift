import Foundation
import MilaCore
import MilaOpenCL
import MilaReference
import Testing

/// Runs `body` on a fresh Oclgrind context of `variant` with the API and data-race checks on and
/// fails the test on any diagnostic (out-of-bounds access, race, barrier divergence, API misuse),
/// quoting Oclgrind's report. The body's own expectations (agreement with the reference) still apply.
func checkOnOclgrind(_ label: String, variant: KernelVariant, sourceLocation: SourceLocation = #_sourceLocation,
                     _ body: (CLContext) throws -> Void) throws {
    let device = try #require(Implementation.oclgrind.device, "\(Implementation.oclgrind.missing)")
    let (_, report) = try OclgrindChecks.run {
        let context = try CLContext(device: device, variant: variant)
        try body(context)
        try context.finish()
    }
    #expect(report.isClean, "\(label) (\(variant)): Oclgrind reported:\n\(report.diagnostics.prefix(4000))",
            sourceLocation: sourceLocation)
}

/// Every kernel under Oclgrind's checks, in both variants, at small awkward sizes (it interprets
/// every work-item: a 5x3 image, 7 channels, 9 tokens). Serialized: one Oclgrind log at a time.
@Suite("Oclgrind: bounds, races and API use", .serialized,
       .enabled(if: Implementation.oclgrind.isPresent, Implementation.oclgrind.missing))
struct OclgrindTests {
    /// Proves a diagnostic reaches the test: a kernel that writes one past its buffer must be reported.
    @Test func outOfBoundsWriteIsReported() throws {
        let device = try #require(Implementation.oclgrind.device)
        let (_, report) = try OclgrindChecks.run {
            let context = try CLContext(device: device, variant: .gpu)
            let kernel = try context.kernel(text: "__kernel void past_the_end(__global float* x) { x[get_global_id(0) + 1] = 1.0f; }",
                                            file: "canary.cl", name: "past_the_end")
            let buffer = try context.buffer(count: 4)
            try context.launch(kernel, global: [4], arguments: [.buffer(buffer)])
            try context.finish()
        }
        #expect(!report.isClean, "Oclgrind did not report a write past the end of a 4-float buffer")
        #expect(report.diagnostics.lowercased().contains("invalid write"), "\(report.diagnostics.prefix(2000))")
    }

    /// A work-group race on local memory must be reported too (the race detector is on).
    @Test func localMemoryRaceIsReported() throws {
        let device = try #require(Implementation.oclgrind.device)
        let (_, report) = try OclgrindChecks.run {
            let context = try CLContext(device: device, variant: .gpu)
            let kernel = try context.kernel(
                text: """
                    __kernel void racy(__global float* y, __local float* scratch) {
                        scratch[0] = (float)get_local_id(0);
                        y[get_global_id(0)] = scratch[0];
                    }
                    """, file: "canary.cl", name: "racy")
            let buffer = try context.buffer(count: 8)
            try context.launch(kernel, global: [8], local: [8], arguments: [.buffer(buffer), .local(bytes: 4)])
            try context.finish()
        }
        #expect(report.diagnostics.lowercased().contains("race"), "no data race reported: \(report.diagnostics.prefix(2000))")
    }

    /// KernelCoverageTests' exercise of each entry point (it checks the result against the reference too).
    @Test("every kernel entry point", arguments: KernelCoverageTests.exercises.keys.sorted(), KernelVariant.allCases)
    func entryPoint(_ name: String, variant: KernelVariant) throws {
        let exercise = try #require(KernelCoverageTests.exercises[name])
        try checkOnOclgrind(name, variant: variant) { context in
            try exercise.run(context)
            if variant == exercise.variant {
                #expect(context.launchedKernelNames.contains(name), "\(name) was not launched on Oclgrind")
            }
        }
    }

    /// Further small cases per op: padding on both edges, stride 2 on odd sizes, batches, heads
    /// whose RoPE pairs straddle, channel slices, gates that underflow.
    static let cases: [String: (CLContext) throws -> Void] = [
        "gemm odd sizes, all epilogues": { c in
            for provider in [GemmProvider.register, .tiled] {
                try checkGemm(c, GemmCase(m: 13, k: 19, n: 21, activation: .gelu, residual: true, multiply: true), provider: provider)
                try checkGemm(c, GemmCase(m: 3, k: 70, n: 66, activation: .silu, bias: false), provider: provider)
            }
        },
        "conv3x3 stride 1 and 2, batch 2, residual": { c in
            try checkConv(c, ConvCase(batch: 2, height: 5, width: 4, inChannels: 3, outChannels: 17, stride: 2, activation: .relu))
            try checkConv(c, ConvCase(height: 4, width: 5, inChannels: 5, outChannels: 9, stride: 1, residual: true))
        },
        "conv3x3_igemm, Cout not a multiple of 64": { c in
            try checkConv(c, ConvCase(height: 3, width: 6, inChannels: 65, outChannels: 70, stride: 1, activation: .relu), implicitGemm: true)
        },
        "dwconv3x3 stride 1 and 2": { c in
            try checkConv(c, ConvCase(batch: 2, height: 5, width: 3, inChannels: 19, outChannels: 19, stride: 1, depthwise: true, activation: .silu))
            try checkConv(c, ConvCase(height: 5, width: 7, inChannels: 32, outChannels: 32, stride: 2, depthwise: true, residual: true))
        },
        "conv3x3_tiled and dwconv3x3_tiled: ragged tiles, K not a multiple of 16, stride 2": { c in
            try checkConv(c, ConvCase(batch: 2, height: 5, width: 7, inChannels: 17, outChannels: 70, stride: 2, activation: .relu, residual: true))
            try checkConv(c, ConvCase(height: 9, width: 9, inChannels: 16, outChannels: 16, stride: 1))
            try checkConv(c, ConvCase(batch: 2, height: 7, width: 19, inChannels: 36, outChannels: 36, stride: 1, depthwise: true, activation: .silu))
            try checkConv(c, ConvCase(height: 6, width: 19, inChannels: 36, outChannels: 36, stride: 2, depthwise: true, residual: true))
        },
        "layernorm odd channels": { c in
            try checkLayerNorm(c, rows: 5, channels: 37, offset: 10)
            try checkLayerNorm(c, rows: 2, channels: 64)
        },
        "linear attention: straddling RoPE pairs, batch 2, d = 32 over three chunks": { c in
            try checkLinearAttention(c, AttentionCase(height: 4, width: 3, channels: 12, heads: 4))
            try checkLinearAttention(c, AttentionCase(batch: 2, height: 3, width: 3, channels: 32, heads: 1))
            // d = 32 over 130 tokens: three chunks, the last partial; Oclgrind's 32 KiB of local
            // memory gives la_kv_wg 42-token tiles (ragged inside each chunk) and la_output_wg 46.
            try checkLinearAttention(c, AttentionCase(height: 10, width: 13, channels: 64, heads: 2))
        },
        "forget-gated attention, every kernel": { c in
            try checkForgetGate(c, ForgetGateCase(tokens: 11, chunk: 4), kernel: .chunked(chunk: 4), bidirectional: false,
                                normalize: true, pattern: .adversarial, batch: 2)
            try checkForgetGate(c, ForgetGateCase(tokens: 13, chunk: 5, channels: 48, heads: 3), kernel: .phased(chunk: 5),
                                bidirectional: true, normalize: true, pattern: .strong)
            try checkForgetGate(c, ForgetGateCase(tokens: 6, chunk: 0), kernel: .recurrent, bidirectional: false,
                                normalize: false, pattern: .mild)
            // The engine's chunk (32) and head dimension (32) over three chunks, the last partial
            // (the GPU variant's local-memory phases).
            try checkForgetGate(c, ForgetGateCase(tokens: 70, chunk: 32, channels: 64, heads: 2), kernel: .phased(chunk: 32),
                                bidirectional: true, normalize: true, pattern: .strong)
        },
        "mean, elementwise, activations, pad": { c in
            try checkMeanTokens(c, batch: 2, tokens: 7, channels: 19)
            try checkElementwise(c, shape: [3, 7], op: .add)
            try checkActivation(c, .silu, count: 37, range: -10...10)
            try checkPad(c, shape: [1, 3, 2, 5], height: 4, width: 4)
        },
        "resize, pool and argmax, slices and batch 2": { c in
            try checkResize(c, ResizeCase(batch: 2, height: 3, width: 2, channels: 5, outHeight: 2, outWidth: 5))
            try checkResize(c, ResizeCase(height: 2, width: 3, channels: 16, outHeight: 5, outWidth: 4), slice: (offset: 3, pixelStride: 21))
            try checkAdaptivePool(c, batch: 2, height: 5, width: 3, channels: 4, size: 2, slice: (offset: 1, pixelStride: 7))
            try checkResizeArgmax(c, batch: 2, height: 2, width: 3, classes: 17, mid: (5, 7), out: (4, 3))
        },
    ]

    @Test("small awkward cases", arguments: cases.keys.sorted(), KernelVariant.allCases)
    func smallCase(_ name: String, variant: KernelVariant) throws {
        let run = try #require(Self.cases[name])
        try checkOnOclgrind(name, variant: variant, run)
    }
}
