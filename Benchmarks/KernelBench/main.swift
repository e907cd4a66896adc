// mila-kernel-bench: checks every kernel and variant against the CPU reference on the MLLA-T
// shapes (224 and 1024 input), then times them from OpenCL profiling events (median of
// several runs) and prints ms and GFLOP/s or GB/s.
//
//   swift run -c release mila-kernel-bench [--resolution 224|1024|all] [--runs N] [--only NAME] [--variant NAME,...]
//   (--only square: gemm_reg on 1024^3, the shape the peers command times OpenBLAS on;
//   --only head: the UperNet head's 3x3 convolutions as implicit GEMM against gemm_reg on the same M, K, N;
//   give one --resolution, the shapes do not depend on it)
//
// GFLOP/s counts a multiply-add as 2 FLOPs (formulas in MilaCore's specs: GEMM 2MKN, dense conv
// 18 Cin per output, depthwise 18 per output). GB/s counts the bytes of the op's input and
// output tensors once (weights not counted), as in ../shared/notes/opencl-pocl.md.

import Foundation
import MilaCore
import MilaOpenCL
import MilaReference

struct Options {
    var resolutions = [224, 1024]
    var runs = 10
    var only: String?
    var variants: [String] = []
    var perKernel = false

    init(_ arguments: [String]) throws {
        var rest = arguments[...]
        while let flag = rest.popFirst() {
            switch flag {
            case "--resolution":
                guard let value = rest.popFirst() else { throw BenchError.usage("--resolution needs 224, 1024 or all") }
                resolutions = value == "all" ? [224, 1024] : value.split(separator: ",").compactMap { Int($0) }
            case "--runs":
                guard let value = rest.popFirst().flatMap({ Int($0) }), value > 0 else { throw BenchError.usage("--runs needs a positive number") }
                runs = value
            case "--per-kernel":
                perKernel = true
            case "--only":
                only = rest.popFirst()
            case "--variant":
                guard let value = rest.popFirst() else { throw BenchError.usage("--variant needs names, e.g. \"phased T=32,mlla attn\"") }
                variants = value.split(separator: ",").map(String.init)
            case "-h", "--help":
                throw BenchError.usage("")
            default:
                throw BenchError.usage("unknown argument \(flag)")
            }
        }
    }
}

enum BenchError: Error, CustomStringConvertible {
    case usage(String)
    case mismatch(String)
    var description: String {
        switch self {
        case let .usage(message):
            return (message.isEmpty ? "" : "\(message)\n")
                + "usage: mila-kernel-bench [--resolution 224|1024|all] [--runs N] [--only gemm|conv3x3|dwconv3x3|dwln|layernorm|attention|fgla|mean|head|square] [--variant NAME,...] [--per-kernel]"
        case let .mismatch(message): return message
        }
    }
}

/// One timed case: a prepared op (inputs on the device) that it can run and read back.
struct Case {
    let context: CLContext   // the queue it runs on (per kernel variant)
    let family: String
    let shape: String
    let variant: String
    let flops: Double
    let bytes: Double
    let weight: Int          // how many times the shape occurs in one forward pass
    let run: () throws -> Void
    let output: () throws -> Tensor
    let expected: () throws -> Tensor
    let tolerance: Double    // max |error| / max |expected|
}

func relativeMaxError(_ a: Tensor, _ e: Tensor) -> Double {
    var maxError = 0.0, maxValue = 0.0
    for i in 0..<a.count {
        let error = abs(Double(a.data[i]) - Double(e.data[i]))
        maxError = error.isNaN ? .infinity : max(maxError, error)
        maxValue = max(maxValue, abs(Double(e.data[i])))
    }
    return maxError / max(maxValue, 1e-30)
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

func commit() -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["git", "rev-parse", "--short", "HEAD"]
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return "unknown" }
    process.waitUntilExit()
    let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    return text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? "unknown" : text.trimmingCharacters(in: .whitespacesAndNewlines)
}

/// Reference results are cached per input so each variant is checked against the same one.
final class ReferenceCache {
    private var values: [String: Tensor] = [:]
    func value(_ key: String, _ make: () throws -> Tensor) rethrows -> Tensor {
        if let v = values[key] { return v }
        let v = try make()
        values[key] = v
        return v
    }
}

// MARK: MLLA-T shapes

struct Stage { let channels: Int, height: Int, width: Int, blocks: Int, heads: Int }

func stages(resolution: Int) -> [Stage] {
    let base = resolution / 4
    return (0..<4).map { s in
        let size = (base + (1 << s) - 1) >> s
        return Stage(channels: 64 << s, height: size, width: size, blocks: [2, 4, 8, 4][s], heads: [2, 4, 8, 16][s])
    }
}

/// (M, K, N, occurrences per forward) of every linear layer / 1x1 conv of MLLA-T.
func gemmShapes(resolution: Int) -> [(m: Int, k: Int, n: Int, count: Int)] {
    var shapes: [String: (m: Int, k: Int, n: Int, count: Int)] = [:]
    func add(_ m: Int, _ k: Int, _ n: Int, _ count: Int) {
        let key = "\(m)x\(k)x\(n)"
        shapes[key] = (m, k, n, (shapes[key]?.count ?? 0) + count)
    }
    let st = stages(resolution: resolution)
    add(st[0].height * st[0].width, 256, 64, 1)  // stem conv3.1
    for (s, stage) in st.enumerated() {
        let (l, c, b) = (stage.height * stage.width, stage.channels, stage.blocks)
        add(l, c, c, 3 * b)      // act_proj, in_proj, out_proj
        add(l, c, 2 * c, b)      // attn.qk
        add(l, c, 4 * c, b)      // mlp.fc1
        add(l, 4 * c, c, b)      // mlp.fc2
        if s < 3 {
            add(l, c, 8 * c, 1)  // downsample conv.0
            let next = st[s + 1]
            add(next.height * next.width, 8 * c, 2 * c, 1)  // downsample conv.2
        }
    }
    return shapes.values.sorted { ($0.m, $0.k, $0.n) > ($1.m, $1.k, $1.n) }
}

// MARK: Cases

func makeCases(_ context: CLContext, contexts: [KernelVariant: CLContext], resolution: Int, references: ReferenceCache, only: String?) throws -> [Case] {
    var cases: [Case] = []
    func wanted(_ family: String) -> Bool { only == nil || only == family }
    var seed: UInt64 = 1
    func random(_ shape: [Int], _ range: ClosedRange<Float> = -1...1) throws -> Tensor {
        seed += 1
        return try Tensor(randomUniform: shape, in: range, seed: seed)
    }
    let st = stages(resolution: resolution)

    if wanted("gemm") {
        for shape in gemmShapes(resolution: resolution) {
            let x = try random([shape.m, shape.k]), w = try random([shape.n, shape.k], -0.2...0.2), b = try random([shape.n])
            let weights = try GemmWeights(context: context, weight: w, bias: b)
            let rowWeights = try GemmWeights(context: context, weight: w, bias: b, provider: .clblast)  // CLBlast's layout
            let input = try context.upload(x)
            let output = try context.empty([shape.m, shape.n])
            // Plain linear layers (bias only) for every provider; the fused GELU epilogue of
            // mlp.fc1 (N = 4K) as its own row, since erf-GELU is ~20 FLOPs per output.
            var variants: [(provider: GemmProvider, activation: Activation)] = GemmProvider.allCases.map { ($0, .none) }
            if shape.n == 4 * shape.k { variants.append((.register, .gelu)) }
            for (provider, activation) in variants {
                if provider == .tiled && resolution > 224 { continue }  // ~26x slower on CPUs; checked at 224
                let key = "gemm \(shape) \(activation)"
                cases.append(Case(
                    context: context, family: "gemm", shape: "M=\(shape.m) K=\(shape.k) N=\(shape.n)",
                    variant: provider.rawValue + (activation == .none ? "" : "+\(activation)"),
                    flops: 2 * Double(shape.m * shape.k * shape.n), bytes: 4 * Double(shape.m * (shape.k + shape.n)),
                    weight: activation == .none ? shape.count : 0,
                    run: { _ = try context.gemm(input, provider == .clblast ? rowWeights : weights, activation: activation, provider: provider, output: output) },
                    output: { try context.download(output) },
                    expected: { try references.value(key) { try Reference.gemm(x, weight: w, bias: b, activation: activation) } },
                    tolerance: 2e-5))
            }
        }
    }
    if only == "square" {
        // 1024^3, the shape the peers command times OpenBLAS's SGEMM on: the GEMM at its
        // steadiest (long K, no ragged edges), apart from the model's shapes.
        let n = 1024
        let x = try random([n, n]), w = try random([n, n], -0.2...0.2)
        let weights = try GemmWeights(context: context, weight: w, bias: nil)
        let input = try context.upload(x), output = try context.empty([n, n])
        cases.append(Case(
            context: context, family: "square", shape: "M=\(n) K=\(n) N=\(n)", variant: "register",
            flops: 2 * Double(n * n * n), bytes: 4 * Double(3 * n * n), weight: 1,
            run: { _ = try context.gemm(input, weights, provider: .register, output: output) },
            output: { try context.download(output) },
            expected: { try references.value("square \(n)") { try Reference.gemm(x, weight: w, bias: nil, activation: .none) } },
            tolerance: 2e-5))
    }
    if wanted("conv3x3") {
        let size = resolution / 2
        let stem: [(h: Int, cin: Int, cout: Int, stride: Int, name: String)] = [
            (resolution, 3, 32, 2, "conv1"), (size, 32, 32, 1, "conv2.x"), (size, 32, 256, 2, "conv3.0"),
        ]
        for conv in stem {
            let x = try random([1, conv.h, conv.h, conv.cin]), w = try random([conv.cout, conv.cin, 3, 3], -0.3...0.3), b = try random([conv.cout])
            let key = "conv \(conv)"
            let ho = Shape.conv3x3Output(conv.h, stride: conv.stride)
            // The CPU variant also as conv3x3_igemm (implicit GEMM) where it has 16+ input channels.
            let runs: [(variant: KernelVariant, igemm: Bool?)] = KernelVariant.allCases.map { ($0, nil) }
                + (conv.cin >= 16 ? [(KernelVariant.cpu, false), (KernelVariant.cpu, true)] : [])
            for (variant, igemm) in runs {
                let variantContext = contexts[variant]!
                let input = try variantContext.upload(x)
                let weights = try Conv3x3Weights(context: variantContext, weight: w, bias: b, depthwise: false, implicitGemm: igemm)
                let output = try variantContext.empty([1, ho, ho, conv.cout])
                cases.append(Case(
                    context: variantContext, family: "conv3x3", shape: "\(conv.name) \(conv.h)x\(conv.h)x\(conv.cin)->\(conv.cout) s\(conv.stride)",
                    variant: variant.rawValue + (igemm == nil ? "" : igemm! ? " igemm" : " direct"),
                    flops: Double(ho * ho * conv.cout) * 18 * Double(conv.cin), bytes: 4 * Double(conv.h * conv.h * conv.cin + ho * ho * conv.cout),
                    weight: conv.name == "conv2.x" ? 2 : 1,
                    run: { _ = try variantContext.conv3x3(input, weights, stride: conv.stride, activation: .relu, output: output) },
                    output: { try variantContext.download(output) },
                    expected: { try references.value(key) { try Reference.conv3x3(x, weight: w, bias: b, stride: conv.stride, depthwise: false, activation: .relu) } },
                    tolerance: 2e-5))
            }
        }
    }
    if wanted("dwconv3x3") {
        // The shapes the model's depthwise convs take: CPE and LePE (no activation, residual
        // add; 3 per block), dwc (SiLU; 1 per block), the downsample's stride-2 conv.1 (ReLU; 1
        // per stage). On CPU devices MLLA's LePE runs inside la_output_vec and its CPEs on maps
        // up to 56x56 with their LayerNorm (`--only dwln`); the forget-gated model's LePE and
        // the larger maps' CPEs run this kernel.
        var shapes: [(h: Int, c: Int, stride: Int, activation: Activation, residual: Bool, count: Int)] = []
        for stage in st {
            shapes.append((stage.height, stage.channels, 1, .none, true, 3 * stage.blocks))
            shapes.append((stage.height, stage.channels, 1, .silu, false, stage.blocks))
        }
        shapes += st.dropLast().map { ($0.height, 8 * $0.channels, 2, .relu, false, 1) }
        for shape in shapes {
            let ho = Shape.conv3x3Output(shape.h, stride: shape.stride)
            let x = try random([1, shape.h, shape.h, shape.c]), w = try random([shape.c, 1, 3, 3]), b = try random([shape.c])
            let r = shape.residual ? try random([1, ho, ho, shape.c]) : nil
            let key = "dw \(shape)"
            for variant in KernelVariant.allCases {
                let variantContext = contexts[variant]!
                let input = try variantContext.upload(x)
                let residual = try r.map { try variantContext.upload($0) }
                let weights = try Conv3x3Weights(context: variantContext, weight: w, bias: b, depthwise: true)
                let output = try variantContext.empty([1, ho, ho, shape.c])
                let tensors = Double(shape.h * shape.h * shape.c) + Double(ho * ho * shape.c) * (shape.residual ? 2 : 1)
                cases.append(Case(
                    context: variantContext, family: "dwconv3x3",
                    shape: "\(shape.h)x\(shape.h)x\(shape.c) s\(shape.stride) \(shape.residual ? "+res" : "\(shape.activation)")",
                    variant: variant.rawValue,
                    flops: Double(ho * ho * shape.c) * 18, bytes: 4 * tensors, weight: shape.count,
                    run: { _ = try variantContext.conv3x3(input, weights, stride: shape.stride, activation: shape.activation,
                                                          residual: residual, output: output) },
                    output: { try variantContext.download(output) },
                    expected: { try references.value(key) {
                        try Reference.conv3x3(x, weight: w, bias: b, stride: shape.stride, depthwise: true, activation: shape.activation, residual: r)
                    } },
                    tolerance: 2e-5))
            }
            // The bandwidth yardstick: the copy kernel (copy_vec16) over the same bytes as the
            // convolution moves (input, residual, output: it reads and writes half of them
            // each), so both pass the same amount through the caches. A copy of the input
            // alone moved 2/3 of a +res conv's bytes: at 1024 its 2 x 16 MiB stayed in the
            // VM's 32 MiB L3 while the conv's 3 x 16 MiB did not.
            let moved = shape.h * shape.h * shape.c + ho * ho * shape.c * (shape.residual ? 2 : 1)  // floats the conv reads and writes
            let copySource = try random([moved / 2])
            let copyInput = try context.upload(copySource)
            let copyOutput = try context.empty(copySource.shape)
            cases.append(Case(
                context: context, family: "dwconv3x3", shape: "\(shape.h)x\(shape.h)x\(shape.c) copy of the same bytes", variant: "copy",
                flops: 0, bytes: 8 * Double(copySource.count), weight: shape.count,
                run: { _ = try context.copy(copyInput, output: copyOutput) },
                output: { try context.download(copyOutput) }, expected: { copySource }, tolerance: 0))
        }
    }
    if wanted("layernorm") {
        for stage in st {
            let rows = stage.height * stage.width
            let x = try random([rows, stage.channels], -3...3), w = try random([stage.channels]), b = try random([stage.channels])
            let key = "ln \(rows) \(stage.channels)"
            for variant in KernelVariant.allCases {
                let variantContext = contexts[variant]!
                let input = try variantContext.upload(x)
                let weights = try LayerNormWeights(context: variantContext, weight: w, bias: b)
                let output = try variantContext.empty([rows, stage.channels])
                cases.append(Case(
                    context: variantContext, family: "layernorm", shape: "\(rows)x\(stage.channels)", variant: variant.rawValue,
                    flops: 8 * Double(rows * stage.channels), bytes: 8 * Double(rows * stage.channels), weight: 2 * stage.blocks,
                    run: { _ = try variantContext.layerNorm(input, weights, output: output) },
                    output: { try variantContext.download(output) },
                    expected: { try references.value(key) { try Reference.layerNorm(x, weight: w, bias: b) } },
                    tolerance: 1e-5))
            }
        }
    }
    if wanted("dwln") {
        // Each block's two CPEs (x + dwconv(x)) and the LayerNorm that reads each (norm1, norm2):
        // one launch (dwconv3x3_strips_ln, the CPU default) against the two launches
        // (dwconv3x3_rows, then layernorm_rows_vec) that MILA_FUSE_NORM=0 runs.
        for stage in st where context.fusesDepthwiseLayerNorm(channels: stage.channels, stride: 1) {
            let (h, c) = (stage.height, stage.channels)
            let x = try random([1, h, h, c]), w = try random([c, 1, 3, 3]), b = try random([c]), r = try random([1, h, h, c])
            let lw = try random([c]), lb = try random([c])
            let input = try context.upload(x), residual = try context.upload(r)
            let weights = try Conv3x3Weights(context: context, weight: w, bias: b, depthwise: true)
            let norm = try LayerNormWeights(context: context, weight: lw, bias: lb)
            let output = try context.empty([1, h, h, c]), normed = try context.empty([1, h, h, c])
            let key = "dwln \(h) \(c)"
            let runs: [(String, () throws -> Void)] = [
                ("fused", { _ = try context.depthwiseConvLayerNorm(input, weights, residual: residual, norm: norm, output: output, normOutput: normed) }),
                ("apart", {
                    _ = try context.conv3x3(input, weights, stride: 1, residual: residual, output: output)
                    _ = try context.layerNorm(output, norm, output: normed)
                }),
            ]
            for (variant, run) in runs {
                cases.append(Case(
                    context: context, family: "dwln", shape: "\(h)x\(h)x\(c) s1 +res +layernorm", variant: variant,
                    flops: Double(h * h * c) * 26, bytes: 4 * Double(h * h * c) * 4, weight: 2 * stage.blocks,
                    run: run, output: { try context.download(normed) },
                    expected: { try references.value(key) {
                        try Reference.layerNorm(try Reference.conv3x3(x, weight: w, bias: b, stride: 1, depthwise: true, activation: .none, residual: r),
                                                weight: lw, bias: lb)
                    } },
                    tolerance: 2e-5))
            }
        }
    }
    if wanted("attention") {
        for stage in st {
            let l = stage.height * stage.width, c = stage.channels
            let qk = try random([1, l, 2 * c], -2...2), v = try random([1, l, c]), lw = try random([c, 1, 3, 3], -0.5...0.5), lb = try random([c])
            let spec = try LinearAttentionSpec(qk: qk.shape, v: v.shape, height: stage.height, width: stage.width, heads: stage.heads,
                                               lepeWeight: lw.shape, lepeBias: lb.shape)
            let dQK = try context.upload(qk), dV = try context.upload(v)
            let lepe = try Conv3x3Weights(context: context, weight: lw, bias: lb, depthwise: true)
            let output = try context.empty([1, l, c])
            cases.append(Case(
                context: context, family: "attention", shape: "L=\(l) C=\(c) heads=\(stage.heads)", variant: "cpu+gpu",
                flops: spec.flops, bytes: 4 * Double(l * 4 * c), weight: stage.blocks,
                run: { _ = try context.linearAttention(qk: dQK, v: dV, height: stage.height, width: stage.width, heads: stage.heads, lepe: lepe, output: output) },
                output: { try context.download(output) },
                expected: {
                    try Reference.linearAttention(qk: qk, v: v, height: stage.height, width: stage.width, heads: stage.heads, lepeWeight: lw, lepeBias: lb)
                },
                tolerance: 2e-5))
        }
    }
    if wanted("fgla") {
        // Forget-gated attention (head dim 32) at the issue's lengths: chunked vs recurrent vs the
        // un-gated released attention (with its RoPE and LePE) at the same shape. FLOPs are those
        // of the recurrent form (ForgetGateAttentionSpec.flops), so GFLOP/s compare directly.
        for l in [3136, 16384, 65536] where resolution == 224 {
            for heads in [2, 8] {
                let c = 32 * heads
                let side = Int(Double(l).squareRoot())
                let qk = try random([1, l, 2 * c], -2...2), v = try random([1, l, c])
                var gates = try random([1, l, heads], 0...1)
                for i in 0..<gates.count { gates.data[i] = -0.02 - 2 * gates.data[i] * gates.data[i] }
                let dQK = try context.upload(qk), dV = try context.upload(v), dG = try context.upload(gates)
                let output = try context.empty([1, l, c])
                for bidirectional in [false, true] {
                    let spec = try ForgetGateAttentionSpec(qk: qk.shape, v: v.shape, logGate: gates.shape, heads: heads)
                    let key = "fg \(l) \(heads) \(bidirectional)"
                    let expected = { try references.value(key) {
                        try Reference.forgetGateAttention(qk: qk, v: v, logGate: gates, heads: heads, bidirectional: bidirectional, normalize: true)
                    } }
                    for kernel in [ForgetGateKernel.phased(chunk: 16), .phased(chunk: 32), .phased(chunk: 64), .chunked(chunk: 16), .chunked(chunk: 32), .recurrent] {
                        cases.append(Case(
                            context: context, family: "fgla", shape: "L=\(l) h=\(heads) \(bidirectional ? "bidir" : "causal")",
                            variant: kernel == .recurrent ? "recurrent" : "\(kernel)".replacingOccurrences(of: "chunked ", with: "fused "),
                            flops: spec.flops(bidirectional: bidirectional), bytes: 4 * Double(l * (4 * c + heads)), weight: 1,
                            run: { _ = try context.forgetGateAttention(qk: dQK, v: dV, logGate: dG, heads: heads, bidirectional: bidirectional,
                                                                       normalize: true, kernel: kernel, output: output) },
                            output: { try context.download(output) }, expected: expected, tolerance: 1e-4))
                    }
                }
                if side * side == l {
                    let lw = try random([c, 1, 3, 3], -0.5...0.5), lb = try random([c])
                    let lepe = try Conv3x3Weights(context: context, weight: lw, bias: lb, depthwise: true)
                    let spec = try ForgetGateAttentionSpec(qk: qk.shape, v: v.shape, logGate: gates.shape, heads: heads)
                    cases.append(Case(
                        context: context, family: "fgla", shape: "L=\(l) h=\(heads) un-gated", variant: "mlla attn",
                        flops: spec.flops(bidirectional: false), bytes: 4 * Double(l * 4 * c), weight: 1,
                        run: { _ = try context.linearAttention(qk: dQK, v: dV, height: side, width: side, heads: heads, lepe: lepe, output: output) },
                        output: { try context.download(output) },
                        expected: { try Reference.linearAttention(qk: qk, v: v, height: side, width: side, heads: heads, lepeWeight: lw, lepeBias: lb) },
                        tolerance: 2e-5))
                }
            }
        }
    }
    if only == "head" {
        // The UperNet head's dense 3x3 convolutions (MLLA-B UperNet, 512x512 input; fpn_bottleneck
        // also at its 256x256-input size, 64x64), as conv3x3_igemm, against gemm_reg on the same
        // (M = pixels, K = 9 Cin, N = Cout) with random A. Checked against the other conv kernel
        // (conv3x3, itself tested against the reference) and CLBlast's SGEMM.
        let convs: [(name: String, h: Int, w: Int, cin: Int, count: Int)] = [
            ("fpn_bottleneck", 128, 128, 2048, 1), ("fpn_bottleneck", 64, 64, 2048, 0), ("fpn_convs.0", 128, 128, 512, 1),
            ("fpn_convs.1", 64, 64, 512, 1), ("fpn_convs.2", 32, 32, 512, 1), ("bottleneck", 16, 16, 2816, 1),
        ]
        for conv in convs {
            let cout = 512
            let x = try random([1, conv.h, conv.w, conv.cin]), w = try random([cout, conv.cin, 3, 3], -0.05...0.05), b = try random([cout])
            let input = try context.upload(x)
            let igemm = try Conv3x3Weights(context: context, weight: w, bias: b, depthwise: false, implicitGemm: true)
            let direct = try Conv3x3Weights(context: context, weight: w, bias: b, depthwise: false, implicitGemm: false)
            let output = try context.empty([1, conv.h, conv.w, cout])
            let key = "head conv \(conv)"
            let (m, k) = (conv.h * conv.w, 9 * conv.cin)
            cases.append(Case(
                context: context, family: "head", shape: "\(conv.name) \(conv.h)x\(conv.w)x\(conv.cin)->\(cout)", variant: "igemm",
                flops: 2 * Double(m * k * cout), bytes: 4 * Double(m * (conv.cin + cout)), weight: conv.count,
                run: { _ = try context.conv3x3(input, igemm, stride: 1, activation: .relu, output: output) },
                output: { try context.download(output) },
                expected: { try references.value(key) {
                    try context.download(try context.conv3x3(input, direct, stride: 1, activation: .relu))
                } },
                tolerance: 2e-5))
            let a = try random([m, k]), gw = try random([cout, k], -0.05...0.05)
            let gemmWeights = try GemmWeights(context: context, weight: gw, bias: b)
            let gemmInput = try context.upload(a)
            let gemmOutput = try context.empty([m, cout])
            cases.append(Case(
                context: context, family: "head", shape: "  as GEMM M=\(m) K=\(k) N=\(cout)", variant: "gemm_reg",
                flops: 2 * Double(m * k * cout), bytes: 4 * Double(m * (k + cout)), weight: conv.count,
                run: { _ = try context.gemm(gemmInput, gemmWeights, activation: .relu, provider: .register, output: gemmOutput) },
                output: { try context.download(gemmOutput) },
                expected: { try references.value(key + " gemm") {
                    let rows = try GemmWeights(context: context, weight: gw, bias: b, provider: .clblast)
                    return try context.download(try context.gemm(gemmInput, rows, activation: .relu, provider: .clblast))
                } },
                tolerance: 2e-5))
        }
        // mmseg's output for a 375x500 photo (network input 512x683): 150-class logits at 128x171,
        // resized to 512x683 and to 375x500, argmax; the 16-class-block kernel against the
        // one-class kernel (the same arithmetic: labels must be equal).
        let logits = try random([1, 128, 171, 150], -4...4)
        for variant in KernelVariant.allCases {
            let variantContext = contexts[variant]!
            let input = try variantContext.upload(logits)
            let output = try variantContext.empty([1, 375, 500, 1])
            cases.append(Case(
                context: variantContext, family: "head", shape: "resize_argmax 128x171x150->512x683->375x500",
                variant: variant == .cpu ? "vec16" : "scalar",
                flops: 375 * 500 * 150 * 36, bytes: 4 * Double(128 * 171 * 150 + 375 * 500), weight: 1,
                run: { _ = try variantContext.resizeArgmax(input, midHeight: 512, midWidth: 683, height: 375, width: 500, output: output) },
                output: { try variantContext.download(output) },
                expected: { try references.value("resize_argmax") {
                    try contexts[.gpu]!.download(try contexts[.gpu]!.resizeArgmax(try contexts[.gpu]!.upload(logits), midHeight: 512, midWidth: 683,
                                                                                  height: 375, width: 500))
                } },
                tolerance: 0))
        }
        return cases
    }
    if wanted("mean") {
        let last = st[3]
        let l = last.height * last.width
        let x = try random([1, l, last.channels])
        let input = try context.upload(x)
        var result: DeviceTensor?
        cases.append(Case(
            context: context, family: "mean", shape: "L=\(l) C=\(last.channels)", variant: "cpu+gpu",
            flops: Double(l * last.channels), bytes: 4 * Double(l * last.channels), weight: 1,
            run: { result.map { context.recycle($0) }; result = try context.meanTokens(input) },
            output: { try context.download(result!) },
            expected: { try Reference.meanTokens(x) },
            tolerance: 2e-6))
    }
    return cases
}

// MARK: Main

func main() throws {
    let options = try Options(Array(CommandLine.arguments.dropFirst()))
    CLDiscovery.configureEnvironment()
    let context = try CLContext()
    let tuning = GemmTuner.prepare(context)
    let device = context.device
    var contexts: [KernelVariant: CLContext] = [:]
    for variant in KernelVariant.allCases {
        contexts[variant] = try CLContext(device: device, variant: variant)
        GemmTuner.prepare(contexts[variant]!)  // the engine's tuned gemm_reg split (cached per device)
    }
    print("device:   \(device.name) (\(device.platformName), driver \(device.driverVersion), \(device.openCLCVersion))")
    print("options:  \(CLContext.baseOptions) + per-kernel defines (gemm_reg: tuned register tile; conv VEC=16 XPWxCOV=16x1|8x2 cpu / conv3x3_tiled 64x64 gpu; dwconv3x3_rows 16 ch x 4 px x 8 rows cpu at stride 1, dwconv3x3_strips_s2 4 px x 4 rows x all channels at stride 2 / dwconv3x3_tiled gpu; attention and forget gate: local-memory work-groups on gpu)")
    print("gemm_reg: \(tuning.tile) register tile, \(tuning.rowTiles) row tiles per work-item for K <= \(tuning.rowTilesMaxDepth), \(tuning.colTiles) column tiles for outputs of \(tuning.colTilesMinOutput)+ floats, K panels of \(tuning.panelRows) rows (tuned per device, cached; MILA_GEMM_TUNING=0 for the defaults)")
    print("env:      POCL_AFFINITY=\(ProcessInfo.processInfo.environment["POCL_AFFINITY"] ?? "unset"), commit \(commit()), runs \(options.runs) (median; device time from profiling events)")
    let references = ReferenceCache()
    for resolution in options.resolutions {
        print("\n== MLLA-T shapes at \(resolution)x\(resolution) ==")
        let cases = try makeCases(context, contexts: contexts, resolution: resolution, references: references, only: options.only)
            .filter { c in options.variants.isEmpty || options.variants.contains { c.variant.contains($0) } }
        print(pad("op", 10) + pad("shape", 30) + pad("variant", 10) + lpad("ms", 10) + lpad("GFLOP/s", 10) + lpad("GB/s", 9) + lpad("max err", 10))
        var totals: [String: (seconds: Double, flops: Double, bytes: Double, weightedSeconds: Double, weightedFlops: Double)] = [:]
        for c in cases {
            // Check first, then time.
            try c.run()
            let error = relativeMaxError(try c.output(), try c.expected())
            guard error <= c.tolerance else {
                throw BenchError.mismatch("\(c.family) \(c.shape) \(c.variant): max error \(error) of max |expected| exceeds \(c.tolerance)")
            }
            // One timed run enqueues the op back to back until it spans ~2 ms of device time
            // (as kernels run inside a forward pass), so thread wake-ups do not dominate 0.1 ms
            // kernels; its time is divided by the repeat count.
            let single = try c.context.deviceTime { try c.run() }  // also the warm-up
            let repeats = max(1, min(64, Int(0.002 / max(single, 1e-6))))
            var times: [Double] = []
            let runs = c.variant == "tiled" ? min(options.runs, 3) : options.runs
            for _ in 0..<runs {
                times.append(try c.context.deviceTime { for _ in 0..<repeats { try c.run() } } / Double(repeats))
            }
            let ms = median(times) * 1e3
            if options.perKernel {
                // Median over the runs, kernel by kernel (launch order is the same every run).
                let samples = try (0..<runs).map { _ in try c.context.deviceTimes { try c.run() } }
                let parts = samples[0].indices.map { k in (name: samples[0][k].name, seconds: median(samples.map { $0[k].seconds })) }
                print("    per kernel: " + parts.map { String(format: "%@ %.3f ms", $0.name, $0.seconds * 1e3) }.joined(separator: ", "))
            }
            print(pad(c.family, 10) + pad(c.shape, 30) + pad(c.variant, 10) + lpad(String(format: "%.3f", ms), 10)
                  + lpad(String(format: "%.1f", c.flops / ms * 1e-6), 10) + lpad(String(format: "%.1f", c.bytes / ms * 1e-6), 9)
                  + lpad(String(format: "%.1e", error), 10))
            let key = "\(c.family) \(c.variant)"
            var total = totals[key] ?? (0, 0, 0, 0, 0)
            total.seconds += ms / 1e3
            total.flops += c.flops
            total.bytes += c.bytes
            total.weightedSeconds += ms / 1e3 * Double(max(c.weight, 1))
            total.weightedFlops += c.flops * Double(max(c.weight, 1))
            totals[key] = total
        }
        print("\naggregate (distinct shapes, sum of FLOPs or bytes / sum of median times; per forward = weighted by occurrences in MLLA-T):")
        for (key, total) in totals.sorted(by: { $0.key < $1.key }) {
            print("  " + pad(key, 24) + String(format: "%8.2f ms  %7.1f GFLOP/s %6.1f GB/s   per forward %8.2f ms  %7.1f GFLOP/s",
                                               total.seconds * 1e3, total.flops / total.seconds * 1e-9, total.bytes / total.seconds * 1e-9,
                                               total.weightedSeconds * 1e3, total.weightedFlops / total.weightedSeconds * 1e-9))
        }
    }
}

func pad(_ s: String, _ width: Int) -> String { s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count) }
func lpad(_ s: String, _ width: Int) -> String { s.count >= width ? " " + s : String(repeating: " ", count: width - s.count) + s }

do {
    try main()
} catch {
    FileHandle.standardError.write(Data("mila-kernel-bench: \(error)\n".utf8))
    exit(1)
}
