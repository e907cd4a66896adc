import Foundation

// The Open Inference Protocol v2 (KServe / Triton) as mila speaks it: infer requests with JSON
// tensors or Triton's binary tensor extension, and the responses, including the classification
// extension. Facts: ../shared/notes/serving.md sections 1.2-1.5.

/// A protocol error: the HTTP status Triton would answer with and a one-line message, sent as
/// `{"error": "<message>"}`.
public struct InferenceError: Error, Equatable, CustomStringConvertible {
    public enum Kind: Int, Sendable {
        case badRequest = 400, notFound = 404, payloadTooLarge = 413, internalError = 500, unsupported = 501, unavailable = 503
    }

    public let kind: Kind
    public let message: String
    public init(_ kind: Kind, _ message: String) { (self.kind, self.message) = (kind, message) }
    public var description: String { message }

    static func bad(_ message: String) -> InferenceError { InferenceError(.badRequest, message) }
}

/// What a server accepts, checked before anything of that size is allocated.
public struct InferenceLimits: Sendable {
    /// Whole request body, bytes (Triton's default, 64 MiB).
    public var maxBodyBytes = 64 << 20
    /// Images (or rows of pixel_values) in one request, and in one batch on the device.
    public var maxBatch = 8
    /// Largest height or width of a pixel_values tensor.
    public var maxSide = 4096
    /// Largest decoded image, pixels (checked from the image header).
    public var maxImagePixels = 40_000_000
    public init() {}
}

/// An input tensor of a request: its declared name, datatype and shape, and where its data is.
struct InputTensor {
    enum Payload {
        case json(Any)
        case binary(Range<Int>)
    }

    let name: String
    let datatype: String
    let shape: [Int]
    let payload: Payload

    /// The element count of the shape, refusing negative dimensions and overflow.
    var elementCount: Int {
        get throws {
            var n = 1
            for d in shape {
                guard d >= 0 else { throw InferenceError.bad("input '\(name)': negative dimension in shape \(shape)") }
                let (m, overflow) = n.multipliedReportingOverflow(by: d)
                guard !overflow else { throw InferenceError.bad("input '\(name)': shape \(shape) is too large") }
                n = m
            }
            return n
        }
    }
}

/// An output the client asked for (or every output, when it named none).
struct RequestedOutput {
    let name: String
    let binary: Bool
    /// The classification extension's k: the output becomes BYTES "value:index:label".
    let classification: Int?
}

/// A parsed infer request; the body stays where it is and binary tensors are ranges of it.
struct InferRequest {
    let id: String?
    let inputs: [InputTensor]
    let outputs: [RequestedOutput]?
    let binaryOutputByDefault: Bool
    let body: [UInt8]

    /// Parses a request body. `headerLength` is `Inference-Header-Content-Length` when the
    /// client sent one: the JSON header is that many bytes and the binary tensors follow in
    /// input order.
    static func parse(body: [UInt8], headerLength: Int?) throws -> InferRequest {
        let jsonEnd: Int
        if let headerLength {
            guard headerLength >= 0 && headerLength <= body.count else {
                throw InferenceError.bad("Inference-Header-Content-Length \(headerLength) is not within the body's \(body.count) bytes")
            }
            jsonEnd = headerLength
        } else {
            jsonEnd = body.count
        }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(body[0..<jsonEnd]), options: [])
        } catch {
            throw InferenceError.bad("the request body is not valid JSON")
        }
        guard let root = object as? [String: Any] else { throw InferenceError.bad("the request must be a JSON object") }
        let id: String?
        switch root["id"] {
        case nil, is NSNull: id = nil
        case let s as String: id = s
        default: throw InferenceError.bad("'id' must be a string")
        }
        let parameters = root["parameters"] as? [String: Any] ?? [:]
        let binaryDefault = (parameters["binary_data_output"] as? Bool) ?? false
        guard let rawInputs = root["inputs"] as? [Any], !rawInputs.isEmpty else {
            throw InferenceError.bad("'inputs' must be a non-empty array")
        }
        var offset = jsonEnd
        var inputs: [InputTensor] = []
        for (i, raw) in rawInputs.enumerated() {
            guard let input = raw as? [String: Any] else { throw InferenceError.bad("inputs[\(i)] must be an object") }
            guard let name = input["name"] as? String else { throw InferenceError.bad("inputs[\(i)] has no 'name'") }
            guard let datatype = input["datatype"] as? String else { throw InferenceError.bad("input '\(name)' has no 'datatype'") }
            guard let rawShape = input["shape"] as? [Any] else { throw InferenceError.bad("input '\(name)' has no 'shape' array") }
            let shape = try rawShape.map { d -> Int in
                guard let n = d as? NSNumber, !isBool(n), let v = Int(exactly: n.doubleValue) else {
                    throw InferenceError.bad("input '\(name)': shape \(rawShape) must hold integers")
                }
                return v
            }
            let inputParameters = input["parameters"] as? [String: Any] ?? [:]
            if let size = inputParameters["binary_data_size"] {
                guard headerLength != nil else {
                    throw InferenceError.bad("input '\(name)' has binary_data_size but the request has no Inference-Header-Content-Length header")
                }
                guard let n = size as? NSNumber, !isBool(n), let bytes = Int(exactly: n.doubleValue), bytes >= 0 else {
                    throw InferenceError.bad("input '\(name)': binary_data_size must be a non-negative integer")
                }
                guard bytes <= body.count - offset else {
                    throw InferenceError.bad("input '\(name)': binary_data_size \(bytes) runs past the end of the body")
                }
                inputs.append(InputTensor(name: name, datatype: datatype, shape: shape, payload: .binary(offset..<(offset + bytes))))
                offset += bytes
            } else {
                guard let data = input["data"] else { throw InferenceError.bad("input '\(name)' has neither 'data' nor binary_data_size") }
                inputs.append(InputTensor(name: name, datatype: datatype, shape: shape, payload: .json(data)))
            }
        }
        if headerLength != nil && offset != body.count {
            throw InferenceError.bad("the binary tensors add up to \(offset - jsonEnd) bytes, the body after the JSON header has \(body.count - jsonEnd)")
        }
        var outputs: [RequestedOutput]?
        if let rawOutputs = root["outputs"] {
            guard let list = rawOutputs as? [Any] else { throw InferenceError.bad("'outputs' must be an array") }
            outputs = try list.enumerated().map { i, raw in
                guard let output = raw as? [String: Any], let name = output["name"] as? String else {
                    throw InferenceError.bad("outputs[\(i)] must be an object with a 'name'")
                }
                let p = output["parameters"] as? [String: Any] ?? [:]
                var k: Int?
                if let c = p["classification"] {
                    guard let n = c as? NSNumber, !isBool(n), let v = Int(exactly: n.doubleValue), v >= 1 else {
                        throw InferenceError.bad("output '\(name)': classification must be a positive integer")
                    }
                    k = v
                }
                return RequestedOutput(name: name, binary: (p["binary_data"] as? Bool) ?? binaryDefault, classification: k)
            }
        }
        return InferRequest(id: id, inputs: inputs, outputs: outputs, binaryOutputByDefault: binaryDefault, body: body)
    }

    /// FP32 elements of `input` (JSON numbers, nested or flat, or little-endian binary).
    func floats(_ input: InputTensor) throws -> [Float] {
        guard input.datatype == "FP32" else {
            throw InferenceError.bad("input '\(input.name)' must be FP32, not \(input.datatype)")
        }
        let count = try input.elementCount
        switch input.payload {
        case let .binary(range):
            guard range.count == count * 4 else {
                throw InferenceError.bad("input '\(input.name)': shape \(input.shape) needs \(count * 4) bytes of FP32, binary_data_size is \(range.count)")
            }
            var values = [Float](repeating: 0, count: count)
            values.withUnsafeMutableBytes { destination in
                body.withUnsafeBytes { source in
                    destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[range]))
                }
            }
            // The wire is little-endian; so is every platform mila builds for.
            return values
        case let .json(data):
            var values: [Float] = []
            values.reserveCapacity(count)
            try flatten(data, into: &values, name: input.name, limit: count)
            guard values.count == count else {
                throw InferenceError.bad("input '\(input.name)': shape \(input.shape) has \(count) elements, 'data' has \(values.count)")
            }
            return values
        }
    }

    /// BYTES elements of `input`: length-prefixed in binary, base64 strings in JSON (raw image
    /// bytes are not valid JSON strings).
    func byteElements(_ input: InputTensor) throws -> [Data] {
        guard input.datatype == "BYTES" else {
            throw InferenceError.bad("input '\(input.name)' must be BYTES, not \(input.datatype)")
        }
        let count = try input.elementCount
        var elements: [Data] = []
        switch input.payload {
        case let .binary(range):
            var at = range.lowerBound
            while at < range.upperBound {
                guard range.upperBound - at >= 4 else { throw InferenceError.bad("input '\(input.name)': truncated BYTES length prefix") }
                let length = Int(UInt32(body[at]) | UInt32(body[at + 1]) << 8 | UInt32(body[at + 2]) << 16 | UInt32(body[at + 3]) << 24)
                at += 4
                guard length <= range.upperBound - at else { throw InferenceError.bad("input '\(input.name)': BYTES element runs past its tensor") }
                guard elements.count < count else { throw InferenceError.bad("input '\(input.name)': more BYTES elements than shape \(input.shape) holds") }
                elements.append(Data(body[at..<(at + length)]))
                at += length
            }
        case let .json(data):
            var strings: [String] = []
            try flattenStrings(data, into: &strings, name: input.name, limit: count)
            elements = try strings.enumerated().map { i, s in
                guard let d = Data(base64Encoded: s) else {
                    throw InferenceError.bad("input '\(input.name)'[\(i)]: BYTES in JSON must be base64 (send raw bytes with the binary extension)")
                }
                return d
            }
        }
        guard elements.count == count else {
            throw InferenceError.bad("input '\(input.name)': shape \(input.shape) has \(count) elements, the data \(elements.count)")
        }
        return elements
    }

    private func flatten(_ value: Any, into values: inout [Float], name: String, limit: Int) throws {
        if let array = value as? [Any] {
            for v in array { try flatten(v, into: &values, name: name, limit: limit) }
        } else if let n = value as? NSNumber, !isBool(n) {
            guard values.count < limit else { throw InferenceError.bad("input '\(name)': 'data' has more elements than its shape") }
            values.append(n.floatValue)
        } else {
            throw InferenceError.bad("input '\(name)': FP32 'data' must hold numbers")
        }
    }

    private func flattenStrings(_ value: Any, into values: inout [String], name: String, limit: Int) throws {
        if let array = value as? [Any] {
            for v in array { try flattenStrings(v, into: &values, name: name, limit: limit) }
        } else if let s = value as? String {
            guard values.count < limit else { throw InferenceError.bad("input '\(name)': 'data' has more elements than its shape") }
            values.append(s)
        } else {
            throw InferenceError.bad("input '\(name)': BYTES 'data' must hold strings")
        }
    }
}

/// JSON booleans arrive as NSNumber too (objCType "c"; JSON numbers come as "i", "q" or "d");
/// they are not numbers here.
func isBool(_ n: NSNumber) -> Bool { String(cString: n.objCType) == "c" }

/// An output tensor of a response.
struct OutputTensor {
    enum Values {
        case fp32([Float])
        case int32([Int32])
        case bytes([String])
    }

    let name: String
    let shape: [Int]
    let values: Values

    var datatype: String {
        switch values {
        case .fp32: "FP32"
        case .int32: "INT32"
        case .bytes: "BYTES"
        }
    }

    /// Little-endian raw bytes (BYTES: 4-byte length + UTF-8 per element).
    var binary: [UInt8] {
        switch values {
        case let .fp32(v): return v.withUnsafeBytes { Array($0) }
        case let .int32(v): return v.withUnsafeBytes { Array($0) }
        case let .bytes(strings):
            var out: [UInt8] = []
            for s in strings {
                let utf8 = Array(s.utf8)
                let n = UInt32(utf8.count)
                out += [UInt8(n & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n >> 16 & 0xFF), UInt8(n >> 24)]
                out += utf8
            }
            return out
        }
    }

    /// The flat JSON array of the values; non-finite floats (which JSON cannot hold) as null.
    var jsonData: String {
        switch values {
        case let .fp32(v): return "[" + v.map { $0.isFinite ? "\($0)" : "null" }.joined(separator: ",") + "]"
        case let .int32(v): return "[" + v.map { "\($0)" }.joined(separator: ",") + "]"
        case let .bytes(s): return "[" + s.map(jsonString).joined(separator: ",") + "]"
        }
    }
}

/// A JSON string literal.
func jsonString(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

/// An infer response: the JSON header and, when any output is binary, the raw tensors after it.
struct InferResponse {
    let body: [UInt8]
    /// Set when the body carries binary tensors: the JSON header's length.
    let headerLength: Int?

    init(modelName: String, modelVersion: String, id: String?, outputs: [(OutputTensor, binary: Bool)]) {
        var json = "{\"model_name\":\(jsonString(modelName)),\"model_version\":\(jsonString(modelVersion))"
        if let id { json += ",\"id\":\(jsonString(id))" }
        json += ",\"outputs\":["
        var tail: [UInt8] = []
        for (i, (output, binary)) in outputs.enumerated() {
            if i > 0 { json += "," }
            json += "{\"name\":\(jsonString(output.name)),\"datatype\":\"\(output.datatype)\",\"shape\":[\(output.shape.map(String.init).joined(separator: ","))]"
            if binary {
                let bytes = output.binary
                json += ",\"parameters\":{\"binary_data_size\":\(bytes.count)}}"
                tail += bytes
            } else {
                json += ",\"data\":\(output.jsonData)}"
            }
        }
        json += "]}"
        let header = Array(json.utf8)
        let anyBinary = outputs.contains { $0.binary }
        body = header + tail
        headerLength = anyBinary ? header.count : nil
    }
}
