import Foundation
import MilaCore
@testable import MilaServe
import Testing

/// Records the batches a fake model runs: each image's "logit" is the first value of its input,
/// so every request can check that it got its own rows back.
final class BatchLog: @unchecked Sendable {
    private let lock = NSLock()
    private var sizes: [(BatchKey, Int)] = []
    func record(_ key: BatchKey, _ n: Int) { lock.lock(); sizes.append((key, n)); lock.unlock() }
    var batches: [(BatchKey, Int)] { lock.lock(); defer { lock.unlock() }; return sizes }
}

func image(_ value: Float, side: Int = 2, count: Int = 1) throws -> Tensor {
    try Tensor(shape: [count, 3, side, side], data: (0..<count).flatMap { i in [Float](repeating: value + Float(i), count: 3 * side * side) })
}

func key(_ side: Int) -> BatchKey { BatchKey(height: side, width: side, outHeight: side, outWidth: side) }

func echoBatcher(maxBatch: Int, delayMicroseconds: Int, maxQueue: Int = 64, timeout: Double = 3600, log: BatchLog,
                 hold: DispatchSemaphore? = nil) -> Batcher {
    Batcher(maxBatch: maxBatch, maxDelayMicroseconds: delayMicroseconds, maxQueue: maxQueue, timeoutSeconds: timeout) { key, input in
        log.record(key, input.shape[0])
        // Held until the test signals: the batch stays on the device however late the test's
        // other tasks get a thread (synchronous kernel tests can keep the cooperative pool busy for
        // seconds). The bound only keeps a broken test from hanging the run.
        _ = hold?.wait(timeout: .now() + 600)
        let per = input.data.count / input.shape[0]
        return .logits((0..<input.shape[0]).map { input.data[$0 * per] }, classes: 1)
    }
}

/// Polls `condition` every 5 ms; after `seconds` worth of polls records a failure and throws
/// instead of spinning forever. It counts polls, not wall time: while other suites' synchronous
/// tests hold the cooperative pool's threads (two on a 2-core runner, for minutes), this task and
/// the tasks it waits on are held alike, and a wall-clock deadline ran out with the awaited task
/// never run (CI at 38154a4: "gave up waiting 300.0 s for the first batch on the device").
func waitUntil(_ what: String, seconds: Double = 300, _ condition: () -> Bool) async throws {
    let pollMilliseconds = 5
    var polls = Int(seconds * 1000) / pollMilliseconds
    while !condition() {
        struct Timeout: Error, CustomStringConvertible { let description: String }
        guard polls > 0 else {
            Issue.record("gave up waiting for \(what) after \(Int(seconds * 1000) / pollMilliseconds) polls \(pollMilliseconds) ms apart")
            throw Timeout(description: "gave up waiting for \(what)")
        }
        polls -= 1
        try await Task.sleep(for: .milliseconds(pollMilliseconds))
    }
}

func logits(_ result: BatchResult) -> [Float] {
    if case let .logits(v, _) = result { return v }
    return []
}

@Suite("Batcher") struct BatcherTests {
    @Test func sameSizeRequestsShareABatchAndGetTheirOwnRows() async throws {
        let log = BatchLog()
        // A delay far longer than any test: only a full batch can run, and it must run at once.
        let batcher = echoBatcher(maxBatch: 4, delayMicroseconds: 600_000_000, log: log)
        batcher.start()
        let results = try await withThrowingTaskGroup(of: (Float, [Float]).self) { group in
            for v in [10, 20, 30] as [Float] { group.addTask { (v, logits(try await batcher.submit(key: key(2), input: try image(v)).0)) } }
            group.addTask { (40, logits(try await batcher.submit(key: key(2), input: try image(40, count: 1)).0)) }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        #expect(results == [10: [10], 20: [20], 30: [30], 40: [40]])
        #expect(log.batches.map(\.1) == [4], "one full batch of 4, no waiting for the delay: \(log.batches)")
        await batcher.shutdown()
    }

    @Test func differentSizesNeverMerge() async throws {
        let log = BatchLog()
        // Two of each size fill a batch of 2; the long delay means nothing runs before that.
        let batcher = echoBatcher(maxBatch: 2, delayMicroseconds: 600_000_000, log: log)
        batcher.start()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for side in [2, 3, 2, 3] { group.addTask { _ = try await batcher.submit(key: key(side), input: try image(1, side: side)) } }
            try await group.waitForAll()
        }
        #expect(log.batches.map(\.1).sorted() == [2, 2] && Set(log.batches.map(\.0)) == [key(2), key(3)], "\(log.batches)")
        await batcher.shutdown()
    }

    @Test func aLoneRequestWaitsForTheDelayThenRunsAlone() async throws {
        let log = BatchLog()
        let batcher = echoBatcher(maxBatch: 8, delayMicroseconds: 300_000, log: log)
        batcher.start()
        let start = Date()
        let (result, queued) = try await batcher.submit(key: key(2), input: try image(5, count: 3))
        #expect(logits(result) == [5, 6, 7])
        #expect(Date().timeIntervalSince(start) >= 0.29 && queued >= 290_000, "queued \(queued) us")
        #expect(log.batches.map(\.1) == [3])
        await batcher.shutdown()
    }

    @Test func aFullQueueAnswers503() async throws {
        let log = BatchLog(), hold = DispatchSemaphore(value: 0)
        let batcher = echoBatcher(maxBatch: 1, delayMicroseconds: 0, maxQueue: 2, log: log, hold: hold)
        batcher.start()
        let running = Task { try await batcher.submit(key: key(2), input: try image(1)) }
        try await waitUntil("the first batch on the device") { !log.batches.isEmpty }  // held there until the signals below
        let waiting = (0..<2).map { i in Task { try await batcher.submit(key: key(2), input: try image(Float(2 + i))) } }
        try await waitUntil("two queued requests") { batcher.pending == 2 }
        await #expect(throws: InferenceError(.unavailable, "Exceeds maximum queue size (2 requests waiting, --max-queue)")) {
            try await batcher.submit(key: key(2), input: try image(9))
        }
        for _ in 0..<3 { hold.signal() }
        #expect(logits(try await running.value.0) == [1])
        for (i, t) in waiting.enumerated() { #expect(logits(try await t.value.0) == [Float(2 + i)]) }
        await batcher.shutdown()
    }

    @Test func aRequestPastItsTimeoutFailsWithoutRunning() async throws {
        let log = BatchLog(), hold = DispatchSemaphore(value: 0)
        let batcher = echoBatcher(maxBatch: 1, delayMicroseconds: 0, timeout: 0.1, log: log, hold: hold)
        batcher.start()
        let running = Task { try await batcher.submit(key: key(2), input: try image(1)) }
        try await waitUntil("the first batch on the device") { !log.batches.isEmpty }  // held there until the signal below
        let late = Task { try await batcher.submit(key: key(2), input: try image(2)) }
        try await waitUntil("the late request queued") { batcher.pending == 1 }
        try await Task.sleep(for: .milliseconds(300))
        for _ in 0..<2 { hold.signal() }  // a second signal so a late batch that did run (a failure) cannot block
        _ = try await running.value
        await #expect(throws: InferenceError(.unavailable, "the request waited over 0.1 s in the queue (--request-timeout)")) { try await late.value }
        #expect(log.batches.count == 1)
        await batcher.shutdown()
    }

    @Test func limitsAndStates() async throws {
        let log = BatchLog()
        let batcher = echoBatcher(maxBatch: 2, delayMicroseconds: 0, log: log)
        await #expect(throws: InferenceError(.unavailable, "the server is not ready")) { try await batcher.submit(key: key(2), input: try image(1)) }
        batcher.start()
        await #expect(throws: InferenceError.bad("batch of 3 images; this server takes 1 to 2 per request (--max-batch)")) {
            try await batcher.submit(key: key(2), input: try image(1, count: 3))
        }
        try await waitUntil("the batcher ready") { batcher.ready }
        batcher.markStopping()
        #expect(!batcher.ready)
        #expect(logits(try await batcher.submit(key: key(2), input: try image(4)).0) == [4], "draining still serves in-flight work")
        await batcher.shutdown()
        await #expect(throws: InferenceError.self) { try await batcher.submit(key: key(2), input: try image(1)) }
    }
}
