import CImageCodecs
import Foundation
import MilaCore

/// An 8-bit RGB image, row-major, 3 bytes per pixel.
public struct RGBImage: Equatable, Sendable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * 3)
        (self.width, self.height, self.pixels) = (width, height, pixels)
    }
}

/// An image file that cannot be used: names the file and the problem.
public struct ImageError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let message: String
    public init(file: String, message: String) { (self.file, self.message) = (file, message) }
    public var description: String { "\(file): \(message)" }
}

public enum ImageDecoder {
    /// The default limit on an image's pixels (width x height), checked from the file's header
    /// before any pixel buffer is allocated: 100 megapixels.
    public static let defaultMaxPixels = 100_000_000

    /// Decodes a JPEG or PNG file (told apart by content) to RGB, turned upright by its EXIF
    /// orientation. An image of more than `maxPixels` pixels is refused before it is decoded.
    public static func decode(_ path: String, maxPixels: Int = defaultMaxPixels) throws -> RGBImage {
        let data: Data
        do { data = try mappedContents(ofFile: path) } catch {
            throw ImageError(file: path, message: "cannot read: \((error as NSError).localizedDescription)")
        }
        return try decode(data, name: path, maxPixels: maxPixels)
    }

    /// Decodes JPEG or PNG bytes already in memory; `name` stands for the file in errors.
    public static func decode(_ data: Data, name path: String, maxPixels: Int = defaultMaxPixels) throws -> RGBImage {
        let bytes = [UInt8](data.prefix(8))
        let limit = UInt64(max(0, maxPixels))
        var decoded: mila_image
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) {
            decoded = data.withUnsafeBytes { mila_decode_jpeg($0.bindMemory(to: UInt8.self).baseAddress, $0.count, limit) }
        } else if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) {
            decoded = data.withUnsafeBytes { mila_decode_png($0.bindMemory(to: UInt8.self).baseAddress, $0.count, limit) }
        } else {
            throw ImageError(file: path, message: data.isEmpty ? "empty file" : "not a JPEG or PNG image")
        }
        defer { mila_image_free(&decoded) }
        guard let pixels = decoded.pixels else {
            let message = withUnsafeBytes(of: decoded.error) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            throw ImageError(file: path, message: message)
        }
        let image = RGBImage(width: Int(decoded.width), height: Int(decoded.height),
                             pixels: Array(UnsafeBufferPointer(start: pixels, count: Int(decoded.width) * Int(decoded.height) * 3)))
        return oriented(image, exif: Int(decoded.orientation))
    }

    /// Applies EXIF orientation 2..8 (mirror and/or rotate) so the image is upright.
    public static func oriented(_ image: RGBImage, exif orientation: Int) -> RGBImage {
        guard (2...8).contains(orientation) else { return image }
        let (w, h) = (image.width, image.height)
        let swaps = orientation >= 5
        let (ow, oh) = swaps ? (h, w) : (w, h)
        var out = [UInt8](repeating: 0, count: image.pixels.count)
        for y in 0..<oh {
            for x in 0..<ow {
                // Source pixel for output (x, y), per the EXIF definitions (as PIL's exif_transpose).
                let (sx, sy): (Int, Int)
                switch orientation {
                case 2: (sx, sy) = (w - 1 - x, y)
                case 3: (sx, sy) = (w - 1 - x, h - 1 - y)
                case 4: (sx, sy) = (x, h - 1 - y)
                case 5: (sx, sy) = (y, x)
                case 6: (sx, sy) = (y, h - 1 - x)
                case 7: (sx, sy) = (w - 1 - y, h - 1 - x)
                default: (sx, sy) = (w - 1 - y, x)  // 8
                }
                let (o, i) = ((y * ow + x) * 3, (sy * w + sx) * 3)
                out[o] = image.pixels[i]; out[o + 1] = image.pixels[i + 1]; out[o + 2] = image.pixels[i + 2]
            }
        }
        return RGBImage(width: ow, height: oh, pixels: out)
    }
}

public enum ImageEncoder {
    /// The image as an 8-bit RGB PNG file's bytes.
    public static func png(_ image: RGBImage) throws -> Data {
        var encoded = image.pixels.withUnsafeBufferPointer { mila_encode_png($0.baseAddress, Int32(image.width), Int32(image.height)) }
        defer { mila_encoded_free(&encoded) }
        guard let bytes = encoded.bytes else {
            let message = withUnsafeBytes(of: encoded.error) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            throw ImageError(file: "<png>", message: message)
        }
        return Data(bytes: bytes, count: encoded.size)
    }

    /// A label map (row-major, `width` x `height` indices) as an 8-bit palette PNG: the pixel
    /// values are the class indices and `palette` (r, g, b per class, at most 256) colours them.
    public static func palettePNG(indices: [UInt8], width: Int, height: Int, palette: [[Int]]) throws -> Data {
        precondition(indices.count == width * height)
        let colours = palette.flatMap { $0.map { UInt8(clamping: $0) } }
        var encoded = indices.withUnsafeBufferPointer { p in
            colours.withUnsafeBufferPointer { c in mila_encode_png_palette(p.baseAddress, Int32(width), Int32(height), c.baseAddress, Int32(palette.count)) }
        }
        defer { mila_encoded_free(&encoded) }
        guard let bytes = encoded.bytes else {
            let message = withUnsafeBytes(of: encoded.error) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            throw ImageError(file: "<png>", message: message)
        }
        return Data(bytes: bytes, count: encoded.size)
    }

    /// Writes the image as a PNG file at `path`.
    public static func writePNG(_ image: RGBImage, to path: String) throws {
        let data = try png(image)
        do { try data.write(to: URL(fileURLWithPath: path)) } catch {
            throw ImageError(file: path, message: "cannot write: \((error as NSError).localizedDescription)")
        }
    }
}
