import Foundation
import MilaFuzzTargets
import Testing

/// Replays the committed fuzz corpora (Tests/Fuzz/corpus/<target>) and every input a fuzzer ever
/// found a crash, hang or sanitizer report with (Tests/Fuzz/regressions/<target>) through the
/// same targets libFuzzer runs, in the ordinary build: an input that brings a fixed bug back
/// crashes this test process. Tests/Fuzz/README.md says how the corpora were made.
@Suite("Fuzz corpus replay") struct FuzzReplayTests {
    static let fuzzFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz")

    static func files(_ kind: String, _ target: String) -> [URL] {
        let folder = fuzzFolder.appendingPathComponent(kind).appendingPathComponent(target)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted().map { folder.appendingPathComponent($0) }
    }

    @Test(arguments: FuzzTargets.names)
    func corpusAndRegressionsRunClean(_ target: String) throws {
        let corpus = Self.files("corpus", target), regressions = Self.files("regressions", target)
        #expect(corpus.count >= 5, "Tests/Fuzz/corpus/\(target) holds \(corpus.count) inputs")
        let run = try #require(FuzzTargets.all[target])
        let start = Date()
        for file in corpus + regressions {
            let began = Date()
            run(try Data(contentsOf: file))
            // A regression of a hang: no single input may take long (the fuzzer's timeout was 10 s).
            #expect(Date().timeIntervalSince(began) < 10, "\(file.lastPathComponent) took \(Date().timeIntervalSince(began)) s")
        }
        print("\(target): \(corpus.count) corpus and \(regressions.count) regression inputs in \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
    }
}
