import MilaCore

/// The dense-prediction head's ops, the obvious way: float32 index maths from MilaCore's
/// `Bilinear` / `AdaptivePoolSpec` rules (as PyTorch computes them), values in Float64.
extension Reference {
    /// Bilinear resize, align_corners=False, of a (B, H, W, C) map to (height, width).
    public static func resizeBilinear(_ x: Tensor, height: Int, width: Int) throws -> Tensor {
        let spec = try ResizeSpec(input: x.shape, height: height, width: width)
        let (hi, wi, c) = (spec.inHeight, spec.inWidth, spec.channels)
        let rows = (0..<height).map { Bilinear.tap($0, inSize: hi, outSize: height) }
        let cols = (0..<width).map { Bilinear.tap($0, inSize: wi, outSize: width) }
        var y = try Tensor(zeros: spec.outputShape)
        for b in 0..<spec.batch {
            for oy in 0..<height {
                let r = rows[oy]
                for ox in 0..<width {
                    let q = cols[ox]
                    for ch in 0..<c {
                        func at(_ iy: Int, _ ix: Int) -> Double { Double(x.data[((b * hi + iy) * wi + ix) * c + ch]) }
                        let top = Double(q.w0) * at(r.i0, q.i0) + Double(q.w1) * at(r.i0, q.i1)
                        let bottom = Double(q.w0) * at(r.i1, q.i0) + Double(q.w1) * at(r.i1, q.i1)
                        y.data[((b * height + oy) * width + ox) * c + ch] = Float(Double(r.w0) * top + Double(r.w1) * bottom)
                    }
                }
            }
        }
        return y
    }

    /// Adaptive average pooling of a (B, H, W, C) map to (size, size), PyTorch's bins.
    public static func adaptiveAvgPool(_ x: Tensor, size: Int) throws -> Tensor {
        let spec = try AdaptivePoolSpec(input: x.shape, size: size)
        let (h, w, c) = (spec.inHeight, spec.inWidth, spec.channels)
        var y = try Tensor(zeros: spec.outputShape)
        for b in 0..<spec.batch {
            for oy in 0..<size {
                let rows = AdaptivePoolSpec.bin(oy, inSize: h, outSize: size)
                for ox in 0..<size {
                    let cols = AdaptivePoolSpec.bin(ox, inSize: w, outSize: size)
                    for ch in 0..<c {
                        var sum = 0.0
                        for iy in rows { for ix in cols { sum += Double(x.data[((b * h + iy) * w + ix) * c + ch]) } }
                        y.data[((b * size + oy) * size + ox) * c + ch] = Float(sum / Double(rows.count * cols.count))
                    }
                }
            }
        }
        return y
    }

    /// Channel concatenation of (B, H, W, C_i) maps, in order.
    public static func concat(_ inputs: [Tensor]) throws -> Tensor {
        let spec = try ConcatSpec(inputs: inputs.map(\.shape))
        let total = spec.outputShape[3]
        let pixels = Shape.count(Array(spec.outputShape.prefix(3)))
        var y = try Tensor(zeros: spec.outputShape)
        for (input, offset) in zip(inputs, spec.offsets) {
            let c = input.shape[3]
            for p in 0..<pixels { for ch in 0..<c { y.data[p * total + offset + ch] = input.data[p * c + ch] } }
        }
        return y
    }

    /// Logits (B, Hs, Ws, K) resized to (midHeight, midWidth), then to (height, width), then the
    /// first maximal class per pixel: (B, height, width, 1) class indices. Materialises both
    /// resizes (what the fused kernel avoids).
    public static func resizeArgmax(_ logits: Tensor, midHeight: Int, midWidth: Int, height: Int, width: Int) throws -> Tensor {
        let spec = try ResizeArgmaxSpec(input: logits.shape, midHeight: midHeight, midWidth: midWidth, height: height, width: width)
        let full = try resizeBilinear(try resizeBilinear(logits, height: midHeight, width: midWidth), height: height, width: width)
        return try argmaxChannels(full, classes: spec.classes)
    }

    /// The first maximal channel of each pixel of a (B, H, W, K) map, as (B, H, W, 1).
    public static func argmaxChannels(_ x: Tensor, classes: Int) throws -> Tensor {
        let pixels = x.count / classes
        var y = try Tensor(zeros: Array(x.shape.dropLast()) + [1])
        for p in 0..<pixels {
            var best = 0
            for k in 1..<max(classes, 1) where x.data[p * classes + k] > x.data[p * classes + best] { best = k }
            y.data[p] = Float(best)
        }
        return y
    }
}
