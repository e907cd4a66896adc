import MilaCore
import MilaReference
import Testing

// The reference is ground truth for every kernel, so it is checked against hand-computed values
// and identities rather than against itself.

@Suite("CPU reference") struct ReferenceTests {
    @Test func activationsMatchKnownValues() {
        #expect(abs(Reference.activate(1, .gelu) - 0.8413447460685429) < 1e-15)
        #expect(abs(Reference.activate(-3, .gelu) - -0.004049694094890274) < 1e-15)
        #expect(abs(Reference.activate(1, .silu) - 0.7310585786300049) < 1e-15)
        #expect(Reference.activate(-2, .relu) == 0)
        #expect(Reference.activate(-2, .none) == -2)
    }

    @Test func gemmByHand() throws {
        let x = try Tensor(shape: [2, 3], data: [1, 2, 3, 4, 5, 6])
        let w = try Tensor(shape: [2, 3], data: [1, 0, -1, 0.5, 0.5, 0.5])
        let b = try Tensor(shape: [2], data: [10, -1])
        let r = try Tensor(shape: [2, 2], data: [1, 1, 1, 1])
        let m = try Tensor(shape: [2, 2], data: [2, 2, 2, 2])
        // x W^T + b = [[8, 2], [8, 6.5]]
        let y = try Reference.gemm(x, weight: w, bias: b, residual: r, multiply: m)
        #expect(y.data == [17, 5, 17, 14])
        let relu = try Reference.gemm(x, weight: w, bias: try Tensor(shape: [2], data: [-9, -3]), activation: .relu)
        #expect(relu.data == [0, 0, 0, 4.5])
    }

    @Test func convIdentityKernelsReturnTheInput() throws {
        let x = try Tensor(randomUniform: [1, 5, 3, 2], seed: 3)
        var w = try Tensor(zeros: [2, 2, 3, 3])
        w.data[(0 * 2 + 0) * 9 + 4] = 1  // out 0 <- in 0, centre tap
        w.data[(1 * 2 + 1) * 9 + 4] = 1
        #expect(try Reference.conv3x3(x, weight: w, bias: nil, stride: 1, depthwise: false) == x)
        var dw = try Tensor(zeros: [2, 1, 3, 3])
        dw.data[4] = 1; dw.data[13] = 1
        #expect(try Reference.conv3x3(x, weight: dw, bias: nil, stride: 1, depthwise: true) == x)
        // Stride 2 on odd sizes picks rows and columns 0, 2, 4.
        let strided = try Reference.conv3x3(x, weight: dw, bias: nil, stride: 2, depthwise: true)
        #expect(strided.shape == [1, 3, 2, 2])
        let outIndex: Int = ((2 * 2) + 1) * 2 + 1   // (y 2, x 1, c 1) of (3, 2, 2)
        let inIndex: Int = ((4 * 3) + 2) * 2 + 1    // (y 4, x 2, c 1) of (5, 3, 2)
        #expect(strided.data[outIndex] == x.data[inIndex])
    }

    @Test func depthwiseBorderTapsSeeZeroPadding() throws {
        let x = try Tensor(shape: [1, 2, 2, 1], data: [1, 2, 3, 4])
        let w = try Tensor(shape: [1, 1, 3, 3], data: [Float](repeating: 1, count: 9))
        // Every output sums the whole 2x2 map (all taps inside or zero padding).
        #expect(try Reference.conv3x3(x, weight: w, bias: try Tensor(shape: [1], data: [0.5]), stride: 1, depthwise: true).data
                == [10.5, 10.5, 10.5, 10.5])
    }

    @Test func layerNormByHand() throws {
        let x = try Tensor(shape: [1, 4], data: [1, 2, 3, 4])
        let y = try Reference.layerNorm(x, weight: try Tensor(shape: [4], data: [1, 1, 1, 2]), bias: try Tensor(shape: [4], data: [0, 0, 0, 1]))
        let inv = 1 / (1.25 + 1e-5).squareRoot()
        let expected = [-1.5 * inv, -0.5 * inv, 0.5 * inv, 1.5 * inv * 2 + 1]
        for (a, e) in zip(y.data, expected) { #expect(abs(Double(a) - e) < 1e-6) }
    }

    @Test func linearAttentionOnOneToken() throws {
        // L = 1 at (0, 0): RoPE is the identity, kv = k^T v, z = 1 / (q.k + 1e-6), and LePE sees
        // only its centre tap. One head of d = 4.
        let qkValues: [Float] = [0.5, -1, 2, 0, 1, 0.25, -0.5, 3]
        let v: [Float] = [1, -2, 0.5, 4]
        let lw = try Tensor(randomUniform: [4, 1, 3, 3], seed: 5), lb = try Tensor(shape: [4], data: [0.1, 0.2, 0.3, 0.4])
        let y = try Reference.linearAttention(qk: try Tensor(shape: [1, 1, 8], data: qkValues), v: try Tensor(shape: [1, 1, 4], data: v),
                                              height: 1, width: 1, heads: 1, lepeWeight: lw, lepeBias: lb)
        func elu1(_ x: Float) -> Double { x > 0 ? Double(x) + 1 : _exp(Double(x)) }
        let q = qkValues[0..<4].map(elu1), k = qkValues[4..<8].map(elu1)
        let qk = zip(q, k).map(*).reduce(0, +)
        for j in 0..<4 {
            let attention = qk * Double(v[j]) / (qk + 1e-6)
            let lepe = Double(v[j]) * Double(lw.data[j * 9 + 4]) + Double(lb.data[j])
            #expect(abs(Double(y.data[j]) - (attention + lepe)) < 1e-6)
        }
    }

    @Test func meanAndPad() throws {
        let x = try Tensor(shape: [1, 3, 2], data: [1, 10, 2, 20, 3, 30])
        #expect(try Reference.meanTokens(x).data == [2, 20])
        let map = try Tensor(shape: [1, 1, 2, 1], data: [5, 6])
        #expect(try Reference.padBottomRight(map, height: 2, width: 3).data == [5, 6, 0, 0, 0, 0])
    }
}

#if canImport(Glibc)
import Glibc
func _exp(_ x: Double) -> Double { Glibc.exp(x) }
#else
import Darwin
func _exp(_ x: Double) -> Double { Darwin.exp(x) }
#endif
