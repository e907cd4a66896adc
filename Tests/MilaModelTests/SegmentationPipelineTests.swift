import Foundation
import MilaCore
import MilaImage
@testable import MilaModel
import MilaOpenCL
import MilaWeights
import Testing

/// A real photograph (scikit-learn's china.jpg, CC BY 2.0) and an EXIF-rotated crop of it through
/// mmseg's test pipeline, against the reference pipeline of Tests/PyTorchReference/upernet.py
/// (cv2.imdecode, mmcv.imrescale, mmcv.imnormalize, the tiny model, two resizes, argmax).
@Suite("Segmentation pipeline on a photo") struct SegmentationPipelineTests {
    typealias F = SegmentationFixtures

    static var photos: [[String: Any]] { F.manifest["photos"] as! [[String: Any]] }

    static func preprocess() -> SegmentationPreprocess {
        let p = F.manifest["preprocessing"] as! [String: Any]
        return SegmentationPreprocess(scale: p["scale"] as! [Int], mean: (p["mean"] as! [Double]).map(Float.init),
                                      std: (p["std"] as! [Double]).map(Float.init))
    }

    @Test func keepRatioSizesAreMmcvs() {
        // ../shared/spec/upernet-segmentation.md section 1.3.
        let p = SegmentationPreprocess(scale: [2048, 512], mean: [0, 0, 0], std: [1, 1, 1])
        let cases: [((Int, Int), (Int, Int))] = [((512, 683), (512, 683)), ((375, 500), (512, 683)), ((500, 375), (683, 512)),
                                                 ((256, 256), (512, 512)), ((1024, 1536), (512, 768)), ((333, 2500), (273, 2048)),
                                                 ((2000, 100), (2048, 102))]
        for (input, expected) in cases {
            let got = p.targetSize(height: input.0, width: input.1)
            #expect(got.height == expected.0 && got.width == expected.1, "\(input) -> \(got), expected \(expected)")
        }
    }

    @Test func resizeAndInputTensorEqualTheReferencePipelineExactly() throws {
        let photo = Self.photos.first { $0["file"] as? String == "photo.jpg" }!
        let image = try ImageDecoder.decode(F.path("photo.jpg"))
        #expect([image.height, image.width] == photo["decoded_size"] as! [Int])
        let (tensor, resized) = try Self.preprocess().tensor(image)
        #expect(tensor.shape == photo["preprocessed_shape"] as! [Int])
        // The cv2-resized image, as the reference stored it (RGB, h x w x 3 uint8).
        let expected = try NPY.read(F.path("photo.resized.npy"))
        #expect(expected.shape == [resized.height, resized.width, 3])
        let differing = zip(resized.pixels, expected.data).filter { Float($0) != $1 }.count
        #expect(differing == 0, "\(differing) of \(resized.pixels.count) resized bytes differ from cv2's")
        // The float32 tensor, byte for byte.
        let bytes = tensor.data.withUnsafeBufferPointer { Data(buffer: $0) }
        #expect(SHA256.hex(bytes) == photo["preprocessed_sha256"] as! String)
        #expect(Array(tensor.data.prefix(8)) == (photo["preprocessed_first8"] as! [Double]).map(Float.init))
    }

    @Test(arguments: ["photo.jpg", "photo_exif6.jpg"])
    func labelsAgreeWithTheReferencePipeline(_ file: String) throws {
        let photo = Self.photos.first { $0["file"] as? String == file }!
        let (config, weights) = try F.model.get()
        let image = try ImageDecoder.decode(F.path(file))
        let (tensor, _) = try Self.preprocess().tensor(image)
        let graph = try ModelGraph.build(config: config, weightShapes: weights.mapValues(\.shape), batch: 1,
                                         height: tensor.shape[2], width: tensor.shape[3],
                                         segmentation: .labels(height: image.height, width: image.width))
        let backend = CLBackend(context: try CLContext(selector: nil), weights: weights)
        let labels = try #require(try backend.run(graph, input: try Layout.channelsLast(tensor), keep: [])[graph.outputs["labels"]!])
        let expected = try NPY.read(F.path(photo["labels"] as! String))
        #expect(expected.shape == photo["labels_shape"] as! [Int] && expected.shape == [image.height, image.width])
        let agree = zip(labels.data, expected.data).filter { $0 == $1 }.count
        #expect(Double(agree) / Double(expected.count) >= 0.999, "\(file): \(expected.count - agree) of \(expected.count) labels differ")
    }
}

/// SHA-256 (FIPS 180-4), for comparing tensors with the digests the fixture scripts record.
enum SHA256 {
    static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
        0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
        0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
        0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
        0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
        0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    static func hex(_ data: Data) -> String {
        var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
        var message = [UInt8](data)
        let bitLength = UInt64(message.count) * 8
        message.append(0x80)
        while message.count % 64 != 56 { message.append(0) }
        for i in (0..<8).reversed() { message.append(UInt8(truncatingIfNeeded: bitLength >> (UInt64(i) * 8))) }
        func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
        var w = [UInt32](repeating: 0, count: 64)
        for block in stride(from: 0, to: message.count, by: 64) {
            for t in 0..<16 {
                let b = block + t * 4
                w[t] = UInt32(message[b]) << 24 | UInt32(message[b + 1]) << 16 | UInt32(message[b + 2]) << 8 | UInt32(message[b + 3])
            }
            for t in 16..<64 {
                let s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
                let s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
                w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
            }
            var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
            for t in 0..<64 {
                let t1 = hh &+ (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) &+ ((e & f) ^ (~e & g)) &+ k[t] &+ w[t]
                let t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) &+ ((a & b) ^ (a & c) ^ (b & c))
                (hh, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
            }
            for (i, v) in [a, b, c, d, e, f, g, hh].enumerated() { h[i] = h[i] &+ v }
        }
        return h.map { String(format: "%08x", $0) }.joined()
    }
}
