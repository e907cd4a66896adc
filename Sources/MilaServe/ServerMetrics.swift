import Foundation
import Prometheus

/// The server's Prometheus metrics: Triton's families (../shared/notes/serving.md section 2.2)
/// under a `mila_` prefix, labelled with the model and its version, plus a request latency
/// histogram. Every family is registered once, here.
public final class ServerMetrics: @unchecked Sendable {
    public let registry = PrometheusCollectorRegistry()
    let success: Counter
    let failure: Counter
    let inferenceCount: Counter
    let execCount: Counter
    let queueDuration: Counter
    let computeDuration: Counter
    let requestDuration: Counter
    let pending: Gauge
    let latency: DurationHistogram
    /// Batch sizes run on the device, for the load test's distribution (also derivable from
    /// inference_count / exec_count on average).
    let batchSize: ValueHistogram

    public init(model: String, version: String = "1", maxBatch: Int) {
        let labels = [("model", model), ("version", version)]
        success = registry.makeCounter(name: "mila_inference_request_success", labels: labels,
                                       help: "Inference requests that succeeded (a request of N images counts 1)")
        failure = registry.makeCounter(name: "mila_inference_request_failure", labels: labels, help: "Inference requests that failed")
        inferenceCount = registry.makeCounter(name: "mila_inference_count", labels: labels, help: "Images inferred (batch items)")
        execCount = registry.makeCounter(name: "mila_inference_exec_count", labels: labels, help: "Batches run on the device")
        queueDuration = registry.makeCounter(name: "mila_inference_queue_duration_us", labels: labels,
                                             help: "Cumulative time requests waited in the batch queue, microseconds")
        computeDuration = registry.makeCounter(name: "mila_inference_compute_infer_duration_us", labels: labels,
                                               help: "Cumulative device time of the batches, microseconds")
        requestDuration = registry.makeCounter(name: "mila_inference_request_duration_us", labels: labels,
                                               help: "Cumulative end-to-end time of inference requests, microseconds")
        pending = registry.makeGauge(name: "mila_inference_pending_request_count", labels: labels,
                                     help: "Requests received and waiting for the device")
        latency = registry.makeDurationHistogram(name: "mila_request_duration_seconds", labels: labels,
                                                 buckets: [.milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                                                           .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
                                                           .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10)],
                                                 help: "Inference request latency, receipt to response")
        batchSize = registry.makeValueHistogram(name: "mila_batch_size", labels: labels, buckets: (1...max(1, maxBatch)).map(Double.init),
                                                help: "Images per batch run on the device")
    }

    func recordExecution(images: Int, computeMicroseconds: Double) {
        execCount.increment()
        inferenceCount.increment(by: Int64(images))
        computeDuration.increment(by: computeMicroseconds)
        batchSize.record(Double(images))
    }

    func recordRequest(success ok: Bool, seconds: Double, queueMicroseconds: Double?) {
        (ok ? success : failure).increment()
        requestDuration.increment(by: seconds * 1e6)
        latency.record(Duration.nanoseconds(Int64(seconds * 1e9)))
        if let queueMicroseconds { queueDuration.increment(by: queueMicroseconds) }
    }

    /// The text exposition format.
    public func render() -> String { registry.emitToString() }
}
