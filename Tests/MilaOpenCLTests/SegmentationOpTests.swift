import MilaCore
import MilaOpenCL
import MilaReference
import Testing

// The UperNet head's ops against their CPU references on awkward sizes: up and down, odd
// ratios (24 -> 47, 63 -> 125), 1 -> n broadcasts, same size; pooling bins that overlap
// (16 -> 6, 22 -> 6) and repeat (2 -> 6); channel-slice views; the implicit-GEMM convolution
// at head-like channel counts with ragged pixel tiles and output channels.

struct ResizeCase: CustomTestStringConvertible, Sendable {
    var batch = 1
    var height: Int, width: Int, channels: Int, outHeight: Int, outWidth: Int
    var testDescription: String { "resize B=\(batch) \(height)x\(width)x\(channels) -> \(outHeight)x\(outWidth)" }
}

/// Writes into channel slice `offset` of a `pixelStride`-channel buffer when `offset` is set.
func checkResize(_ context: CLContext, _ c: ResizeCase, slice: (offset: Int, pixelStride: Int)? = nil) throws {
    let label = "\(c.testDescription) variant=\(context.variant)"
    let x = try random([c.batch, c.height, c.width, c.channels], label + "x")
    let expected = try Reference.resizeBilinear(x, height: c.outHeight, width: c.outWidth)
    let shape = [c.batch, c.outHeight, c.outWidth, c.channels]
    if let slice {
        let pixels = c.batch * c.outHeight * c.outWidth
        let fill = [Float](repeating: 7, count: pixels * slice.pixelStride)
        let buffer = try context.upload(fill)
        let view = DeviceTensor(buffer: buffer, shape: shape, offset: slice.offset, pixelStride: slice.pixelStride)
        _ = try context.resizeBilinear(try context.upload(x), height: c.outHeight, width: c.outWidth, output: view)
        let all = try context.download(buffer)
        expectClose(try context.download(view), expected, Tolerances.resize, label + " slice")
        // Nothing outside the slice is touched.
        let outside = (0..<all.count).filter { ($0 % slice.pixelStride) < slice.offset || ($0 % slice.pixelStride) >= slice.offset + c.channels }
        #expect(outside.allSatisfy { all[$0] == 7 }, "\(label): a value outside the slice changed")
    } else {
        let y = try context.resizeBilinear(try context.upload(x), height: c.outHeight, width: c.outWidth)
        expectClose(try context.download(y), expected, Tolerances.resize, label)
    }
}

func checkAdaptivePool(_ context: CLContext, batch: Int = 1, height: Int, width: Int, channels: Int, size: Int,
                       slice: (offset: Int, pixelStride: Int)? = nil) throws {
    let label = "adaptive_avg_pool B=\(batch) \(height)x\(width)x\(channels) -> \(size) variant=\(context.variant)"
    let x = try random([batch, height, width, channels], label + "x")
    let expected = try Reference.adaptiveAvgPool(x, size: size)
    let input: DeviceTensor
    if let slice {
        // x stored as channels [offset, offset + C) of a wider buffer whose other channels are noise.
        let wide = try random([batch, height, width, slice.pixelStride], label + "wide")
        var data = wide.data
        for p in 0..<(batch * height * width) { for c in 0..<channels { data[p * slice.pixelStride + slice.offset + c] = x.data[p * channels + c] } }
        input = DeviceTensor(buffer: try context.upload(data), shape: x.shape, offset: slice.offset, pixelStride: slice.pixelStride)
    } else {
        input = try context.upload(x)
    }
    let y = try context.adaptiveAvgPool(input, size: size)
    expectClose(try context.download(y), expected, Tolerances.pool, label)
}

/// Labels of the fused kernel against the reference's materialised two resizes and argmax. A
/// pixel may differ only where the reference's top two classes are closer than the float32
/// rounding of the two resizes can tell apart (`Tolerances.argmaxTie`).
func checkResizeArgmax(_ context: CLContext, batch: Int = 1, height: Int, width: Int, classes: Int,
                       mid: (Int, Int), out: (Int, Int)) throws {
    let label = "resize_argmax B=\(batch) \(height)x\(width)x\(classes) -> \(mid) -> \(out) variant=\(context.variant)"
    let x = try random([batch, height, width, classes], label + "x", in: -4...4)
    let full = try Reference.resizeBilinear(try Reference.resizeBilinear(x, height: mid.0, width: mid.1), height: out.0, width: out.1)
    let expected = try Reference.argmaxChannels(full, classes: classes)
    let y = try context.download(try context.resizeArgmax(try context.upload(x), midHeight: mid.0, midWidth: mid.1,
                                                          height: out.0, width: out.1))
    #expect(y.shape == [batch, out.0, out.1, 1])
    var unexplained = 0
    for p in 0..<expected.count where y.data[p] != expected.data[p] {
        let got = Int(y.data[p]), want = Int(expected.data[p])
        guard got >= 0, got < classes else { unexplained += 1; continue }
        let gap = Double(full.data[p * classes + want]) - Double(full.data[p * classes + got])
        if gap > Tolerances.argmaxTie { unexplained += 1 }
    }
    #expect(unexplained == 0, "\(label): \(unexplained) labels differ beyond a float32 tie")
}

@Suite("Segmentation ops") struct SegmentationOpTests {
    static let resizes: [ResizeCase] = [
        ResizeCase(height: 12, width: 16, channels: 5, outHeight: 24, outWidth: 32),
        ResizeCase(height: 24, width: 32, channels: 3, outHeight: 47, outWidth: 63),
        ResizeCase(height: 63, width: 94, channels: 2, outHeight: 125, outWidth: 375),
        ResizeCase(batch: 2, height: 1, width: 1, channels: 17, outHeight: 5, outWidth: 3),
        ResizeCase(height: 2, width: 1, channels: 4, outHeight: 3, outWidth: 2),
        ResizeCase(height: 37, width: 29, channels: 7, outHeight: 11, outWidth: 8),
        ResizeCase(height: 9, width: 13, channels: 16, outHeight: 9, outWidth: 13),
        ResizeCase(height: 94, width: 125, channels: 1, outHeight: 375, outWidth: 500),
        ResizeCase(height: 4, width: 5, channels: 48, outHeight: 7, outWidth: 10),
        ResizeCase(batch: 2, height: 13, width: 19, channels: 32, outHeight: 26, outWidth: 37),
    ]

    @Test("resize_bilinear", arguments: onHardware(resizes))
    func resize(_ c: Targeted<ResizeCase>) throws {
        try checkResize(try c.context(), c.value)
    }

    @Test("resize_bilinear into a channel slice", arguments: KernelTarget.hardware)
    func resizeSlice(target: KernelTarget) throws {
        try checkResize(try target.context(), ResizeCase(height: 3, width: 5, channels: 6, outHeight: 7, outWidth: 4),
                        slice: (offset: 5, pixelStride: 19))
        try checkResize(try target.context(), ResizeCase(height: 3, width: 5, channels: 32, outHeight: 7, outWidth: 4),
                        slice: (offset: 17, pixelStride: 64))
    }

    @Test("adaptive_avg_pool", arguments: [(16, 16, 6), (22, 16, 6), (16, 22, 3), (2, 2, 6), (2, 1, 3), (5, 7, 1), (13, 11, 2)],
          KernelTarget.hardware)
    func pool(_ c: (Int, Int, Int), target: KernelTarget) throws {
        try checkAdaptivePool(try target.context(), height: c.0, width: c.1, channels: 9, size: c.2)
    }

    @Test("adaptive_avg_pool from a channel slice", arguments: KernelTarget.hardware)
    func poolSlice(target: KernelTarget) throws {
        try checkAdaptivePool(try target.context(), batch: 2, height: 7, width: 5, channels: 6, size: 6,
                              slice: (offset: 3, pixelStride: 13))
    }

    @Test("resize_argmax", arguments: [((11, 8), (41, 29), (41, 29)), ((26, 37), (101, 147), (150, 100)),
                                       ((1, 1), (3, 2), (5, 7)), ((12, 16), (48, 64), (33, 100))],
          KernelTarget.hardware)
    func resizeArgmax(_ c: ((Int, Int), (Int, Int), (Int, Int)), target: KernelTarget) throws {
        try checkResizeArgmax(try target.context(), height: c.0.0, width: c.0.1, classes: 7, mid: c.1, out: c.2)
    }

    @Test("resize_argmax with many classes (16-class blocks and a tail)", arguments: [16, 33, 150], KernelTarget.hardware)
    func resizeArgmaxBatchAndManyClasses(classes: Int, target: KernelTarget) throws {
        try checkResizeArgmax(try target.context(), batch: 2, height: 5, width: 6, classes: classes, mid: (19, 22), out: (23, 17))
    }

    static let implicitGemm: [ConvCase] = [
        ConvCase(height: 5, width: 7, inChannels: 64, outChannels: 64, stride: 1, activation: .relu),
        ConvCase(batch: 2, height: 4, width: 9, inChannels: 96, outChannels: 70, stride: 1, activation: .relu),
        ConvCase(height: 1, width: 2, inChannels: 130, outChannels: 33, stride: 1, activation: .none, residual: true),
        ConvCase(height: 6, width: 11, inChannels: 80, outChannels: 129, stride: 2, activation: .relu),
        ConvCase(height: 3, width: 3, inChannels: 513, outChannels: 40, stride: 1, activation: .relu),
    ]

    @Test("conv3x3_igemm", arguments: onImplementations(implicitGemm))
    func implicitGemmConv(_ c: Targeted<ConvCase>) throws {
        try checkConv(try c.context(), c.value, implicitGemm: true)
    }

    @Test("conv3x3 into a channel slice", arguments: [true, false], KernelTarget.hardware.filter { $0.variant == .cpu })
    func convSlice(implicitGemm: Bool, target: KernelTarget) throws {
        let context = try target.context()
        let c = ConvCase(height: 4, width: 5, inChannels: 8, outChannels: 20, stride: 1, activation: .relu)
        let label = c.testDescription + " slice igemm=\(implicitGemm)"
        let x = try random([1, 4, 5, 8], label + "x")
        let w = try random([20, 8, 3, 3], label + "w", in: -0.5...0.5)
        let b = try random([20], label + "b")
        let expected = try Reference.conv3x3(x, weight: w, bias: b, stride: 1, depthwise: false, activation: .relu)
        let buffer = try context.upload([Float](repeating: 7, count: 20 * 29))
        let view = DeviceTensor(buffer: buffer, shape: [1, 4, 5, 20], offset: 6, pixelStride: 29)
        _ = try context.conv3x3(try context.upload(x), try Conv3x3Weights(context: context, weight: w, bias: b, depthwise: false,
                                                                          implicitGemm: implicitGemm),
                                stride: 1, activation: .relu, output: view)
        expectClose(try context.download(view), expected, Tolerances.accumulation, label)
        let all = try context.download(buffer)
        #expect((0..<all.count).filter { $0 % 29 < 6 || $0 % 29 >= 26 }.allSatisfy { all[$0] == 7 })
    }

    @Test(arguments: KernelTarget.hardware)
    func layerNormIntoASlice(target: KernelTarget) throws {
        let context = try target.context()
        let x = try random([6, 32], "ln slice x")
        let (w, b) = (try random([32], "ln slice w"), try random([32], "ln slice b"))
        let expected = try Reference.layerNorm(x, weight: w, bias: b)
        let view = DeviceTensor(buffer: try context.upload([Float](repeating: 7, count: 6 * 48)), shape: [6, 32], offset: 16, pixelStride: 48)
        _ = try context.layerNorm(try context.upload(x), try LayerNormWeights(context: context, weight: w, bias: b), output: view)
        expectClose(try context.download(view), expected, Tolerances.layerNorm, "layernorm into a slice")
    }

    @Test func viewsAreRefusedWhereKernelsReadDenseTensors() throws {
        let context = try TestDevice.context(.cpu)
        let view = DeviceTensor(buffer: try context.upload([Float](repeating: 0, count: 40)), shape: [1, 2, 2, 4], offset: 2, pixelStride: 10)
        #expect(throws: MilaError.self) { try context.resizeBilinear(view, height: 3, width: 3) }
        #expect(throws: MilaError.self) { try context.resizeArgmax(view, midHeight: 3, midWidth: 3, height: 4, width: 4) }
    }

    @Test func bilinearTapsFollowPyTorch() {
        // 12 -> 24: scale 0.5; dst 0 -> src max(0, -0.25) = 0; dst 23 -> 11.25 -> i0 11 = last, so i1 = 11.
        #expect(Bilinear.tap(0, inSize: 12, outSize: 24) == BilinearTap(i0: 0, i1: 1, w0: 1, w1: 0))
        #expect(Bilinear.tap(23, inSize: 12, outSize: 24) == BilinearTap(i0: 11, i1: 11, w0: 0.75, w1: 0.25))
        #expect(Bilinear.tap(1, inSize: 12, outSize: 24) == BilinearTap(i0: 0, i1: 1, w0: 0.75, w1: 0.25))
        // Same size is a copy; downscale 4 -> 2 samples between pixels 0/1 and 2/3.
        #expect(Bilinear.tap(5, inSize: 9, outSize: 9) == BilinearTap(i0: 5, i1: 5, w0: 1, w1: 0))
        #expect(Bilinear.tap(1, inSize: 4, outSize: 2) == BilinearTap(i0: 2, i1: 3, w0: 0.5, w1: 0.5))
    }

    @Test func poolBinsFollowPyTorch() {
        // ../shared/spec/upernet-segmentation.md section 3.
        #expect((0..<6).map { AdaptivePoolSpec.bin($0, inSize: 16, outSize: 6) } == [0..<3, 2..<6, 5..<8, 8..<11, 10..<14, 13..<16])
        #expect((0..<6).map { AdaptivePoolSpec.bin($0, inSize: 22, outSize: 6) } == [0..<4, 3..<8, 7..<11, 11..<15, 14..<19, 18..<22])
        #expect((0..<6).map { AdaptivePoolSpec.bin($0, inSize: 2, outSize: 6) } == [0..<1, 0..<1, 0..<1, 1..<2, 1..<2, 1..<2])
    }
}
