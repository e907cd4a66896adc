import Foundation
import MilaCore

/// safetensors: 8-byte little-endian header length N, N bytes of JSON
/// `{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}`,
/// then the data; offsets are relative to the end of the header.
enum SafeTensors {
    /// The format's own limit on the JSON header (safetensors refuses larger ones too).
    static let maxHeaderBytes = 100_000_000

    static func read(path: String, data: Data) throws -> WeightFile {
        guard data.count >= 8 else { throw WeightFileError(file: path, "too short for a safetensors file (\(data.count) bytes)") }
        let headerLength = data.withUnsafeBytes { Bytes.uint64($0, 0) }
        guard headerLength <= UInt64(maxHeaderBytes) else {
            throw WeightFileError(file: path, "safetensors header of \(headerLength) bytes is over the 100 MB limit")
        }
        guard headerLength <= UInt64(data.count - 8) else {
            throw WeightFileError(file: path, "safetensors header length \(headerLength) runs past the end of the file (\(data.count) bytes)")
        }
        let headerEnd = 8 + Int(headerLength)
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<headerEnd))
        } catch {
            throw WeightFileError(file: path, "safetensors header is not valid JSON (or not a weight file at all)")
        }
        guard let header = json as? [String: Any] else { throw WeightFileError(file: path, "safetensors header is not a JSON object") }
        let dataSize = data.count - headerEnd
        var tensors: [String: StoredTensor] = [:]
        var metadata: [String: String] = [:]
        var ranges: [(begin: Int, end: Int, name: String)] = []
        for (name, value) in header {
            if name == "__metadata__" {
                guard let map = value as? [String: Any] else { throw WeightFileError(file: path, "__metadata__ is not an object") }
                for (k, v) in map {
                    guard let s = v as? String else { throw WeightFileError(file: path, "__metadata__ value \(k) is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let entry = value as? [String: Any], let dtypeName = entry["dtype"] as? String,
                  let shapeValues = entry["shape"] as? [Any], let offsets = entry["data_offsets"] as? [Any], offsets.count == 2
            else { throw WeightFileError(file: path, "tensor \(name): malformed entry (needs dtype, shape, data_offsets)") }
            guard let dtype = StorageDType(rawValue: dtypeName) else {
                throw WeightFileError(file: path, "tensor \(name): unsupported dtype \(dtypeName) (F32, F16, BF16 and I64 are read)")
            }
            let shape = shapeValues.compactMap(Self.integer)
            guard shape.count == shapeValues.count, shape.allSatisfy({ $0 >= 0 }),
                  let begin = Self.integer(offsets[0]), let end = Self.integer(offsets[1])
            else { throw WeightFileError(file: path, "tensor \(name): shape and offsets must be non-negative integers") }
            guard begin >= 0, begin <= end, end <= dataSize else {
                throw WeightFileError(file: path, "tensor \(name): data offsets [\(begin), \(end)] are outside the \(dataSize) data bytes")
            }
            guard let count = Checked.product(shape), let bytes = Checked.multiply(count, dtype.byteSize), end - begin == bytes else {
                throw WeightFileError(file: path, "tensor \(name): \(end - begin) bytes for shape \(shape) of \(dtypeName), expected \(Checked.product(shape).flatMap { Checked.multiply($0, dtype.byteSize) }.map(String.init) ?? "more than can be addressed")")
            }
            ranges.append((begin, end, name))
            tensors[name] = StoredTensor(name: name, dtype: dtype, shape: shape, byteOffset: headerEnd + begin,
                                         strides: WeightFile.contiguousStrides(shape))
        }
        ranges.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        for (a, b) in zip(ranges, ranges.dropFirst()) where b.begin < a.end {
            throw WeightFileError(file: path, "tensors \(a.name) and \(b.name) overlap in the data section")
        }
        return WeightFile(path: path, format: "safetensors", data: data, tensors: tensors, metadata: metadata)
    }

    /// A JSON number that is an integer representable as Int (not 1.5, not 1e30).
    static func integer(_ value: Any) -> Int? {
        guard let n = value as? NSNumber else { return nil }
        let d = n.doubleValue
        guard d.rounded() == d, abs(d) < 9.0e15 else { return nil }
        return Int(d)
    }
}

extension WeightFile {
    /// Writes float32 tensors (sorted by name) and string metadata as safetensors.
    public static func writeSafeTensors(_ tensors: [String: Tensor], metadata: [String: String] = [:], to path: String) throws {
        var header: [String: Any] = [:]
        var data: [UInt8] = []
        for name in tensors.keys.sorted() {
            let t = tensors[name]!
            header[name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [data.count, data.count + 4 * t.count]]
            data.reserveCapacity(data.count + 4 * t.count)
            for v in t.data { let b = v.bitPattern; data += [UInt8(b & 0xFF), UInt8((b >> 8) & 0xFF), UInt8((b >> 16) & 0xFF), UInt8(b >> 24)] }
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var bytes = (0..<8).map { UInt8((json.count >> (8 * $0)) & 0xFF) }
        bytes += json
        bytes += data
        do { try Data(bytes).write(to: URL(fileURLWithPath: path)) } catch {
            throw WeightFileError(file: path, "cannot write: \((error as NSError).localizedDescription)")
        }
    }
}
