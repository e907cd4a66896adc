import Foundation
import MilaImage
import Testing

@Suite("PNG encoding") struct EncoderTests {
    /// Encode then decode gives back every byte (odd sizes, all byte values).
    @Test(arguments: [(1, 1), (7, 3), (64, 64), (33, 17)])
    func roundTrip(_ size: (width: Int, height: Int)) throws {
        var state: UInt32 = 12345
        let pixels = (0..<(size.width * size.height * 3)).map { _ -> UInt8 in
            state = state &* 1_664_525 &+ 1_013_904_223
            return UInt8(truncatingIfNeeded: state >> 24)
        }
        let image = RGBImage(width: size.width, height: size.height, pixels: pixels)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mila-png-\(UUID().uuidString).png").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try ImageEncoder.writePNG(image, to: path)
        #expect(try ImageDecoder.decode(path) == image)
    }

    @Test func unwritablePathIsNamed() throws {
        let image = RGBImage(width: 1, height: 1, pixels: [0, 0, 0])
        #expect(throws: ImageError.self) { try ImageEncoder.writePNG(image, to: "/nonexistent-folder/x.png") }
    }
}
