import Foundation
import MilaCore

/// One tensor of a weight file, not yet converted: where its bytes are and how to read them.
public struct StoredTensor: Sendable {
    public let name: String
    public let dtype: StorageDType
    public let shape: [Int]
    /// Byte offset of element 0 in the file's mapped data.
    let byteOffset: Int
    /// Strides in elements (row-major contiguous unless a checkpoint saved a view).
    let strides: [Int]
}

/// Named tensors with shapes known up front and values read on request: a weight file, or
/// tensors made in memory (random weights for `check` and `bench`).
public protocol TensorSource {
    /// Where the tensors come from, for error messages.
    var path: String { get }
    var shapes: [String: [Int]] { get }
    /// Whether `name` holds floating-point data (I64 tensors are never bound).
    func isFloatingPoint(_ name: String) -> Bool
    func tensor(_ name: String) throws -> Tensor
}

/// Tensors held in memory, as a `TensorSource`.
public struct InMemoryTensors: TensorSource {
    public let path: String
    public let tensors: [String: Tensor]
    public init(_ tensors: [String: Tensor], path: String = "<random weights>") { self.tensors = tensors; self.path = path }
    public var shapes: [String: [Int]] { tensors.mapValues(\.shape) }
    public func isFloatingPoint(_ name: String) -> Bool { true }
    public func tensor(_ name: String) throws -> Tensor {
        guard let t = tensors[name] else { throw WeightFileError(file: path, "no tensor named \(name)") }
        return t
    }
}

/// A weight file mapped into memory: its tensors by name, converted to float32 on request.
/// The bytes are memory-mapped, not read, so a 400 MB checkpoint is not copied up front.
public final class WeightFile: TensorSource, @unchecked Sendable {
    public let path: String
    public let format: String
    public let tensors: [String: StoredTensor]
    /// safetensors `__metadata__`; for PyTorch checkpoints, `pytorch.state_dict` (the entry the
    /// tensors came from) and `pytorch.stripped_prefix` (when `module.` was removed).
    public let metadata: [String: String]
    let data: Data

    /// Tensors left out because they belong to the rest of a detector or segmenter (see below).
    public let droppedTensors: Int

    /// A checkpoint of a whole detector keeps the backbone under `backbone.`: then only those
    /// tensors are the model's (prefix removed), and the neck and heads are left out. A
    /// segmentation checkpoint with an UPerHead (`decode_head.conv_seg.weight`) is a model the
    /// engine runs whole, so it keeps every name.
    init(path: String, format: String, data: Data, tensors: [String: StoredTensor], metadata: [String: String]) {
        self.path = path
        self.format = format
        self.data = data
        self.metadata = metadata
        let prefix = "backbone."
        if tensors.keys.contains(where: { $0.hasPrefix(prefix) }), tensors["decode_head.conv_seg.weight"] == nil {
            var kept: [String: StoredTensor] = [:]
            for (name, t) in tensors where name.hasPrefix(prefix) { kept[String(name.dropFirst(prefix.count))] = t }
            self.tensors = kept
            self.droppedTensors = tensors.count - kept.count
        } else {
            self.tensors = tensors
            self.droppedTensors = 0
        }
    }

    public var shapes: [String: [Int]] { tensors.mapValues(\.shape) }
    public func isFloatingPoint(_ name: String) -> Bool { tensors[name]?.dtype.isFloatingPoint ?? false }

    /// Opens a safetensors file or a PyTorch checkpoint (zip or legacy format), told apart by
    /// content. `stateDictKey` picks the state dict inside a checkpoint (default: `model`, else
    /// `state_dict`, else the top-level dict). The file is mapped read-only and never written.
    public static func open(_ path: String, stateDictKey: String? = nil) throws -> WeightFile {
        try read(try mapped(path), name: path, stateDictKey: stateDictKey)
    }

    /// Reads a weight file already in memory (an embedded model); `name` stands for the path in
    /// errors and in `path`. The format is told by content, never by the file's extension.
    public static func read(_ data: Data, name: String, stateDictKey: String? = nil) throws -> WeightFile {
        switch WeightFormat.detect(data) {
        case .pytorchZip: return try PyTorchCheckpoint.read(path: name, data: data, stateDictKey: stateDictKey)
        case .pytorchLegacy: return try PyTorchCheckpoint.readLegacy(path: name, data: data, stateDictKey: stateDictKey)
        case .safetensors: return try SafeTensors.read(path: name, data: data)
        case .npy: throw WeightFileError(file: name, "an .npy array, not a weight file (weights are safetensors or a PyTorch checkpoint)")
        case nil:
            let head = data.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
            throw WeightFileError(file: name, "not a safetensors, PyTorch zip, legacy PyTorch or .npy file"
                                  + (data.isEmpty ? " (the file is empty)" : " (it starts with bytes \(head))"))
        }
    }

    /// The tensor as float32 in row-major order; throws for a missing name.
    public func tensor(_ name: String) throws -> Tensor {
        guard let stored = tensors[name] else { throw WeightFileError(file: path, "no tensor named \(name)") }
        let count = stored.shape.reduce(1, *)
        let values = data.withUnsafeBytes { raw -> [Float] in
            let contiguous = stored.strides == Self.contiguousStrides(stored.shape)
            if contiguous {
                return Bytes.floats(raw, offset: stored.byteOffset, dtype: stored.dtype, count: count) { $0 }
            }
            let shape = stored.shape, strides = stored.strides
            return Bytes.floats(raw, offset: stored.byteOffset, dtype: stored.dtype, count: count) { flat in
                var rest = flat, index = 0
                for d in stride(from: shape.count - 1, through: 0, by: -1) {
                    index += (rest % shape[d]) * strides[d]
                    rest /= shape[d]
                }
                return index
            }
        }
        return try Tensor(shape: stored.shape.isEmpty ? [1] : stored.shape, data: values)
    }

    /// The file's bytes, mapped read-only (`mappedContents(ofFile:)`), or an error naming it.
    static func mapped(_ path: String) throws -> Data {
        do {
            return try mappedContents(ofFile: path)
        } catch {
            throw WeightFileError(file: path, "cannot read: \((error as NSError).localizedDescription)")
        }
    }

    static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        for d in stride(from: shape.count - 2, through: 0, by: -1) { strides[d] = strides[d + 1] * shape[d + 1] }
        return strides
    }
}

/// The file formats the engine reads, as recognised from their first bytes.
public enum WeightFormat: Sendable {
    case safetensors, pytorchZip, pytorchLegacy, npy

    public static func detect(_ data: Data) -> WeightFormat? {
        let head = [UInt8](data.prefix(9))
        if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) || head.starts(with: [0x50, 0x4B, 0x05, 0x06]) { return .pytorchZip }
        if head.starts(with: [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]) { return .npy }
        if PyTorchCheckpoint.isLegacy(data) { return .pytorchLegacy }
        // safetensors: an 8-byte little-endian header length, then the JSON header's opening brace.
        if head.count == 9, head[8] == UInt8(ascii: "{") { return .safetensors }
        return nil
    }
}
