import Foundation
import MilaCore
import MilaWeights
import MilaOpenCL
import Testing

/// Runs the built `mila-infer` as a user would.
enum CLI {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let binary: URL = {
        let folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [folder, folder.deletingLastPathComponent(), folder.deletingLastPathComponent().deletingLastPathComponent()]
        return candidates.map { $0.appendingPathComponent("mila-infer") }.first { FileManager.default.isExecutableFile(atPath: $0.path) }
            ?? root.appendingPathComponent(".build/debug/mila-infer")
    }()
    static func fixture(_ path: String) -> String { root.appendingPathComponent("Tests").appendingPathComponent(path).path }

    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, out: String, err: String) {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
    }

    static func temporaryFolder() throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mila-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }
}

@Suite("mila-infer", .serialized) struct CLITests {
    let tiny = CLI.fixture("MilaModelTests/Fixtures/tiny/weights.safetensors")

    @Test func runWritesLogitsAndFeaturesMatchingPyTorch() throws {
        let folder = try CLI.temporaryFolder()
        let logits = folder.appendingPathComponent("logits.npy").path
        let result = try CLI.run(["run", "--model", tiny, "--input", CLI.fixture("MilaModelTests/Fixtures/tiny/input.npy"),
                                  "--output", logits, "--features", folder.path])
        #expect(result.status == 0, "\(result.err)")
        let expected = try NPY.read(CLI.fixture("MilaModelTests/Fixtures/tiny/logits.npy"))
        let actual = try NPY.read(logits)
        #expect(actual.shape == expected.shape)
        let error = zip(actual.data, expected.data).map { abs($0 - $1) }.max() ?? 1
        #expect(error < 1e-5)
        let stage3 = try NPY.read(folder.appendingPathComponent("stage3.npy").path)
        #expect(stage3.shape == [2, 128, 4, 5])
    }

    @Test func classifyReportsABadFileAndGoesOn() throws {
        let image = CLI.fixture("MilaImageTests/Fixtures/china.jpg")
        let notAnImage = CLI.fixture("CLITests/CLITests.swift")
        let result = try CLI.run(["classify", image, notAnImage, CLI.fixture("MilaImageTests/Fixtures/flower.png"),
                                  "--model", tiny, "--top", "3", "--json"])
        #expect(result.status == 1)
        #expect(result.err.contains("\(notAnImage): not a JPEG or PNG image"))
        let lines = result.out.split(separator: "\n")
        #expect(lines.count == 2)
        let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any]
        #expect(first?["image"] as? String == image)
        #expect((first?["top"] as? [[String: Any]])?.count == 3)
    }

    @Test func classifyRefusesAnImageOverThePixelLimit() throws {
        let flower = CLI.fixture("MilaImageTests/Fixtures/flower.png")
        let result = try CLI.run(["classify", flower, "--model", tiny, "--max-pixels", "1000"])
        #expect(result.status == 1)
        #expect(result.err.split(separator: "\n").count == 1, "\(result.err)")
        #expect(result.err.contains("\(flower): ") && result.err.contains("pixels is over the limit of 1000 pixels (--max-pixels)"), "\(result.err)")
    }

    /// A legacy-format training checkpoint (its yacs config inside) runs with no --arch and gives
    /// PyTorch's logits; a state-dict key that is not there is one line naming what is.
    @Test func runLoadsALegacyTrainingCheckpoint() throws {
        let folder = try CLI.temporaryFolder()
        let fixtures = "MilaModelTests/Fixtures/checkpoints/"
        let logits = folder.appendingPathComponent("logits.npy").path
        let arguments = ["run", "--model", CLI.fixture(fixtures + "legacy_training.pth"), "--input", CLI.fixture(fixtures + "input.npy"),
                         "--output", logits]
        let result = try CLI.run(arguments)
        #expect(result.status == 0, "\(result.err)")
        let expected = try NPY.read(CLI.fixture(fixtures + "logits.npy"))
        #expect(try NPY.read(logits).relativeL2(to: expected) <= 1e-5)
        let missing = try CLI.run(arguments + ["--state-dict", "model_ema"])
        #expect(missing.status == 1)
        #expect(missing.err.split(separator: "\n").count == 1, "\(missing.err)")
        #expect(missing.err.contains("no state dict under key 'model_ema' (there is no such entry); entries holding tensors: model;"), "\(missing.err)")
    }

    @Test func classifySavesTheNetworkInput() throws {
        let folder = try CLI.temporaryFolder()
        let result = try CLI.run(["classify", CLI.fixture("MilaImageTests/Fixtures/china.jpg"), "--model", tiny,
                                  "--size", "64x96", "--save-input", folder.path])
        #expect(result.status == 0, "\(result.err)")
        let saved = try NPY.read(folder.appendingPathComponent("china.jpg.npy").path)
        #expect(saved.shape == [1, 3, 64, 96])
    }

    @Test func checkComparesBothBackends() throws {
        let result = try CLI.run(["check", "--model", tiny, "--size", "37x53"])
        #expect(result.status == 0, "\(result.err)")
        #expect(result.out.contains("logits relative L2"))
        #expect(result.out.contains("layers.3.blocks.0.attn"))
    }

    @Test func forgetGatedModelRunsThroughEveryCommand() throws {
        let fg = CLI.fixture("MilaModelTests/Fixtures/tiny/fg_bidirectional.safetensors")
        let check = try CLI.run(["check", "--model", fg, "--size", "29x41"])
        #expect(check.status == 0, "\(check.err)")
        #expect(check.out.contains("forget_gate_attention"))
        let classify = try CLI.run(["classify", CLI.fixture("MilaImageTests/Fixtures/flower.png"), "--model", fg, "--json"])
        #expect(classify.status == 0, "\(classify.err)")
        let folder = try CLI.temporaryFolder()
        let run = try CLI.run(["run", "--model", fg, "--input", CLI.fixture("MilaModelTests/Fixtures/tiny/input.npy"),
                               "--output", folder.appendingPathComponent("l.npy").path])
        #expect(run.status == 0, "\(run.err)")
        let expected = try NPY.read(CLI.fixture("MilaModelTests/Fixtures/tiny/fg_bidirectional_logits.npy"))
        let actual = try NPY.read(folder.appendingPathComponent("l.npy").path)
        #expect((zip(actual.data, expected.data).map { abs($0 - $1) }.max() ?? 1) < 1e-5)
    }

    @Test func badArgumentsAreOneLineErrors() throws {
        let missing = try CLI.run(["run", "--model", "/nonexistent/model.pth", "--input", "x.npy"])
        #expect(missing.status == 1)
        #expect(missing.err.contains("/nonexistent/model.pth: no such file, and no embedded model of that name"))
        #expect(missing.err.split(separator: "\n").count == 1)
        let noModel = try CLI.run(["eval", CLI.fixture("MilaImageTests/Fixtures")])
        #expect(noModel.status != 0)
        #expect(noModel.err.contains("--model"))
        let badSize = try CLI.run(["check", "--model", tiny, "--size", "big"])
        #expect(badSize.status != 0)
        #expect(badSize.err.contains("--size"))
    }

    /// `devices` marks the device the engine would use ($MILA_DEVICE, else the default), never the
    /// simulator unless named (Oclgrind is listed, as "GPU, simulator", where installed).
    @Test func devicesMarksTheDefaultDevice() throws {
        let result = try CLI.run(["devices"])
        #expect(result.status == 0)
        let chosen = try CLDiscovery.select(nil, from: try CLDiscovery.platforms())  // the default, or $MILA_DEVICE
        #expect(result.out.contains("* \(chosen.selector)  \(chosen.name)"), "\(result.out)")
        let marked = result.out.split(separator: "\n").filter { $0.hasPrefix("  * ") }
        #expect(marked.count == 1 && !marked[0].contains("simulator"), "\(result.out)")
        if oclgrindPresent { #expect(result.out.contains("Oclgrind Simulator  [GPU, simulator]"), "\(result.out)") }
    }
}

@Suite("--precision") struct PrecisionCLITests {
    /// A device without cl_khr_fp16 (PoCL here) refuses fp16 in one line naming it and the
    /// extension, exit status 1.
    @Test(.enabled(if: pocl16Absent, "no PoCL device without cl_khr_fp16 here"))
    func deviceWithoutTheExtensionRefuses() throws {
        let result = try CLI.run(["check", "--model", "digits", "--device", "pocl", "--precision", "fp16"])
        #expect(result.status == 1)
        let lines = result.err.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].contains("cl_khr_fp16") && lines[0].contains("Portable Computing Language"), "\(result.err)")
    }

    /// `check --precision fp16` passes against the reference with half-rounded weights and
    /// reports the agreement with fp32 per op and for the logits.
    @Test(.enabled(if: intelFP16Present, "Intel's OpenCL runtime (cl_khr_fp16) is not installed (bash .ci/setup)"))
    func checkReportsTheAgreementWithFP32() throws {
        let result = try CLI.run(["check", "--model", "digits", "--device", "intel", "--precision", "fp16"])
        #expect(result.status == 0, "\(result.err)")
        #expect(result.out.contains("vs fp32") && result.out.contains("logits against the fp32 reference: relative L2"), "\(result.out)")
        #expect(result.out.contains("top-1 the same for 1 of 1 image(s)") && result.out.contains("weights on the device (fp16)"))
    }

    @Test func rejectsAnUnknownPrecision() throws {
        let result = try CLI.run(["check", "--model", "digits", "--precision", "fp8"])
        #expect(result.status != 0 && result.err.contains("fp8"), "\(result.err)")
    }
}

let pocl16Absent = ((try? CLDiscovery.platforms()) ?? []).contains {
    $0.name.lowercased().contains("portable computing language") && $0.devices.contains { !$0.supportsFP16 }
}
