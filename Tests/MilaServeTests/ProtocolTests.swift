import Foundation
@testable import MilaServe
import Testing

/// A binary-extension body: the JSON header, then the raw tensors; returns (body, header length).
func binaryBody(_ json: String, _ tensors: [[UInt8]]) -> ([UInt8], Int) {
    let header = Array(json.utf8)
    return (header + tensors.flatMap { $0 }, header.count)
}

func fp32Bytes(_ values: [Float]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

func lengthPrefixed(_ elements: [[UInt8]]) -> [UInt8] {
    elements.flatMap { e -> [UInt8] in
        let n = UInt32(e.count)
        return [UInt8(n & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n >> 16 & 0xFF), UInt8(n >> 24)] + e
    }
}

@Suite("Open Inference Protocol: requests and responses") struct ProtocolTests {
    @Test func jsonTensorsFlatOrNested() throws {
        let body = Array(#"{"id":"a","inputs":[{"name":"pixel_values","datatype":"FP32","shape":[1,3,1,2],"data":[[[[1,2]],[[3,4]],[[5,6.5]]]]}]}"#.utf8)
        let r = try InferRequest.parse(body: body, headerLength: nil)
        #expect(r.id == "a" && r.outputs == nil && !r.binaryOutputByDefault)
        #expect(try r.floats(r.inputs[0]) == [1, 2, 3, 4, 5, 6.5])
        let flat = try InferRequest.parse(body: Array(#"{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[7,8]}]}"#.utf8), headerLength: nil)
        #expect(try flat.floats(flat.inputs[0]) == [7, 8])
    }

    @Test func binaryTensorsAreSlicesOfTheBody() throws {
        let (body, n) = binaryBody(#"{"inputs":[{"name":"a","datatype":"FP32","shape":[2],"parameters":{"binary_data_size":8}},"#
                                   + #"{"name":"b","datatype":"BYTES","shape":[2],"parameters":{"binary_data_size":13}}],"#
                                   + #""parameters":{"binary_data_output":true},"outputs":[{"name":"logits","parameters":{"classification":2}},"#
                                   + #"{"name":"probabilities","parameters":{"binary_data":false}}]}"#,
                                   [fp32Bytes([1.5, -2]), lengthPrefixed([Array("abc".utf8), Array("de".utf8)])])
        let r = try InferRequest.parse(body: body, headerLength: n)
        #expect(try r.floats(r.inputs[0]) == [1.5, -2])
        #expect(try r.byteElements(r.inputs[1]) == [Data("abc".utf8), Data("de".utf8)])
        #expect(r.outputs?.map(\.name) == ["logits", "probabilities"] && r.outputs?.map(\.binary) == [true, false])
        #expect(r.outputs?.map(\.classification) == [2, nil])
    }

    @Test func badRequestsAreNamed() throws {
        func fails(_ json: String, headerLength: Int? = nil, extra: [UInt8] = [], _ message: String) {
            #expect(throws: InferenceError.bad(message)) { try InferRequest.parse(body: Array(json.utf8) + extra, headerLength: headerLength) }
        }
        fails("{not json", "the request body is not valid JSON")
        fails("[1]", "the request must be a JSON object")
        fails(#"{"inputs":[]}"#, "'inputs' must be a non-empty array")
        fails(#"{"inputs":[{"datatype":"FP32","shape":[1],"data":[1]}]}"#, "inputs[0] has no 'name'")
        fails(#"{"inputs":[{"name":"x","datatype":"FP32","shape":["a"],"data":[1]}]}"#, #"input 'x': shape ["a"] must hold integers"#)
        fails(#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1]}]}"#, "input 'x' has neither 'data' nor binary_data_size")
        fails(#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":4}}]}"#,
              "input 'x' has binary_data_size but the request has no Inference-Header-Content-Length header")
        let json = #"{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":4}}]}"#
        fails(json, headerLength: json.utf8.count, extra: [1, 2], "input 'x': binary_data_size 4 runs past the end of the body")
        fails(json, headerLength: json.utf8.count, extra: [0, 0, 0, 0, 9], "the binary tensors add up to 4 bytes, the body after the JSON header has 5")
        fails(json, headerLength: 10_000, "Inference-Header-Content-Length 10000 is not within the body's \(json.utf8.count) bytes")
        fails(#"{"id":3,"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}]}"#, "'id' must be a string")
        fails(#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}],"outputs":[{"name":"logits","parameters":{"classification":0}}]}"#,
              "output 'logits': classification must be a positive integer")
    }

    @Test func tensorContentsAreChecked() throws {
        func request(_ json: String) throws -> InferRequest { try InferRequest.parse(body: Array(json.utf8), headerLength: nil) }
        let short = try request(#"{"inputs":[{"name":"x","datatype":"FP32","shape":[2,2],"data":[1,2,3]}]}"#)
        #expect(throws: InferenceError.bad("input 'x': shape [2, 2] has 4 elements, 'data' has 3")) { try short.floats(short.inputs[0]) }
        let long = try request(#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1,2]}]}"#)
        #expect(throws: InferenceError.bad("input 'x': 'data' has more elements than its shape")) { try long.floats(long.inputs[0]) }
        let booleans = try request(#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[true]}]}"#)
        #expect(throws: InferenceError.bad("input 'x': FP32 'data' must hold numbers")) { try booleans.floats(booleans.inputs[0]) }
        let huge = try request(#"{"inputs":[{"name":"x","datatype":"FP32","shape":[4294967296,4294967296,16],"data":[1]}]}"#)
        #expect(throws: InferenceError.bad("input 'x': shape [4294967296, 4294967296, 16] is too large")) { try huge.floats(huge.inputs[0]) }
        let negative = try request(#"{"inputs":[{"name":"x","datatype":"FP32","shape":[-1],"data":[1]}]}"#)
        #expect(throws: InferenceError.bad("input 'x': negative dimension in shape [-1]")) { try negative.floats(negative.inputs[0]) }
        let notBase64 = try request(#"{"inputs":[{"name":"image","datatype":"BYTES","shape":[1],"data":["%%%"]}]}"#)
        #expect(throws: InferenceError.bad("input 'image'[0]: BYTES in JSON must be base64 (send raw bytes with the binary extension)")) {
            try notBase64.byteElements(notBase64.inputs[0])
        }
        let json = #"{"inputs":[{"name":"x","datatype":"FP32","shape":[3],"parameters":{"binary_data_size":8}}]}"#
        let sized = try InferRequest.parse(body: Array(json.utf8) + fp32Bytes([1, 2]), headerLength: json.utf8.count)
        #expect(throws: InferenceError.bad("input 'x': shape [3] needs 12 bytes of FP32, binary_data_size is 8")) { try sized.floats(sized.inputs[0]) }
        let bytesJSON = #"{"inputs":[{"name":"b","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":6}}]}"#
        let truncated = try InferRequest.parse(body: Array(bytesJSON.utf8) + [9, 0, 0, 0, 1, 2], headerLength: bytesJSON.utf8.count)
        #expect(throws: InferenceError.bad("input 'b': BYTES element runs past its tensor")) { try truncated.byteElements(truncated.inputs[0]) }
    }

    @Test func responsesInJSONAndBinary() throws {
        let logits = OutputTensor(name: "logits", shape: [1, 2], values: .fp32([0.5, .nan]))
        let top = OutputTensor(name: "logits", shape: [1, 1], values: .bytes(["0.5:0:cat \"x\""]))
        let json = InferResponse(modelName: "m", modelVersion: "1", id: "q", outputs: [(logits, false), (top, false)])
        #expect(json.headerLength == nil)
        #expect(String(decoding: json.body, as: UTF8.self) == #"{"model_name":"m","model_version":"1","id":"q","outputs":["#
            + #"{"name":"logits","datatype":"FP32","shape":[1,2],"data":[0.5,null]},"#
            + #"{"name":"logits","datatype":"BYTES","shape":[1,1],"data":["0.5:0:cat \"x\""]}]}"#)
        let labels = OutputTensor(name: "labels", shape: [1, 1, 2], values: .int32([3, -1]))
        let binary = InferResponse(modelName: "m", modelVersion: "1", id: nil, outputs: [(labels, true), (top, true)])
        let n = try #require(binary.headerLength)
        let header = String(decoding: binary.body[0..<n], as: UTF8.self)
        #expect(header.contains(#""parameters":{"binary_data_size":8}"#) && header.contains(#""parameters":{"binary_data_size":17}"#), "\(header)")
        #expect(Array(binary.body[n...]) == [3, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF] + lengthPrefixed([Array("0.5:0:cat \"x\"".utf8)]))
    }
}
