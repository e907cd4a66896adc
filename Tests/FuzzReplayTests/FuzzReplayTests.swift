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

    /// CPU seconds the calling thread has run.
    static func threadCPUSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }

    @Test(arguments: FuzzTargets.names)
    func corpusAndRegressionsRunClean(_ target: String) throws {
        let corpus = Self.files("corpus", target), regressions = Self.files("regressions", target)
        #expect(corpus.count >= 5, "Tests/Fuzz/corpus/\(target) holds \(corpus.count) inputs")
        let run = try #require(FuzzTargets.all[target])
        let start = Date()
        for file in corpus + regressions {
            let data = try Data(contentsOf: file)
            let began = Self.threadCPUSeconds()
            run(data)
            // A regression of a hang: no single input may spin long (the fuzzer's timeout was 10 s).
            // The thread's CPU time, not wall time: other suites share the runner's two cores.
            let spent = Self.threadCPUSeconds() - began
            #expect(spent < 10, "\(file.lastPathComponent) took \(spent) s of CPU")
        }
        print("\(target): \(corpus.count) corpus and \(regressions.count) regression inputs in \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
    }
}
