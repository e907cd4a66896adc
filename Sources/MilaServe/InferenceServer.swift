import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

extension InferenceError: HTTPResponseError {
    public var status: HTTPResponse.Status { HTTPResponse.Status(code: kind.rawValue) }

    /// `{"error": "<message>"}`, as Triton and the KServe spec answer.
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        jsonResponse("{\"error\":\(jsonString(message))}", status: status)
    }
}

func jsonResponse(_ json: String, status: HTTPResponse.Status = .ok) -> Response {
    Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: json)))
}

/// The header that frames Triton's binary tensor extension.
let inferenceHeaderLength = HTTPField.Name("Inference-Header-Content-Length")!

/// Routes of the Open Inference Protocol v2 over HTTP (../shared/notes/serving.md section 1.1),
/// with and without `/versions/V`.
public enum InferenceRoutes {
    public static func router(_ service: InferenceService) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.get("/v2/health/live") { _, _ in HTTPResponse.Status.ok }
        router.get("/v2/health/ready") { _, _ -> HTTPResponse.Status in
            guard service.batcher.ready else { throw InferenceError(.unavailable, "not ready") }
            return .ok
        }
        router.get("/v2") { _, _ in jsonResponse(service.serverMetadata) }
        for versioned in [false, true] {
            let base = versioned ? "/v2/models/{model}/versions/{version}" : "/v2/models/{model}"
            router.get(RouterPath(base)) { _, context in
                try check(service, context)
                return jsonResponse(service.modelMetadata)
            }
            router.get(RouterPath(base + "/ready")) { _, context -> HTTPResponse.Status in
                try check(service, context)
                guard service.batcher.ready else { throw InferenceError(.unavailable, "model \(service.model.name) is not ready") }
                return .ok
            }
            router.post(RouterPath(base + "/infer")) { request, context -> Response in
                try check(service, context)
                let body = try await collect(request, limit: service.limits.maxBodyBytes)
                var headerLength: Int?
                if let value = request.headers[inferenceHeaderLength] {
                    guard let n = Int(value) else { throw InferenceError.bad("Inference-Header-Content-Length '\(value)' is not a number") }
                    headerLength = n
                }
                if let encoding = request.headers[.contentEncoding], encoding != "identity" {
                    throw InferenceError.bad("Content-Encoding '\(encoding)' is not supported; send the body uncompressed")
                }
                let response = try await service.infer(body: body, headerLength: headerLength)
                var headers: HTTPFields = [:]
                if let n = response.headerLength {
                    headers[.contentType] = "application/octet-stream"
                    headers[inferenceHeaderLength] = String(n)
                } else {
                    headers[.contentType] = "application/json"
                }
                return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: response.body)))
            }
        }
        return router
    }

    /// 404 unless the path names this server's model (and version "1", when it names one).
    static func check(_ service: InferenceService, _ context: BasicRequestContext) throws {
        let name = context.parameters.get("model") ?? ""
        let version = context.parameters.get("version")
        guard service.knows(model: name, version: version) else {
            let shown = version.map { "\(name) version \($0)" } ?? name
            throw InferenceError(.notFound, "unknown model '\(shown)'; this server has \(service.model.name) (version 1)")
        }
    }

    /// The request body, refusing more than `limit` bytes (by Content-Length first, before any
    /// of it is read) with 413.
    static func collect(_ request: Request, limit: Int) async throws -> [UInt8] {
        if let declared = request.headers[.contentLength].flatMap({ Int($0) }), declared > limit {
            throw InferenceError(.payloadTooLarge, "request body of \(declared) bytes exceeds the limit of \(limit) (--max-body-mb)")
        }
        var request = request
        do {
            let buffer = try await request.collectBody(upTo: limit)
            return Array(buffer.readableBytesView)
        } catch is NIOTooManyBytesError {
            throw InferenceError(.payloadTooLarge, "request body exceeds the limit of \(limit) bytes (--max-body-mb)")
        }
    }

    /// The metrics listener's one route: `GET /metrics`, Prometheus text format.
    public static func metricsRouter(_ metrics: ServerMetrics) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: ResponseBody(byteBuffer: ByteBuffer(string: metrics.render())))
        }
        return router
    }
}

/// Marks the server not ready the moment graceful shutdown starts (it is the last service of
/// the group, so it is told first), before the HTTP server stops accepting and the batcher drains.
struct ReadinessGate: Service {
    let onShutdown: @Sendable () -> Void
    func run() async throws {
        try? await gracefulShutdown()
        onShutdown()
    }
}

/// `mila-infer serve`: the HTTP listener with the batcher as its service, a metrics listener,
/// SIGTERM / SIGINT handling (not ready at once, in-flight requests finish, then exit).
public struct InferenceServer {
    public struct Configuration: Sendable {
        public var host = "127.0.0.1"
        public var httpPort = 8000
        public var metricsPort = 8002
        public var idleTimeoutSeconds: Int64 = 60
        /// Connections waiting to be accepted.
        public var backlog = 256
        public init() {}
    }

    public let service: InferenceService
    public let configuration: Configuration

    public init(service: InferenceService, configuration: Configuration) {
        (self.service, self.configuration) = (service, configuration)
    }

    /// Runs until SIGTERM or SIGINT. `onRunning` is called with "http" or "metrics" and the
    /// port once each listener is up (a port of 0 in the configuration picks a free one).
    public func run(logger: Logger, onRunning: @escaping @Sendable (_ listener: String, _ port: Int) -> Void = { _, _ in }) async throws {
        let http = Application(
            router: InferenceRoutes.router(service),
            server: .http1(configuration: .init(idleTimeout: .seconds(configuration.idleTimeoutSeconds))),
            configuration: ApplicationConfiguration(address: .hostname(configuration.host, port: configuration.httpPort), serverName: "mila",
                                                    backlog: configuration.backlog),
            services: [service.batcher],
            onServerRunning: { channel in onRunning("http", channel.localAddress?.port ?? 0) },
            logger: logger)
        let metrics = Application(
            router: InferenceRoutes.metricsRouter(service.metrics),
            server: .http1(configuration: .init(idleTimeout: .seconds(configuration.idleTimeoutSeconds))),
            configuration: ApplicationConfiguration(address: .hostname(configuration.host, port: configuration.metricsPort), serverName: "mila-metrics"),
            onServerRunning: { channel in onRunning("metrics", channel.localAddress?.port ?? 0) },
            logger: logger)
        let batcher = service.batcher
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: metrics), .init(service: http), .init(service: ReadinessGate { batcher.markStopping() })],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
