import MilaCore
import Testing

@Suite("Core shapes and specs") struct CoreTests {
    @Test func tensorsRejectZeroSizedAndMismatchedData() {
        #expect(throws: MilaError.self) { try Tensor(zeros: [0, 3]) }
        #expect(throws: MilaError.self) { try Tensor(zeros: []) }
        #expect(throws: MilaError.shapeMismatch(op: "Tensor", tensor: "data", expected: "6 elements for shape (2, 3)", actual: [5])) {
            try Tensor(shape: [2, 3], data: [1, 2, 3, 4, 5])
        }
    }

    @Test func randomTensorsAreReproducible() throws {
        let a = try Tensor(randomUniform: [4, 5], seed: 7), b = try Tensor(randomUniform: [4, 5], seed: 7)
        let c = try Tensor(randomUniform: [4, 5], seed: 8)
        #expect(a == b)
        #expect(a != c)
        #expect(a.data.allSatisfy { (-1...1).contains($0) })
    }

    @Test(arguments: [(1, 1, 1), (1, 2, 1), (2, 2, 1), (3, 2, 2), (7, 2, 4), (56, 2, 28), (7, 1, 7)])
    func conv3x3OutputSize(_ size: Int, _ stride: Int, _ expected: Int) {
        #expect(Shape.conv3x3Output(size, stride: stride) == expected)
    }

    @Test func gemmSpecChecksEveryOperand() throws {
        let spec = try GemmSpec(input: [2, 3, 5], weight: [7, 5], bias: [7], residual: [2, 3, 7], multiply: nil)
        #expect(spec.rows == 6 && spec.inFeatures == 5 && spec.outFeatures == 7 && spec.outputShape == [2, 3, 7])
        #expect(spec.flops == 2 * 6 * 5 * 7)
        #expect(throws: MilaError.shapeMismatch(op: "gemm", tensor: "bias", expected: "(7)", actual: [6])) {
            try GemmSpec(input: [3, 5], weight: [7, 5], bias: [6], residual: nil, multiply: nil)
        }
        #expect(throws: MilaError.self) { try GemmSpec(input: [3, 0], weight: [7, 5], bias: nil, residual: nil, multiply: nil) }
        #expect(throws: MilaError.self) { try GemmSpec(input: [3, 5], weight: [7, 5, 1], bias: nil, residual: nil, multiply: nil) }
    }

    @Test func convSpecChecksLayoutStrideAndActivation() throws {
        let spec = try Conv3x3Spec(input: [1, 7, 5, 3], weight: [16, 3, 3, 3], bias: [16], residual: nil, stride: 2,
                                   depthwise: false, activation: .relu)
        #expect(spec.outputShape == [1, 4, 3, 16])
        #expect(throws: MilaError.self) {
            try Conv3x3Spec(input: [1, 7, 5, 3], weight: [16, 4, 3, 3], bias: nil, residual: nil, stride: 1, depthwise: false, activation: .none)
        }
        #expect(throws: MilaError.self) {
            try Conv3x3Spec(input: [1, 7, 5, 3], weight: [3, 1, 3, 3], bias: nil, residual: nil, stride: 1, depthwise: true, activation: .gelu)
        }
        #expect(throws: MilaError.self) {
            try Conv3x3Spec(input: [7, 5, 3], weight: [3, 1, 3, 3], bias: nil, residual: nil, stride: 1, depthwise: true, activation: .none)
        }
    }

    @Test func attentionSpecNeedsRoPEFriendlyChannels() throws {
        let spec = try LinearAttentionSpec(qk: [1, 12, 32], v: [1, 12, 16], height: 3, width: 4, heads: 2,
                                           lepeWeight: [16, 1, 3, 3], lepeBias: [16])
        #expect(spec.headDim == 8 && spec.tokens == 12)
        #expect(throws: MilaError.self) {
            try LinearAttentionSpec(qk: [1, 12, 32], v: [1, 12, 16], height: 3, width: 4, heads: 3, lepeWeight: [16, 1, 3, 3], lepeBias: [16])
        }
        #expect(throws: MilaError.self) {
            try LinearAttentionSpec(qk: [1, 12, 32], v: [1, 12, 16], height: 4, width: 4, heads: 2, lepeWeight: [16, 1, 3, 3], lepeBias: [16])
        }
    }

    @Test func ropeThetaFollowsTheSpec() {
        // k_max = C / 4 = 16 for C = 64: theta_m = 10000^(-m / 16).
        #expect(RoPE.theta(0, channels: 64) == 1)
        #expect(abs(RoPE.theta(8, channels: 64) - 0.01) < 1e-15)
        #expect(abs(RoPE.theta(15, channels: 64) - 1 / 5623.413251903491) < 1e-15)
    }

    @Test func errorMessagesNameTheOpTensorAndShapes() {
        let error = MilaError.shapeMismatch(op: "gemm", tensor: "weight", expected: "(4, 5)", actual: [4, 6])
        #expect(error.description == "gemm: weight has shape (4, 6), expected (4, 5)")
    }
}

@Suite("BatchNorm folding") struct BatchNormFoldingTests {
    @Test func foldedConvEqualsConvThenBatchNorm() throws {
        let w = try Tensor(randomUniform: [2, 1, 3, 3], seed: 1)
        let gamma = try Tensor(shape: [2], data: [1.5, -0.5]), beta = try Tensor(shape: [2], data: [0.25, 2])
        let mean = try Tensor(shape: [2], data: [0.1, -0.3]), variance = try Tensor(shape: [2], data: [4, 0.25])
        let folded = try BatchNormFolding.fold(weight: w, bias: nil, gamma: gamma, beta: beta, runningMean: mean, runningVar: variance)
        // For channel o: W' = W * gamma / sqrt(var + eps), b' = beta - mean * gamma / sqrt(var + eps).
        for o in 0..<2 {
            let s = Double(gamma.data[o]) / (Double(variance.data[o]) + 1e-5).squareRoot()
            for i in 0..<9 {
                #expect(abs(Double(folded.weight.data[o * 9 + i]) - Double(w.data[o * 9 + i]) * s) < 1e-6)
            }
            #expect(abs(Double(folded.bias.data[o]) - (Double(beta.data[o]) - Double(mean.data[o]) * s)) < 1e-6)
        }
        #expect(throws: MilaError.self) {
            try BatchNormFolding.fold(weight: w, bias: nil, gamma: try Tensor(zeros: [3]), beta: beta, runningMean: mean, runningVar: variance)
        }
    }
}

@Suite("fp16 weight rounding") struct PrecisionTests {
    /// IEEE binary16 round to nearest, ties to even, on values whose halves are known by hand.
    @Test func roundsToNearestHalfTiesToEven() {
        let values: [Float] = [1.0 / 3.0, 1 + 0x1p-11, 1 + 3 * 0x1p-11, -2.5, 65504, 0x1p-24, 0.1]
        let expected: [Float] = [0.333251953125, 1, 1 + 0x1p-9, -2.5, 65504, 0x1p-24, 0.0999755859375]
        #expect(Precision.roundedToHalf(values) == expected)
        #expect(Precision.halfBits([1, -2, 65504, 0x1p-24]) == [0x3C00, 0xC000, 0x7BFF, 0x0001])
    }

    @Test func rejectsWhatDoesNotFitNamingTheElement() throws {
        let t = try Tensor(shape: [2, 2, 3], data: [0, 1, 2, 3, 4, -65505, 6, 7, 8, 9, 10, 11])
        #expect(throws: MilaError.invalidArgument(op: "fp16", message: "w[0, 1, 2] = -65505.0 does not fit a half float (|w| <= 65504); use --precision fp32")) {
            try Precision.checkFitsHalf(t, name: "w")
        }
        var nan = try Tensor(zeros: [3])
        nan.data[2] = .nan
        #expect(throws: MilaError.self) { try Precision.checkFitsHalf(nan, name: "w") }
        try Precision.checkFitsHalf(try Tensor(shape: [2], data: [65504, -65504]), name: "w")
    }
}
