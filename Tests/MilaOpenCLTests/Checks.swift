import MilaCore
import MilaOpenCL
import MilaReference
import Testing

// One check per op: random inputs, the OpenCL op, the Float64 reference, and the comparison.
// The parameterised tests sweep them over awkward sizes; KernelCoverageTests runs each once per
// entry point to prove every kernel in Kernels/ is exercised.

struct GemmCase: CustomTestStringConvertible, Sendable {
    var m: Int, k: Int, n: Int
    var activation: Activation = .none
    var residual = false
    var multiply = false
    var bias = true
    var testDescription: String {
        "gemm M=\(m) K=\(k) N=\(n) act=\(activation)\(bias ? "" : " nobias")\(multiply ? " mul" : "")\(residual ? " res" : "")"
    }
}

/// With `.fp16` the weights are stored as half floats and the reference uses the same weights
/// rounded to half; `provider` nil lets the engine choose.
func checkGemm(_ context: CLContext, _ c: GemmCase, provider: GemmProvider?, precision: Precision = .fp32) throws {
    let label = "\(c.testDescription) provider=\(provider.map { "\($0)" } ?? "default") \(precision)"
    let x = try random([c.m, c.k], label + "x")
    var w = try random([c.n, c.k], label + "w", in: -0.5...0.5)
    let b = c.bias ? try random([c.n], label + "b") : nil
    let r = c.residual ? try random([c.m, c.n], label + "r") : nil
    let mul = c.multiply ? try random([c.m, c.n], label + "m") : nil
    let weights = try GemmWeights(context: context, weight: w, bias: b, precision: precision, provider: provider)
    if precision == .fp16 { w = try Tensor(shape: w.shape, data: Precision.roundedToHalf(w.data)) }
    let expected = try Reference.gemm(x, weight: w, bias: b, activation: c.activation, residual: r, multiply: mul)
    let y = try context.gemm(try context.upload(x), weights, activation: c.activation,
                             multiply: try mul.map { try context.upload($0) }, residual: try r.map { try context.upload($0) },
                             provider: provider)
    expectClose(try context.download(y), expected, precision == .fp16 ? Tolerances.halfWeights : Tolerances.accumulation, label)
}

/// `c` through gemm_reg on each context from the same random inputs (bias and residual always
/// on), for bit-for-bit comparisons between work splits or store paths.
func registerGemmOutputs(_ c: GemmCase, on contexts: [CLContext], label: String) throws -> [[Float]] {
    let x = try random([c.m, c.k], "\(label) x"), w = try random([c.n, c.k], "\(label) w", in: -0.5...0.5)
    let b = try random([c.n], "\(label) b"), r = try random([c.m, c.n], "\(label) r")
    return try contexts.map { on in
        let weights = try GemmWeights(context: on, weight: w, bias: b)
        return try on.download(try on.gemm(try on.upload(x), weights, activation: c.activation,
                                           residual: try on.upload(r), provider: .register)).data
    }
}

struct ConvCase: CustomTestStringConvertible, Sendable {
    var batch = 1
    var height: Int, width: Int, inChannels: Int, outChannels: Int, stride: Int
    var depthwise = false
    var activation: Activation = .none
    var residual = false
    var testDescription: String {
        "\(depthwise ? "dwconv3x3" : "conv3x3") B=\(batch) H=\(height) W=\(width) C=\(inChannels)\(depthwise ? "" : "->\(outChannels)") s=\(stride) act=\(activation)\(residual ? " res" : "")"
    }
}

/// With `.fp16` the weights are stored as half floats and the reference uses the same weights
/// rounded to half.
func checkConv(_ context: CLContext, _ c: ConvCase, implicitGemm: Bool? = nil, precision: Precision = .fp32) throws {
    let label = "\(c.testDescription) variant=\(context.variant)" + (implicitGemm.map { " igemm=\($0)" } ?? "") + " \(precision)"
    let cout = c.depthwise ? c.inChannels : c.outChannels
    let x = try random([c.batch, c.height, c.width, c.inChannels], label + "x")
    var w = try random(c.depthwise ? [cout, 1, 3, 3] : [cout, c.inChannels, 3, 3], label + "w", in: -0.5...0.5)
    let b = try random([cout], label + "b")
    let outShape = [c.batch, Shape.conv3x3Output(c.height, stride: c.stride), Shape.conv3x3Output(c.width, stride: c.stride), cout]
    let r = c.residual ? try random(outShape, label + "r") : nil
    let weights = try Conv3x3Weights(context: context, weight: w, bias: b, depthwise: c.depthwise, implicitGemm: implicitGemm,
                                     precision: precision)
    if precision == .fp16 { w = try Tensor(shape: w.shape, data: Precision.roundedToHalf(w.data)) }
    let expected = try Reference.conv3x3(x, weight: w, bias: b, stride: c.stride, depthwise: c.depthwise,
                                         activation: c.activation, residual: r)
    let y = try context.conv3x3(try context.upload(x), weights, stride: c.stride, activation: c.activation,
                                residual: try r.map { try context.upload($0) })
    expectClose(try context.download(y), expected, precision == .fp16 ? Tolerances.halfWeights : Tolerances.accumulation, label)
}

/// dwconv3x3_strips_ln (`depthwiseConvLayerNorm`, stride 1): the conv against the reference,
/// the LayerNorm against the reference's LayerNorm of the conv the kernel wrote (the reference's
/// own conv differs in the last bit, which a large mean turns into more after dividing by
/// sigma), then both against the two-kernel path (conv3x3, then layerNorm) on the same context,
/// which they equal bit for bit.
func checkDepthwiseNorm(_ context: CLContext, _ c: ConvCase, bias: Bool = true, offset: Float = 0) throws {
    let label = "\(c.testDescription) +layernorm bias=\(bias) offset=\(offset) variant=\(context.variant)"
    let x = try random([c.batch, c.height, c.width, c.inChannels], label + "x")
    let w = try random([c.inChannels, 1, 3, 3], label + "w", in: -0.5...0.5)
    let b = bias ? try random([c.inChannels], label + "b") : nil
    var r = c.residual ? try random([c.batch, c.height, c.width, c.inChannels], label + "r") : nil
    if offset != 0, r != nil { for i in 0..<r!.count { r!.data[i] += offset } }
    let lw = try random([c.inChannels], label + "lw"), lb = try random([c.inChannels], label + "lb")
    let conv = try Reference.conv3x3(x, weight: w, bias: b, stride: 1, depthwise: true, activation: c.activation, residual: r)
    let weights = try Conv3x3Weights(context: context, weight: w, bias: b, depthwise: true)
    let norm = try LayerNormWeights(context: context, weight: lw, bias: lb)
    let (dx, dr) = (try context.upload(x), try r.map { try context.upload($0) })
    let (y, n) = try context.depthwiseConvLayerNorm(dx, weights, activation: c.activation, residual: dr, norm: norm)
    let (gotConv, gotNorm) = (try context.download(y), try context.download(n))
    expectClose(gotConv, conv, Tolerances.accumulation, label + " conv")
    expectClose(gotNorm, try Reference.layerNorm(gotConv, weight: lw, bias: lb), Tolerances.layerNorm, label + " norm")
    let apart = try context.conv3x3(dx, weights, stride: 1, activation: c.activation, residual: dr)
    let apartNorm = try context.layerNorm(apart, norm)
    #expect(try context.download(apart).data == gotConv.data, "\(label): conv differs from dwconv3x3_rows")
    #expect(try context.download(apartNorm).data == gotNorm.data, "\(label): norm differs from layernorm_rows_vec")
}

func checkLayerNorm(_ context: CLContext, rows: Int, channels: Int, offset: Float = 0) throws {
    let label = "layernorm rows=\(rows) C=\(channels) offset=\(offset) variant=\(context.variant)"
    var x = try random([rows, channels], label + "x", in: -2...2)
    for i in 0..<x.count { x.data[i] += offset }
    let w = try random([channels], label + "w")
    let b = try random([channels], label + "b")
    let expected = try Reference.layerNorm(x, weight: w, bias: b)
    let y = try context.layerNorm(try context.upload(x), try LayerNormWeights(context: context, weight: w, bias: b))
    expectClose(try context.download(y), expected, Tolerances.layerNorm, label)
}

struct AttentionCase: CustomTestStringConvertible, Sendable {
    var batch = 1
    var height: Int, width: Int, channels: Int, heads: Int
    var testDescription: String { "linear_attention B=\(batch) H=\(height) W=\(width) C=\(channels) heads=\(heads) L=\(height * width)" }
}

func checkLinearAttention(_ context: CLContext, _ c: AttentionCase) throws {
    let label = c.testDescription
    let l = c.height * c.width
    let qk = try random([c.batch, l, 2 * c.channels], label + "qk", in: -2...2)
    let v = try random([c.batch, l, c.channels], label + "v")
    let lw = try random([c.channels, 1, 3, 3], label + "lw", in: -0.5...0.5)
    let lb = try random([c.channels], label + "lb")
    let expected = try Reference.linearAttention(qk: qk, v: v, height: c.height, width: c.width, heads: c.heads,
                                                 lepeWeight: lw, lepeBias: lb)
    let lepe = try Conv3x3Weights(context: context, weight: lw, bias: lb, depthwise: true)
    let y = try context.linearAttention(qk: try context.upload(qk), v: try context.upload(v), height: c.height, width: c.width,
                                        heads: c.heads, lepe: lepe)
    expectClose(try context.download(y), expected, Tolerances.attention, label)
}

func checkMeanTokens(_ context: CLContext, batch: Int, tokens: Int, channels: Int, offset: Float = 0) throws {
    let label = "mean_tokens B=\(batch) L=\(tokens) C=\(channels) offset=\(offset)"
    var x = try random([batch, tokens, channels], label)
    for i in 0..<x.count { x.data[i] += offset }
    let expected = try Reference.meanTokens(x)
    expectClose(try context.download(try context.meanTokens(try context.upload(x))), expected, Tolerances.mean, label)
}

func checkElementwise(_ context: CLContext, shape: [Int], op: ElementwiseOp) throws {
    let label = "elementwise \(op) \(shape)"
    let a = try random(shape, label + "a"), b = try random(shape, label + "b")
    let expected = try Reference.elementwise(a, b, op)
    let y = try context.elementwise(try context.upload(a), try context.upload(b), op)
    expectClose(try context.download(y), expected, Tolerances.exact, label)
}

func checkActivation(_ context: CLContext, _ activation: Activation, count: Int, range: ClosedRange<Float>) throws {
    let label = "activation \(activation) n=\(count) range=\(range)"
    let x = try random([count], label, in: range)
    let expected = Reference.activation(x, activation)
    let y = try context.activation(try context.upload(x), activation)
    expectElementsClose(try context.download(y), expected, ElementTolerances.activation, label)
}

func checkCopy(_ context: CLContext, count: Int) throws {
    let label = "copy n=\(count)"
    let x = try random([count], label)
    let y = try context.copy(try context.upload(x))
    expectClose(try context.download(y), x, Tolerances.exact, label)
}

func checkPad(_ context: CLContext, shape: [Int], height: Int, width: Int) throws {
    let label = "pad \(shape) -> \(height)x\(width)"
    let x = try random(shape, label)
    let expected = try Reference.padBottomRight(x, height: height, width: width)
    let y = try context.padBottomRight(try context.upload(x), height: height, width: width)
    expectClose(try context.download(y), expected, Tolerances.exact, label)
}
