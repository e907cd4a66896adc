import MilaCore

/// The evaluation preprocessing of the reference pipeline (torchvision on PIL images): resize
/// so the image covers (H, W) / cropFraction keeping its aspect ratio (for a square R, the
/// shorter side becomes int(R / cropFraction)), PIL bicubic, center crop (H, W), scale to
/// [0, 1], normalise per channel. `crop: false` resizes the whole image to (H, W).
public struct Preprocess: Sendable {
    public var height: Int
    public var width: Int
    public var cropFraction: Double
    public var mean: [Float]
    public var std: [Float]
    public var crop: Bool

    public init(height: Int, width: Int, cropFraction: Double = 0.875, mean: [Float] = [0.485, 0.456, 0.406],
                std: [Float] = [0.229, 0.224, 0.225], crop: Bool = true) {
        (self.height, self.width, self.cropFraction, self.mean, self.std, self.crop) = (height, width, cropFraction, mean, std, crop)
    }

    /// The resized, cropped 8-bit image the network sees.
    public func crop(_ image: RGBImage) -> RGBImage {
        guard crop else { return PILResize.bicubic(image, width: width, height: height) }
        // Target of the resize step: the short side exactly, the long side int(short * ratio),
        // as torchvision's Resize(int) computes it, generalised to a non-square (H, W).
        let targetH = Double(height) / cropFraction, targetW = Double(width) / cropFraction
        let (rw, rh): (Int, Int)
        if Double(image.width) / Double(image.height) >= targetW / targetH {
            rh = Int(targetH)
            rw = Int(Double(rh) * Double(image.width) / Double(image.height))
        } else {
            rw = Int(targetW)
            rh = Int(Double(rw) * Double(image.height) / Double(image.width))
        }
        let resized = PILResize.bicubic(image, width: max(rw, width), height: max(rh, height))
        // torchvision CenterCrop: top = int(round((h - th) / 2)), left likewise.
        let top = Int(((Double(resized.height - height)) / 2).rounded(.toNearestOrEven))
        let left = Int(((Double(resized.width - width)) / 2).rounded(.toNearestOrEven))
        var out = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            let src = ((top + y) * resized.width + left) * 3
            out.replaceSubrange((y * width * 3)..<((y + 1) * width * 3), with: resized.pixels[src..<(src + width * 3)])
        }
        return RGBImage(width: width, height: height, pixels: out)
    }

    /// (1, 3, H, W) float32, normalised.
    public func tensor(_ image: RGBImage) throws -> Tensor {
        let cropped = crop(image)
        var data = [Float](repeating: 0, count: 3 * height * width)
        for c in 0..<3 {
            for i in 0..<(height * width) {
                data[c * height * width + i] = (Float(cropped.pixels[i * 3 + c]) / 255 - mean[c]) / std[c]
            }
        }
        return try Tensor(shape: [1, 3, height, width], data: data)
    }
}
