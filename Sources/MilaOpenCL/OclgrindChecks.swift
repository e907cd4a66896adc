import Foundation

/// Oclgrind's checks around a piece of work: its API checks (`OCLGRIND_CHECK_API`) and data-race
/// detector (`OCLGRIND_DATA_RACES`) on, its messages (out-of-bounds accesses, races, barrier
/// divergence, API misuse) written to a fresh log file, which is read back as the diagnostics.
///
/// Oclgrind reads these variables when an OpenCL context is created on it, so the work must
/// create its own contexts (`CLContext(device:)`, an `Engine`) inside `body` and release them
/// before it returns. One piece of work at a time, process-wide (a lock): the log is per run.
/// Setting the variables replaces their values in the environment; after the first run they
/// exist, so later runs only swap pointers, which readers on other threads see whole.
public enum OclgrindChecks {
    public struct Report: Sendable {
        /// Everything Oclgrind wrote to its log during the work; empty when it found nothing.
        public let diagnostics: String
        public var isClean: Bool { diagnostics.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty }
    }

    private static let lock = NSLock()

    /// Runs `body` with the checks on and returns its result with what Oclgrind reported.
    public static func run<T>(_ body: () throws -> T) throws -> (value: T, report: Report) {
        lock.lock()
        defer { lock.unlock() }
        let log = FileManager.default.temporaryDirectory
            .appendingPathComponent("mila-oclgrind-\(getpid())-\(UUID().uuidString).log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: log) }
        setenv("OCLGRIND_CHECK_API", "1", 1)
        setenv("OCLGRIND_DATA_RACES", "1", 1)
        setenv("OCLGRIND_LOG", log.path, 1)
        let value = try body()
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        return (value, Report(diagnostics: text))
    }
}
