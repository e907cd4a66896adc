import ArgumentParser
import Foundation
import Logging
import MilaEngine
import MilaModelZoo
import MilaOpenCL
import MilaServe

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a model over HTTP with the Open Inference Protocol v2 (KServe / Triton), with dynamic batching.",
        discussion: """
            Endpoints: GET /v2/health/live, /v2/health/ready, /v2, /v2/models/M, /v2/models/M/ready; \
            POST /v2/models/M/infer (also under /v2/models/M/versions/1/...). Inputs: pixel_values FP32 [N,3,H,W] \
            (preprocessed) or image BYTES [N] (JPEG/PNG, preprocessed as classify and segment do; base64 strings in JSON). \
            Outputs: logits and probabilities FP32 [N,classes] (classifiers), labels INT32 [N,H,W] (segmentation). \
            JSON tensors and Triton's binary tensor extension; the classification extension. \
            Requests of the same input size are merged into batches of up to --max-batch images, or until the oldest has \
            waited --max-queue-delay-us, and run one batch at a time on one device thread. Prometheus metrics on \
            http://HOST:METRICS-PORT/metrics. SIGTERM or SIGINT: not ready at once, in-flight requests finish, exit 0.
            """)

    @OptionGroup var options: ModelOptions

    @Option(name: .customLong("model-name"), help: "The model's name in the protocol's paths (default: the embedded model's name or the file name without extension).")
    var modelName: String?

    @Option(name: .long, help: "Address to listen on (127.0.0.1: this machine only; 0.0.0.0 in containers).")
    var host = "127.0.0.1"

    @Option(name: .customLong("http-port"), help: "HTTP port (0: any free port, printed when listening).")
    var httpPort = 8000

    @Option(name: .customLong("metrics-port"), help: "Prometheus metrics port (0: any free port).")
    var metricsPort = 8002

    @Option(name: .customLong("max-batch"), help: "Most images in one batch on the device, and in one request (default: 32 on GPUs, 8 on CPUs).")
    var maxBatch: Int?

    @Option(name: .customLong("max-queue-delay-us"), help: "How long the oldest waiting request may wait for others of its size to join its batch, microseconds.")
    var maxQueueDelayMicroseconds = 2000

    @Option(name: .customLong("max-queue"), help: "Requests waiting for the device before new ones are refused with 503.")
    var maxQueue = 64

    @Option(name: .customLong("max-body-mb"), help: "Largest request body, MiB (413 beyond it).")
    var maxBodyMB = 64

    @Option(name: .customLong("max-pixels"), help: "Largest image in an 'image' input, pixels (from its header, before decoding).")
    var maxPixels = 40_000_000

    @Option(name: .customLong("max-side"), help: "Largest height or width of a pixel_values input.")
    var maxSide = 4096

    @Option(name: .customLong("request-timeout"), help: "Seconds a request may wait in the queue before it fails with 503.")
    var requestTimeout = 60.0

    @Option(name: .customLong("idle-timeout"), help: "Seconds before an idle connection is closed.")
    var idleTimeout = 60

    func validate() throws {
        guard (1...1024).contains(maxBatch ?? 1) else { throw ValidationError("--max-batch must be 1 to 1024") }
        guard maxQueueDelayMicroseconds >= 0 else { throw ValidationError("--max-queue-delay-us must be >= 0") }
        guard maxQueue >= 1 else { throw ValidationError("--max-queue must be >= 1") }
        guard (1...4096).contains(maxBodyMB) else { throw ValidationError("--max-body-mb must be 1 to 4096") }
        guard maxPixels >= 1, maxSide >= 1, requestTimeout > 0, idleTimeout >= 1 else {
            throw ValidationError("--max-pixels, --max-side, --request-timeout and --idle-timeout must be positive")
        }
        guard (0...65535).contains(httpPort), (0...65535).contains(metricsPort) else { throw ValidationError("ports must be 0 to 65535") }
    }

    func run() async throws {
        let server: InferenceServer
        do {
            let model = options.model ?? (options.arch == nil ? ModelZoo.defaultName : nil)
            let engine = try Engine(model: model, arch: options.arch, stateDictKey: options.stateDict,
                                    backend: try options.backendKind(), device: options.device, precision: options.precision)
            let name = modelName ?? model.map(ServedModel.defaultName) ?? engine.config.name
            let served = try ServedModel(engine: engine, name: name, platform: Self.platform(model))
            let isGPU = (engine.backend as? CLBackend)?.context.device.isGPU ?? false
            var limits = InferenceLimits()
            limits.maxBatch = maxBatch ?? (isGPU ? 32 : 8)
            limits.maxBodyBytes = maxBodyMB << 20
            limits.maxImagePixels = maxPixels
            limits.maxSide = maxSide
            let metrics = ServerMetrics(model: name, maxBatch: limits.maxBatch)
            let batcher = Batcher(model: served, maxBatch: limits.maxBatch, maxDelayMicroseconds: maxQueueDelayMicroseconds, maxQueue: maxQueue,
                                  timeoutSeconds: requestTimeout, metrics: metrics)
            let service = InferenceService(model: served, batcher: batcher, limits: limits, metrics: metrics, serverVersion: MilaVersion.string)
            var configuration = InferenceServer.Configuration()
            configuration.host = host
            configuration.httpPort = httpPort
            configuration.metricsPort = metricsPort
            configuration.idleTimeoutSeconds = Int64(idleTimeout)
            server = InferenceServer(service: service, configuration: configuration)
            note("mila-infer serve: \(name) (\(engine.source)), max batch \(limits.maxBatch), queue delay \(maxQueueDelayMicroseconds) us")
        } catch {
            note("mila-infer: \(error)")
            throw ExitCode(1)
        }
        var logger = Logger(label: "mila-serve")
        logger.logLevel = .warning
        let host = self.host
        do {
            try await server.run(logger: logger) { listener, port in
                if listener == "http" {
                    note("mila-infer serve: listening on http://\(host):\(port); ready (GET /v2/health/ready) once warmed up at every batch size")
                } else {
                    note("mila-infer serve: metrics on http://\(host):\(port)/metrics")
                }
            }
        } catch {
            note("mila-infer: serve: \(error)")
            throw ExitCode(1)
        }
        note("mila-infer serve: stopped")
    }

    static func platform(_ model: String?) -> String {
        guard let model else { return "mila_random" }
        if !FileManager.default.fileExists(atPath: model) { return "mila_embedded" }
        let head = (try? FileHandle(forReadingFrom: URL(fileURLWithPath: model)).read(upToCount: 4)) ?? Data()
        return head.starts(with: [0x50, 0x4B]) || head.first == 0x80 ? "mila_pytorch" : "mila_safetensors"
    }
}
