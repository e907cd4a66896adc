import Foundation
import MilaCore
import MilaEngine
import ServiceLifecycle

/// What one batch on the device is made of: the network input size, and for segmentation
/// labels the output size. Only requests with equal keys are merged.
public struct BatchKey: Hashable, Sendable, CustomStringConvertible {
    public let height: Int, width: Int
    /// Label map size (segmentation); equal to the input size for pixel_values.
    public let outHeight: Int, outWidth: Int
    public var description: String { "\(height)x\(width)" + (outHeight != height || outWidth != width ? "->\(outHeight)x\(outWidth)" : "") }
}

/// A batch's results, one entry per image, in order.
public enum BatchResult: Sendable {
    /// Classifier logits: rows of `classes`.
    case logits([Float], classes: Int)
    /// Segmentation label maps at the key's output size.
    case labels([Int32])

    /// Rows [start, start + count) of the batch.
    func rows(_ start: Int, _ count: Int, key: BatchKey) -> BatchResult {
        switch self {
        case let .logits(v, classes): .logits(Array(v[(start * classes)..<((start + count) * classes)]), classes: classes)
        case let .labels(v):
            .labels(Array(v[(start * key.outHeight * key.outWidth)..<((start + count) * key.outHeight * key.outWidth)]))
        }
    }
}

/// Dynamic batching in Triton's manner (../shared/notes/serving.md section 2.1): requests with
/// the same `BatchKey` are merged, oldest first, until the batch holds `maxBatch` images or the
/// oldest request has waited `maxDelay`; batches run one at a time on one dedicated thread
/// (never on the Swift concurrency pool, whose few threads serve the HTTP connections). A queue
/// of `maxQueue` waiting requests answers the next with 503. A request that waited past
/// `timeout` in the queue fails with 503 without running.
///
/// As a `Service` it starts the thread, warms the model up, marks itself ready, and on graceful
/// shutdown runs what is queued and stops.
public final class Batcher: Service, @unchecked Sendable {
    public typealias Execute = @Sendable (_ key: BatchKey, _ input: Tensor) throws -> BatchResult

    struct Job {
        let key: BatchKey
        let input: Tensor
        let count: Int
        let enqueued: UInt64
        let continuation: CheckedContinuation<(BatchResult, queueMicroseconds: Double), Error>
    }

    public let maxBatch: Int
    public let maxDelayMicroseconds: Int
    public let maxQueue: Int
    public let timeoutSeconds: Double
    let execute: Execute
    let warmup: (@Sendable () throws -> Void)?
    let metrics: ServerMetrics?

    private let condition = NSCondition()
    private var queue: [Job] = []
    private var stopping = false
    private var started = false
    private var isReady = false
    private var draining = false
    private var finished: CheckedContinuation<Void, Never>?
    private var threadDone = false

    public init(maxBatch: Int, maxDelayMicroseconds: Int, maxQueue: Int, timeoutSeconds: Double, metrics: ServerMetrics? = nil,
                warmup: (@Sendable () throws -> Void)? = nil, execute: @escaping Execute) {
        precondition(maxBatch >= 1 && maxDelayMicroseconds >= 0 && maxQueue >= 1)
        (self.maxBatch, self.maxDelayMicroseconds, self.maxQueue, self.timeoutSeconds) = (maxBatch, maxDelayMicroseconds, maxQueue, timeoutSeconds)
        (self.metrics, self.warmup, self.execute) = (metrics, warmup, execute)
    }

    /// True once the device thread has warmed the model up, false again when shutdown starts.
    public var ready: Bool {
        condition.lock(); defer { condition.unlock() }
        return isReady && !stopping && !draining
    }

    /// Says not ready from now on (readiness probes fail) while requests are still taken: the
    /// HTTP server then stops accepting and lets its in-flight requests finish, and `shutdown`
    /// drains the queue.
    public func markStopping() {
        condition.lock()
        draining = true
        condition.unlock()
    }

    /// Requests waiting for the device.
    public var pending: Int {
        condition.lock(); defer { condition.unlock() }
        return queue.count
    }

    /// Queues `input` ((n, 3, H, W), n <= maxBatch) and waits for its rows of the batch result.
    public func submit(key: BatchKey, input: Tensor) async throws -> (BatchResult, queueMicroseconds: Double) {
        let count = input.shape[0]
        guard count >= 1 && count <= maxBatch else {
            throw InferenceError.bad("batch of \(count) images; this server takes 1 to \(maxBatch) per request (--max-batch)")
        }
        return try await withCheckedThrowingContinuation { continuation in
            condition.lock()
            if stopping || !started {
                condition.unlock()
                continuation.resume(throwing: InferenceError(.unavailable, "the server is not ready"))
                return
            }
            if queue.count >= maxQueue {
                condition.unlock()
                continuation.resume(throwing: InferenceError(.unavailable, "Exceeds maximum queue size (\(maxQueue) requests waiting, --max-queue)"))
                return
            }
            queue.append(Job(key: key, input: input, count: count, enqueued: DispatchTime.now().uptimeNanoseconds, continuation: continuation))
            metrics?.pending.set(to: Double(queue.count))
            condition.signal()
            condition.unlock()
        }
    }

    /// Starts the device thread (warm-up first); `run()` does this for a service group.
    public func start() {
        condition.lock()
        guard !started else { condition.unlock(); return }
        started = true
        condition.unlock()
        let thread = Thread { [self] in
            do { try warmup?() } catch {
                FileHandle.standardError.write(Data("mila-infer serve: warm-up failed: \(error)\n".utf8))
            }
            condition.lock()
            isReady = true
            condition.unlock()
            loop()
        }
        thread.name = "mila-device"
        thread.start()
    }

    /// Stops taking requests; the device thread runs what is queued, then ends. Returns when it has.
    public func shutdown() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            condition.lock()
            stopping = true
            if threadDone || !started {
                condition.unlock()
                continuation.resume()
                return
            }
            finished = continuation
            condition.broadcast()
            condition.unlock()
        }
    }

    public func run() async throws {
        start()
        try? await gracefulShutdown()
        await shutdown()
    }

    private func loop() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if queue.isEmpty {  // stopping and drained
                threadDone = true
                let done = finished
                finished = nil
                condition.unlock()
                done?.resume()
                return
            }
            let now = DispatchTime.now().uptimeNanoseconds
            // Requests that waited too long fail without running.
            let timeoutNanoseconds = UInt64(timeoutSeconds * 1e9)
            let expired = queue.filter { now - $0.enqueued > timeoutNanoseconds }
            if !expired.isEmpty { queue.removeAll { now - $0.enqueued > timeoutNanoseconds } }
            guard let oldest = queue.first else {
                metrics?.pending.set(to: 0)
                condition.unlock()
                fail(expired, timedOut)
                continue
            }
            var taken: [Int] = [], total = 0, more = false
            for (i, job) in queue.enumerated() where job.key == oldest.key {
                if total + job.count <= maxBatch {
                    taken.append(i)
                    total += job.count
                } else {
                    more = true
                    break
                }
            }
            let waited = now - oldest.enqueued
            let delay = UInt64(maxDelayMicroseconds) * 1000
            if total < maxBatch && !more && waited < delay && !stopping {
                // A request queued while the lock is dropped signals nobody: wait only when the
                // queue is as it was (it only grows outside this thread), else look again.
                let seen = queue.count
                condition.unlock()
                fail(expired, timedOut)
                condition.lock()
                if queue.count == seen && queue.first?.enqueued == oldest.enqueued && !stopping {
                    _ = condition.wait(until: Date(timeIntervalSinceNow: Double(delay - waited) / 1e9))
                }
                condition.unlock()
                continue
            }
            let jobs = taken.map { queue[$0] }
            let takenSet = Set(taken)
            queue = queue.enumerated().filter { !takenSet.contains($0.offset) }.map(\.element)
            metrics?.pending.set(to: Double(queue.count))
            condition.unlock()
            fail(expired, timedOut)
            runBatch(jobs, total: total, started: now)
        }
    }

    private var timedOut: InferenceError {
        InferenceError(.unavailable, "the request waited over \(timeoutSeconds) s in the queue (--request-timeout)")
    }

    private func fail(_ jobs: [Job], _ error: InferenceError) {
        for job in jobs { job.continuation.resume(throwing: error) }
    }

    private func runBatch(_ jobs: [Job], total: Int, started: UInt64) {
        let key = jobs[0].key
        let begin = DispatchTime.now().uptimeNanoseconds
        do {
            let input: Tensor
            if jobs.count == 1 {
                input = jobs[0].input
            } else {
                var data = [Float]()
                data.reserveCapacity(total * 3 * key.height * key.width)
                for job in jobs { data += job.input.data }
                input = try Tensor(shape: [total, 3, key.height, key.width], data: data)
            }
            let result = try execute(key, input)
            let computeMicroseconds = Double(DispatchTime.now().uptimeNanoseconds - begin) / 1000
            metrics?.recordExecution(images: total, computeMicroseconds: computeMicroseconds)
            var row = 0
            for job in jobs {
                let queued = Double(begin - job.enqueued) / 1000
                job.continuation.resume(returning: (result.rows(row, job.count, key: key), queued))
                row += job.count
            }
        } catch let error as InferenceError {
            fail(jobs, error)
        } catch {
            fail(jobs, InferenceError(.internalError, "inference failed: \(error)"))
        }
    }
}

extension Batcher {
    /// A batcher that runs `model`'s batches, warming it up first at every batch size.
    public convenience init(model: ServedModel, maxBatch: Int, maxDelayMicroseconds: Int, maxQueue: Int, timeoutSeconds: Double,
                            metrics: ServerMetrics?) {
        self.init(maxBatch: maxBatch, maxDelayMicroseconds: maxDelayMicroseconds, maxQueue: maxQueue, timeoutSeconds: timeoutSeconds,
                  metrics: metrics, warmup: { try model.warmup(maxBatch: maxBatch) },
                  execute: { key, input in try model.execute(key: key, input: input) })
    }
}
