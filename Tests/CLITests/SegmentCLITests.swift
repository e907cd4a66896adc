import Foundation
import MilaCore
import MilaImage
import MilaWeights
import Testing

/// `segment`, `run`, `check` and `bench` with the tiny mmcv-style UperNet checkpoint and the
/// photo of Tests/MilaModelTests/Fixtures/segmentation (see SegmentationGoldenTests).
@Suite("mila-infer segment", .serialized) struct SegmentCLITests {
    static func seg(_ name: String) -> String { CLI.fixture("MilaModelTests/Fixtures/segmentation/\(name)") }
    let model = Self.seg("tiny_upernet.pth")
    static let manifest: [String: Any] = {
        let data = try! Data(contentsOf: URL(fileURLWithPath: seg("manifest.json")))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()

    @Test func segmentWritesPaletteMasksOverlaysAndJSON() throws {
        let out = try CLI.temporaryFolder(), inputs = try CLI.temporaryFolder()
        let result = try CLI.run(["segment", Self.seg("photo.jpg"), "--model", model, "--out", out.path, "--overlay", "--json",
                                  "--save-input", inputs.path])
        #expect(result.status == 0, "\(result.err)")
        let line = try #require(result.out.split(separator: "\n").first)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["image"] as? String == Self.seg("photo.jpg"))
        #expect(object["size"] as? [Int] == [427, 640])
        let maskPath = out.appendingPathComponent("photo.png").path
        #expect(object["mask"] as? String == maskPath)
        let classes = try #require(object["classes"] as? [[String: Any]])
        let shares = classes.compactMap { $0["share"] as? Double }
        #expect(!classes.isEmpty && shares.allSatisfy { $0 >= 0.01 } && shares.reduce(0, +) <= 1 + 1e-9 && shares == shares.sorted(by: >))
        // The mask: a palette PNG at the image's size whose colours are the labels' palette entries.
        let palette = (Self.manifest["config"] as! [String: Any])["palette"] as! [[Int]]
        let mask = try ImageDecoder.decode(maskPath)
        #expect(mask.width == 640 && mask.height == 427)
        let expected = try NPY.read(Self.seg("photo.labels.npy"))
        var agree = 0
        for p in 0..<expected.count {
            let colour = palette[Int(expected.data[p])]
            if (0..<3).allSatisfy({ Int(mask.pixels[p * 3 + $0]) == colour[$0] }) { agree += 1 }
        }
        #expect(Double(agree) / Double(expected.count) >= 0.999, "\(expected.count - agree) mask pixels differ from the reference labels")
        #expect(Data(try Data(contentsOf: URL(fileURLWithPath: maskPath)).prefix(8)) == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))
        let overlay = try ImageDecoder.decode(out.appendingPathComponent("photo.overlay.png").path)
        #expect(overlay.width == 640 && overlay.height == 427)
        // --save-input: the reference pipeline's tensor.
        let saved = try NPY.read(inputs.appendingPathComponent("photo.jpg.npy").path)
        let photo = (Self.manifest["photos"] as! [[String: Any]])[0]
        #expect(saved.shape == photo["preprocessed_shape"] as! [Int])
        #expect(Array(saved.data.prefix(8)) == (photo["preprocessed_first8"] as! [Double]).map(Float.init))
    }

    @Test func segmentPrintsClassesAndSkipsABadFile() throws {
        let out = try CLI.temporaryFolder()
        let result = try CLI.run(["segment", CLI.fixture("CLITests/CLITests.swift"), Self.seg("photo_exif6.jpg"), "--model", model,
                                  "--out", out.path])
        #expect(result.status == 1)
        #expect(result.err.contains("CLITests.swift"))
        #expect(result.out.contains("photo_exif6.jpg (120x160)"), "\(result.out)")
        #expect(result.out.contains("%"))
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("photo_exif6.png").path))
    }

    @Test func segmentRefusesAClassifierAndABadScale() throws {
        let classifier = try CLI.run(["segment", Self.seg("photo.jpg"), "--model", CLI.fixture("MilaModelTests/Fixtures/tiny/weights.safetensors")])
        #expect(classifier.status != 0 && classifier.err.contains("not a segmentation model"))
        let scale = try CLI.run(["segment", Self.seg("photo.jpg"), "--model", model, "--scale", "big"])
        #expect(scale.status != 0 && scale.err.contains("--scale"))
    }

    @Test func runWritesHeadAndFullSizeLogits() throws {
        let folder = try CLI.temporaryFolder()
        let head = folder.appendingPathComponent("head.npy").path, full = folder.appendingPathComponent("full.npy").path
        let input = Self.seg("seg_41x29.input.npy")
        let a = try CLI.run(["run", "--model", model, "--input", input, "--output", head])
        #expect(a.status == 0, "\(a.err)")
        let gotHead = try NPY.read(head), expectedHead = try NPY.read(Self.seg("seg_41x29.head.npy"))
        #expect(gotHead.shape == [1, 7, 11, 8] && gotHead.relativeL2(to: expectedHead) <= 1e-5)
        let b = try CLI.run(["run", "--model", model, "--input", input, "--output", full, "--output-size", "41x29"])
        #expect(b.status == 0, "\(b.err)")
        let gotFull = try NPY.read(full), expectedFull = try NPY.read(Self.seg("seg_41x29.full.npy"))
        #expect(gotFull.shape == [1, 7, 41, 29] && gotFull.relativeL2(to: expectedFull) <= 1e-5)
        let wrong = try CLI.run(["run", "--model", CLI.fixture("MilaModelTests/Fixtures/tiny/weights.safetensors"), "--input", input,
                                 "--output-size", "4x4"])
        #expect(wrong.status != 0 && wrong.err.contains("--output-size is for segmentation models"))
    }

    @Test func checkAndBenchRunSegmentationModels() throws {
        let check = try CLI.run(["check", "--model", model, "--size", "41x29"])
        #expect(check.status == 0, "\(check.out)\(check.err)")
        #expect(check.out.contains("resize_bilinear") && check.out.contains("adaptive_avg_pool") && check.out.contains("concat"))
        let bench = try CLI.run(["bench", "--model", model, "--resolutions", "64x96", "--runs", "1", "--warmup", "0", "--format", "csv"])
        #expect(bench.status == 0, "\(bench.err)")
        #expect(bench.out.contains("64"))
    }
}
