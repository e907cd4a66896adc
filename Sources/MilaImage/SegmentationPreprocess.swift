import MilaCore

/// mmseg's ADE20K test pipeline (../shared/spec/upernet-segmentation.md section 1): keep-ratio
/// resize to (long, short) = `scale` with OpenCV's uint8 bilinear arithmetic, then
/// (x - mean) / std per RGB channel in float32 on the 0..255 scale, no padding.
public struct SegmentationPreprocess: Sendable {
    public let scale: [Int]
    public let mean: [Float]
    public let std: [Float]

    public init(scale: [Int], mean: [Float], std: [Float]) {
        precondition(scale.count == 2 && mean.count == 3 && std.count == 3)
        (self.scale, self.mean, self.std) = (scale, mean, std)
    }

    /// mmcv.imrescale's size: s = min(long / max(H, W), short / min(H, W)) in float64, then
    /// int(H * s + 0.5) by int(W * s + 0.5) (at least 1).
    public func targetSize(height: Int, width: Int) -> (height: Int, width: Int) {
        let long = Double(max(scale[0], scale[1])), short = Double(min(scale[0], scale[1]))
        let s = min(long / Double(max(height, width)), short / Double(min(height, width)))
        return (max(1, Int(Double(height) * s + 0.5)), max(1, Int(Double(width) * s + 0.5)))
    }

    /// The network input (1, 3, h, w) for an upright RGB image, and the resized image itself.
    public func tensor(_ image: RGBImage) throws -> (tensor: Tensor, resized: RGBImage) {
        let (h, w) = targetSize(height: image.height, width: image.width)
        let resized = OpenCVResize.bilinear(image, width: w, height: h)
        var data = [Float](repeating: 0, count: 3 * h * w)
        for c in 0..<3 {
            let (m, s) = (mean[c], std[c])
            for p in 0..<(h * w) { data[c * h * w + p] = (Float(resized.pixels[p * 3 + c]) - m) / s }
        }
        return (try Tensor(shape: [1, 3, h, w], data: data), resized)
    }
}

/// cv2.resize(INTER_LINEAR) on 8-bit images, bit for bit (opencv-python 4.10 on x86-64; spec
/// section 1.3): 11-bit fixed-point weights, a horizontal pass to int32 and OpenCV's SIMD
/// vertical pass. No antialiasing when shrinking. The same size is a copy.
public enum OpenCVResize {
    static let coefficientScale: Float = 2048

    /// Source index pair and fixed-point weights for each output coordinate. Columns zero the
    /// fraction at the borders; rows keep it and only clamp their indices.
    static func taps(input: Int, output: Int, columns: Bool) -> [(i0: Int, i1: Int, w0: Int32, w1: Int32)] {
        let ratio = Double(input) / Double(output)
        return (0..<output).map { d in
            let f = Float((Double(d) + 0.5) * ratio - 0.5)
            var i0 = Int(f.rounded(.down))
            var fraction = f - Float(i0)
            if columns {
                if i0 < 0 { (i0, fraction) = (0, 0) }
                if i0 >= input - 1 { (i0, fraction) = (input - 1, 0) }
            }
            let w0 = Int32(((1 - fraction) * coefficientScale).rounded(.toNearestOrEven))
            let w1 = Int32((fraction * coefficientScale).rounded(.toNearestOrEven))
            let a = min(max(i0, 0), input - 1), b = min(max(i0 + 1, 0), input - 1)
            return (a, b, w0, w1)
        }
    }

    public static func bilinear(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
        if width == image.width && height == image.height { return image }
        let cols = taps(input: image.width, output: width, columns: true)
        let rows = taps(input: image.height, output: height, columns: false)
        let src = image.pixels, inW = image.width
        // The horizontal pass of every source row a destination row needs, cached by row.
        var horizontal: [Int: [Int32]] = [:]
        func pass(_ y: Int) -> [Int32] {
            if let done = horizontal[y] { return done }
            var r = [Int32](repeating: 0, count: width * 3)
            let base = y * inW * 3
            for (x, t) in cols.enumerated() {
                for c in 0..<3 {
                    r[x * 3 + c] = Int32(src[base + t.i0 * 3 + c]) * t.w0 + Int32(src[base + t.i1 * 3 + c]) * t.w1
                }
            }
            if horizontal.count > 4 { horizontal.removeAll(keepingCapacity: true) }
            horizontal[y] = r
            return r
        }
        var out = [UInt8](repeating: 0, count: width * height * 3)
        for (y, t) in rows.enumerated() {
            let r0 = pass(t.i0), r1 = pass(t.i1)
            for i in 0..<(width * 3) {
                let v = ((((r0[i] >> 4) &* t.w0) >> 16) &+ (((r1[i] >> 4) &* t.w1) >> 16) &+ 2) >> 2
                out[y * width * 3 + i] = UInt8(clamping: v)
            }
        }
        return RGBImage(width: width, height: height, pixels: out)
    }
}
