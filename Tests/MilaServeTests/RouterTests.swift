import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MilaEngine
import MilaImage
@testable import MilaServe
import NIOCore
import Testing

/// The embedded digits classifier behind the router (on the test device: MILA_DEVICE, PoCL in CI).
enum DigitsServer {
    static let model: ServedModel = {
        let engine = try! Engine(model: "digits")
        return try! ServedModel(engine: engine, name: "digits", platform: "mila_embedded")
    }()

    static func service(maxBatch: Int = 4, maxBody: Int = 1 << 20, maxQueue: Int = 16) -> InferenceService {
        var limits = InferenceLimits()
        limits.maxBatch = maxBatch
        limits.maxBodyBytes = maxBody
        limits.maxImagePixels = 1_000_000
        limits.maxSide = 512
        let metrics = ServerMetrics(model: "digits", maxBatch: maxBatch)
        let batcher = Batcher(model: model, maxBatch: maxBatch, maxDelayMicroseconds: 1000, maxQueue: maxQueue, timeoutSeconds: 30, metrics: metrics)
        return InferenceService(model: model, batcher: batcher, limits: limits, metrics: metrics, serverVersion: "test")
    }

    static func app(_ service: InferenceService) -> some ApplicationProtocol {
        Application(router: InferenceRoutes.router(service), services: [service.batcher])
    }

    static let digit3 = try! Data(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Examples/digit-3.png").standardized)
}

func string(_ b: ByteBuffer) -> String { String(buffer: b) }
func json(_ b: ByteBuffer) throws -> [String: Any] { try JSONSerialization.jsonObject(with: Data(b.readableBytesView)) as! [String: Any] }

/// Waits until the batcher has warmed up (the ready endpoint says 200).
func waitReady(_ client: some TestClientProtocol) async throws {
    for _ in 0..<6000 {  // up to 5 min: a cold kernel cache on PoCL, warming every batch size, beside other tests
        if try await client.execute(uri: "/v2/health/ready", method: .get).status == .ok { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    Issue.record("the server never became ready")
}

@Suite("serve: routes, errors and limits", .serialized) struct RouterTests {
    @Test func healthAndMetadata() async throws {
        let service = DigitsServer.service()
        try await DigitsServer.app(service).test(.router) { client in
            try await waitReady(client)
            try await client.execute(uri: "/v2/health/live", method: .get) { #expect($0.status == .ok && $0.body.readableBytes == 0) }
            try await client.execute(uri: "/v2", method: .get) { r in
                #expect(string(r.body) == #"{"name":"mila","version":"test","extensions":["binary_tensor_data","classification"]}"#)
            }
            for uri in ["/v2/models/digits", "/v2/models/digits/versions/1"] {
                try await client.execute(uri: uri, method: .get) { r in
                    let meta = try json(r.body)
                    #expect(meta["name"] as? String == "digits" && meta["platform"] as? String == "mila_embedded")
                    let outputs = meta["outputs"] as! [[String: Any]]
                    #expect(outputs.map { $0["name"] as! String } == ["logits", "probabilities"] && outputs[0]["shape"] as! [Int] == [-1, 10])
                }
                try await client.execute(uri: uri + "/ready", method: .get) { #expect($0.status == .ok) }
            }
            for uri in ["/v2/models/other", "/v2/models/digits/versions/2", "/v2/models/other/ready"] {
                try await client.execute(uri: uri, method: .get) { r in
                    let error = try json(r.body)["error"]
                    #expect(r.status == .notFound && error is String, "\(uri): \(string(r.body))")
                }
            }
            try await client.execute(uri: "/v2/models/Digits", method: .get) { #expect($0.status == .notFound, "names are case-sensitive") }
        }
    }

    /// Before the batcher has started (and warmed up) the server is live but not ready, and
    /// infer answers 503.
    @Test func notReadyIs503() async throws {
        let service = DigitsServer.service()
        try await Application(router: InferenceRoutes.router(service)).test(.router) { client in
            try await client.execute(uri: "/v2/health/live", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v2/health/ready", method: .get) { #expect($0.status == .serviceUnavailable) }
            try await client.execute(uri: "/v2/models/digits/ready", method: .get) { #expect($0.status == .serviceUnavailable) }
            let body = #"{"inputs":[{"name":"pixel_values","datatype":"FP32","shape":[1,3,1,1],"data":[0,0,0]}]}"#
            try await client.execute(uri: "/v2/models/digits/infer", method: .post, body: ByteBuffer(string: body)) { r in
                #expect(r.status == .serviceUnavailable && string(r.body) == #"{"error":"the server is not ready"}"#)
            }
        }
    }

    @Test func inferJSONAndBinaryAndClassification() async throws {
        let service = DigitsServer.service()
        try await DigitsServer.app(service).test(.router) { client in
            try await waitReady(client)
            let b64 = DigitsServer.digit3.base64EncodedString()
            let body = #"{"id":"x1","inputs":[{"name":"image","datatype":"BYTES","shape":[1],"data":[""# + b64 + #""]}],"#
                + #""outputs":[{"name":"probabilities","parameters":{"classification":2}}]}"#
            try await client.execute(uri: "/v2/models/digits/infer", method: .post, body: ByteBuffer(string: body)) { r in
                #expect(r.status == .ok && r.headers[.contentType] == "application/json")
                let response = try json(r.body)
                let out = response["outputs"] as! [[String: Any]]
                let top = out[0]["data"] as! [String]
                #expect(response["id"] as? String == "x1" && out[0]["datatype"] as? String == "BYTES" && out[0]["shape"] as! [Int] == [1, 2])
                #expect(top[0].hasSuffix(":3:3") && Double(top[0].split(separator: ":")[0])! > 0.5, "\(top)")
            }
            // Binary in, binary out: two rows of pixel_values, every output.
            let x: [Float] = (0..<(2 * 3 * 64 * 64)).map { (i: Int) -> Float in Float(i % 17) / 17 - 0.5 }
            let header = #"{"inputs":[{"name":"pixel_values","datatype":"FP32","shape":[2,3,64,64],"parameters":{"binary_data_size":98304}}],"#
                + #""parameters":{"binary_data_output":true}}"#
            let (bytes, n) = binaryBody(header, [fp32Bytes(x)])
            var headers = HTTPFields()
            headers[HTTPField.Name("Inference-Header-Content-Length")!] = String(n)
            try await client.execute(uri: "/v2/models/digits/versions/1/infer", method: .post, headers: headers, body: ByteBuffer(bytes: bytes)) { r in
                #expect(r.status == .ok, "\(string(r.body))")
                #expect(r.headers[.contentType] == "application/octet-stream")
                let length = try #require(r.headers[HTTPField.Name("Inference-Header-Content-Length")!].flatMap { Int($0) })
                let all = Array(r.body.readableBytesView)
                let meta = try JSONSerialization.jsonObject(with: Data(all[0..<length])) as! [String: Any]
                let outputs = meta["outputs"] as! [[String: Any]]
                #expect(outputs.map { ($0["parameters"] as! [String: Any])["binary_data_size"] as! Int } == [80, 80])
                #expect(all.count == length + 160)
                let probabilities: [Float] = Array(all[(length + 80)...]).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
                let first: Float = probabilities[0..<10].reduce(0, +), second: Float = probabilities[10..<20].reduce(0, +)
                #expect(abs(first - 1) < 1e-5 && abs(second - 1) < 1e-5)
            }
        }
    }

    @Test func errorsAreOneLineJSONWithTritonsCodes() async throws {
        let service = DigitsServer.service(maxBatch: 2)
        try await DigitsServer.app(service).test(.router) { client in
            try await waitReady(client)
            func expectError(_ body: String, _ status: HTTPResponse.Status, _ fragment: String, headers: HTTPFields = [:],
                             uri: String = "/v2/models/digits/infer") async throws {
                try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: body)) { r in
                    #expect(r.status == status, "\(body.prefix(80)): \(r.status) \(string(r.body))")
                    let message = (try? json(r.body))?["error"] as? String ?? ""
                    #expect(message.contains(fragment) && !message.contains("\n"), "\(message)")
                }
            }
            try await expectError("{", .badRequest, "not valid JSON")
            try await expectError(#"{"inputs":[{"name":"pixel_values","datatype":"FP32","shape":[3,3,2,2],"data":[1]}]}"#, .badRequest,
                                  "this server takes 1 to 2 images per request")
            try await expectError(#"{"inputs":[{"name":"pixel_values","datatype":"FP32","shape":[1,3,600,2],"data":[1]}]}"#, .badRequest,
                                  "height and width must be 1 to 512")
            try await expectError(#"{"inputs":[{"name":"tokens","datatype":"FP32","shape":[1],"data":[1]}]}"#, .badRequest, "unknown input 'tokens'")
            try await expectError(#"{"inputs":[{"name":"image","datatype":"BYTES","shape":[1],"data":["AAAA"]}]}"#, .badRequest,
                                  "input image[0]: not a JPEG or PNG image")
            try await expectError(#"{"inputs":[{"name":"pixel_values","datatype":"FP32","shape":[1],"data":[1]}]}"#, .notFound,
                                  "unknown model 'x'", uri: "/v2/models/x/infer")
            var gzip = HTTPFields()
            gzip[.contentEncoding] = "gzip"
            try await expectError("{}", .badRequest, "Content-Encoding 'gzip' is not supported", headers: gzip)
            var wrongLength = HTTPFields()
            wrongLength[HTTPField.Name("Inference-Header-Content-Length")!] = "abc"
            try await expectError("{}", .badRequest, "is not a number", headers: wrongLength)
            // An image over the pixel limit is refused from its header (1000 x 1001 > 1e6 pixels).
            let big = try bigPNG(width: 1000, height: 1001)
            try await expectError(#"{"inputs":[{"name":"image","datatype":"BYTES","shape":[1],"data":[""# + big.base64EncodedString() + #""]}]}"#,
                                  .badRequest, "1000x1001 pixels is over the limit of 1000000 pixels")
        }
    }

    /// Size limits need real sockets: a Content-Length over the cap is refused before the body
    /// is read, and so is a chunked body that grows past it.
    @Test func oversizedBodiesGet413OnALiveSocket() async throws {
        let service = DigitsServer.service(maxBody: 4096)
        try await DigitsServer.app(service).test(.live) { client in
            let body = ByteBuffer(repeating: UInt8(ascii: " "), count: 5000)
            try await client.execute(uri: "/v2/models/digits/infer", method: .post, body: body) { r in
                #expect(r.status == .contentTooLarge, "\(r.status)")
                #expect(string(r.body).contains("exceeds the limit of 4096"), "\(string(r.body))")
            }
            try await client.execute(uri: "/v2/health/live", method: .get) { #expect($0.status == .ok, "the server goes on") }
        }
    }

    @Test func metricsCountRequestsAndBatches() async throws {
        let service = DigitsServer.service()
        try await DigitsServer.app(service).test(.router) { client in
            try await waitReady(client)
            let body = #"{"inputs":[{"name":"pixel_values","datatype":"FP32","shape":[2,3,8,8],"data":["# + Array(repeating: "0.5", count: 384).joined(separator: ",") + "]}]}"
            for _ in 0..<3 { try await client.execute(uri: "/v2/models/digits/infer", method: .post, body: ByteBuffer(string: body)) { #expect($0.status == .ok) } }
            try await client.execute(uri: "/v2/models/digits/infer", method: .post, body: ByteBuffer(string: "{")) { #expect($0.status == .badRequest) }
        }
        let text = service.metrics.render()
        for line in [#"mila_inference_request_success{model="digits",version="1"} 3"#, #"mila_inference_request_failure{model="digits",version="1"} 1"#,
                     #"mila_inference_count{model="digits",version="1"} 6"#, #"mila_inference_exec_count{model="digits",version="1"} 3"#,
                     #"mila_request_duration_seconds_count{model="digits",version="1"} 4"#] {
            #expect(text.contains(line + "\n"), "\(line) in\n\(text)")
        }
        try await Application(router: InferenceRoutes.metricsRouter(service.metrics)).test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { r in
                #expect(r.headers[.contentType] == "text/plain; version=0.0.4" && string(r.body).contains("mila_inference_pending_request_count"))
            }
        }
    }
}

/// A gray PNG of the given size, encoded by the engine's own writer.
func bigPNG(width: Int, height: Int) throws -> Data {
    try ImageEncoder.png(RGBImage(width: width, height: height, pixels: [UInt8](repeating: 200, count: width * height * 3)))
}

@Suite("serve: a segmentation model") struct SegmentationServeTests {
    /// digits-seg behind the router: an encoded scene comes back as INT32 labels at the image's
    /// size, equal to the engine's own `segment` of the same image.
    @Test func labelsOfAnImageEqualTheEngines() async throws {
        let engine = try Engine(model: "digits-seg")
        let model = try ServedModel(engine: engine, name: "digits-seg", platform: "mila_embedded")
        let metrics = ServerMetrics(model: "digits-seg", maxBatch: 2)
        let batcher = Batcher(model: model, maxBatch: 2, maxDelayMicroseconds: 0, maxQueue: 4, timeoutSeconds: 30, metrics: metrics)
        let service = InferenceService(model: model, batcher: batcher, limits: InferenceLimits(), metrics: metrics, serverVersion: "test")
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Examples/scene-1.png").standardized
        let bytes = try Data(contentsOf: file)
        let expected = try engine.segment(try ImageDecoder.decode(bytes, name: "scene-1.png"))
        try await Application(router: InferenceRoutes.router(service), services: [batcher]).test(.router) { client in
            try await waitReady(client)
            let body = #"{"inputs":[{"name":"image","datatype":"BYTES","shape":[1],"data":[""# + bytes.base64EncodedString() + #""]}]}"#
            try await client.execute(uri: "/v2/models/digits-seg/infer", method: .post, body: ByteBuffer(string: body)) { r in
                #expect(r.status == .ok, "\(string(r.body).prefix(200))")
                let output = (try json(r.body)["outputs"] as! [[String: Any]])[0]
                #expect(output["name"] as? String == "labels" && output["datatype"] as? String == "INT32")
                #expect(output["shape"] as! [Int] == [1, expected.height, expected.width])
                #expect((output["data"] as! [Int]).map(Int32.init) == expected.labels)
            }
        }
    }
}
