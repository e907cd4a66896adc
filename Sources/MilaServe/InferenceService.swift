import Foundation
import MilaCore
import MilaEngine
import MilaImage
import MilaModel

/// A model as the server exposes it: its name and version, what it takes and returns, and how a
/// batch runs on the device (only ever on the batcher's thread).
public final class ServedModel: @unchecked Sendable {
    public let name: String
    public let version = "1"
    public let engine: Engine
    /// Information only (`mila_<format>`), as the protocol's `platform`.
    public let platform: String
    let labels: [String]
    let classes: Int
    var isSegmentation: Bool { engine.isSegmentation }

    public init(engine: Engine, name: String, platform: String) throws {
        guard engine.isSegmentation || !engine.config.backbone else {
            throw InferenceError(.unsupported, "\(engine.source) is a backbone without a head; serve takes classifiers and segmentation models")
        }
        (self.engine, self.name, self.platform) = (engine, name, platform)
        labels = engine.config.classLabels
        classes = engine.config.numClasses
    }

    /// The protocol's model name for `model` (a path or an embedded name): the embedded name,
    /// or the file name without its extension.
    public static func defaultName(for model: String) -> String {
        URL(fileURLWithPath: model).deletingPathExtension().lastPathComponent
    }

    /// Runs one batch (on the batcher's thread).
    func execute(key: BatchKey, input: Tensor) throws -> BatchResult {
        if isSegmentation {
            let maps = try engine.labels(nchw: input, height: key.outHeight, width: key.outWidth)
            return .labels(maps.flatMap { $0 })
        }
        let (graph, values) = try engine.run(nchw: input)
        let logits = values[graph.outputs["logits"]!]!
        return .logits(logits.data, classes: logits.shape[1])
    }

    /// Batches of 1 to `maxBatch` images of the model's own input size through the device, the
    /// largest first: kernels compiled, every batch size's graph built and its memory planned
    /// before the server says it is ready (a batch size met first under load cost seconds on
    /// PoCL, which compiles kernels per launch shape, and grew memory while serving).
    func warmup(maxBatch: Int) throws {
        let (h, w) = (engine.config.imageSize[0], engine.config.imageSize[1])
        let key = BatchKey(height: h, width: w, outHeight: h, outWidth: w)
        for n in stride(from: maxBatch, through: 1, by: -1) {
            let input = try Tensor(shape: [n, 3, h, w], data: [Float](repeating: 0, count: n * 3 * h * w))
            _ = try execute(key: key, input: input)
        }
    }
}

/// The protocol's logic, without HTTP: metadata, and infer from a request body to a response
/// body through the batcher. The router (`InferenceServer`) maps paths and errors onto it.
public final class InferenceService: @unchecked Sendable {
    public let model: ServedModel
    public let batcher: Batcher
    public let limits: InferenceLimits
    public let metrics: ServerMetrics
    public let serverVersion: String

    public init(model: ServedModel, batcher: Batcher, limits: InferenceLimits, metrics: ServerMetrics, serverVersion: String) {
        (self.model, self.batcher, self.limits, self.metrics, self.serverVersion) = (model, batcher, limits, metrics, serverVersion)
    }

    /// `/v2`: name, version and the extensions mila implements.
    public var serverMetadata: String {
        "{\"name\":\"mila\",\"version\":\(jsonString(serverVersion)),\"extensions\":[\"binary_tensor_data\",\"classification\"]}"
    }

    /// `/v2/models/M`: inputs, outputs (-1 for variable dimensions), platform, versions.
    public var modelMetadata: String {
        func tensor(_ name: String, _ datatype: String, _ shape: [Int]) -> String {
            "{\"name\":\(jsonString(name)),\"datatype\":\"\(datatype)\",\"shape\":[\(shape.map(String.init).joined(separator: ","))]}"
        }
        let inputs = [tensor("pixel_values", "FP32", [-1, 3, -1, -1]), tensor("image", "BYTES", [-1])]
        let outputs = model.isSegmentation
            ? [tensor("labels", "INT32", [-1, -1, -1])]
            : [tensor("logits", "FP32", [-1, model.classes]), tensor("probabilities", "FP32", [-1, model.classes])]
        return "{\"name\":\(jsonString(model.name)),\"versions\":[\"1\"],\"platform\":\(jsonString(model.platform)),"
            + "\"inputs\":[\(inputs.joined(separator: ","))],\"outputs\":[\(outputs.joined(separator: ","))]}"
    }

    /// Whether `name` (and `version`, when given) is this server's model.
    public func knows(model name: String, version: String?) -> Bool {
        name == model.name && (version == nil || version == model.version)
    }

    /// One infer request, body to response. Errors are `InferenceError`s.
    func infer(body: [UInt8], headerLength: Int?) async throws -> InferResponse {
        let started = DispatchTime.now().uptimeNanoseconds
        var queued: Double?
        do {
            let request = try InferRequest.parse(body: body, headerLength: headerLength)
            let (key, input) = try networkInput(request)
            let (result, queueMicroseconds) = try await batcher.submit(key: key, input: input)
            queued = queueMicroseconds
            let outputs = try outputs(request, result: result, count: input.shape[0], key: key)
            let response = InferResponse(modelName: model.name, modelVersion: model.version, id: request.id, outputs: outputs)
            metrics.recordRequest(success: true, seconds: Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9, queueMicroseconds: queued)
            return response
        } catch {
            metrics.recordRequest(success: false, seconds: Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9, queueMicroseconds: queued)
            throw error
        }
    }

    /// The (N, 3, H, W) network input of a request and its batch key.
    func networkInput(_ request: InferRequest) throws -> (BatchKey, Tensor) {
        let known = ["pixel_values", "image"]
        for input in request.inputs where !known.contains(input.name) {
            throw InferenceError.bad("unknown input '\(input.name)'; \(model.name) takes pixel_values (FP32 [-1,3,-1,-1]) or image (BYTES [-1])")
        }
        guard request.inputs.count == 1 else {
            throw InferenceError.bad("give one input, pixel_values or image, not \(request.inputs.count)")
        }
        let input = request.inputs[0]
        if input.name == "pixel_values" {
            let s = input.shape
            guard s.count == 4, s[1] == 3 else {
                throw InferenceError.bad("input 'pixel_values': shape must be [N, 3, H, W], not \(s)")
            }
            guard (1...limits.maxBatch).contains(s[0]) else {
                throw InferenceError.bad("input 'pixel_values': batch \(s[0]); this server takes 1 to \(limits.maxBatch) images per request")
            }
            guard (1...limits.maxSide).contains(s[2]), (1...limits.maxSide).contains(s[3]) else {
                throw InferenceError.bad("input 'pixel_values': \(s[2])x\(s[3]) pixels; height and width must be 1 to \(limits.maxSide)")
            }
            let tensor = try Tensor(shape: s, data: try request.floats(input))
            return (BatchKey(height: s[2], width: s[3], outHeight: s[2], outWidth: s[3]), tensor)
        }
        guard input.shape.count == 1 else { throw InferenceError.bad("input 'image': shape must be [N], not \(input.shape)") }
        guard (1...limits.maxBatch).contains(input.shape[0]) else {
            throw InferenceError.bad("input 'image': \(input.shape[0]) images; this server takes 1 to \(limits.maxBatch) per request")
        }
        let images = try request.byteElements(input).enumerated().map { i, data in
            do { return try ImageDecoder.decode(data, name: "image[\(i)]", maxPixels: limits.maxImagePixels) } catch let error as ImageError {
                throw InferenceError.bad("input \(error)")
            }
        }
        if let head = model.engine.config.segmentation {
            let pipeline = SegmentationPreprocess(scale: head.scale, mean: model.engine.config.mean, std: model.engine.config.std)
            let first = images[0]
            guard images.allSatisfy({ $0.width == first.width && $0.height == first.height }) else {
                throw InferenceError.bad("input 'image': the images of one request must have one size (labels come back at that size)")
            }
            let tensors = try images.map { try pipeline.tensor($0).tensor }
            let (h, w) = (tensors[0].shape[2], tensors[0].shape[3])
            return (BatchKey(height: h, width: w, outHeight: first.height, outWidth: first.width), try Tensor.stacking(tensors))
        }
        let preprocess = model.engine.preprocess
        let tensor = try Tensor.stacking(try images.map { try preprocess.tensor($0) })
        return (BatchKey(height: preprocess.height, width: preprocess.width, outHeight: preprocess.height, outWidth: preprocess.width), tensor)
    }

    /// The outputs the request named (or all), each JSON or binary as asked.
    func outputs(_ request: InferRequest, result: BatchResult, count: Int, key: BatchKey) throws -> [(OutputTensor, binary: Bool)] {
        let available = model.isSegmentation ? ["labels"] : ["logits", "probabilities"]
        let wanted = request.outputs ?? available.map { RequestedOutput(name: $0, binary: request.binaryOutputByDefault, classification: nil) }
        return try wanted.map { want in
            guard available.contains(want.name) else {
                throw InferenceError.bad("unknown output '\(want.name)'; \(model.name) has \(available.joined(separator: ", "))")
            }
            switch result {
            case let .labels(maps):
                guard want.classification == nil else { throw InferenceError.bad("output 'labels' has no classification (it is a label map)") }
                return (OutputTensor(name: "labels", shape: [count, key.outHeight, key.outWidth], values: .int32(maps)), want.binary)
            case let .logits(logits, classes):
                var values = logits
                if want.name == "probabilities" {
                    values = (0..<count).flatMap { b in Ranking(logits: logits[(b * classes)..<((b + 1) * classes)]).probabilities.map { Float($0) } }
                }
                guard let k = want.classification else {
                    return (OutputTensor(name: want.name, shape: [count, classes], values: .fp32(values)), want.binary)
                }
                let top = min(k, classes)
                var strings: [String] = []
                for b in 0..<count {
                    let row = Array(values[(b * classes)..<((b + 1) * classes)])
                    let order = row.indices.sorted { row[$0] != row[$1] ? row[$0] > row[$1] : $0 < $1 }.prefix(top)
                    strings += order.map { "\(row[$0]):\($0):\(model.labels[$0])" }
                }
                return (OutputTensor(name: want.name, shape: [count, top], values: .bytes(strings)), want.binary)
            }
        }
    }
}
