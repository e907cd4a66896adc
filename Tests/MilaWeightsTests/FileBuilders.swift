import Foundation

/// Builders of weight files for tests, malformed ones included.
enum FileBuilders {
    static func temporaryPath(_ name: String) -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mila-weights-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder.appendingPathComponent(name).path
    }

    static func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let path = temporaryPath(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    static func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }
    static func le16(_ v: Int) -> [UInt8] { (0..<2).map { UInt8((v >> (8 * $0)) & 0xFF) } }
    static func le64(_ v: Int) -> [UInt8] { (0..<8).map { UInt8((v >> (8 * $0)) & 0xFF) } }
    static func floats(_ values: [Float]) -> [UInt8] { values.flatMap { le32(Int($0.bitPattern)) } }

    /// safetensors bytes from a raw JSON header and data section.
    static func safetensors(header: String, data: [UInt8]) -> [UInt8] {
        let json = Array(header.utf8)
        return le64(json.count) + json + data
    }

    /// A zip archive of stored (uncompressed) entries, as torch.save writes them.
    static func zip(_ entries: [(name: String, bytes: [UInt8])], method: Int = 0) -> [UInt8] {
        var out: [UInt8] = [], central: [UInt8] = []
        for entry in entries {
            let name = Array(entry.name.utf8), offset = out.count
            out += le32(0x0403_4B50) + le16(20) + le16(0) + le16(method) + le16(0) + le16(0) + le32(0)
            out += le32(entry.bytes.count) + le32(entry.bytes.count) + le16(name.count) + le16(0) + name + entry.bytes
            central += le32(0x0201_4B50) + le16(20) + le16(20) + le16(0) + le16(method) + le16(0) + le16(0) + le32(0)
            central += le32(entry.bytes.count) + le32(entry.bytes.count) + le16(name.count) + le16(0) + le16(0)
            central += le16(0) + le16(0) + le32(0) + le32(offset) + name
        }
        let directoryOffset = out.count
        out += central
        out += le32(0x0605_4B50) + le16(0) + le16(0) + le16(entries.count) + le16(entries.count)
        out += le32(central.count) + le32(directoryOffset) + le16(0)
        return out
    }

    /// Pickle opcodes for the pieces of a torch state dict.
    enum Pickle {
        static func string(_ s: String) -> [UInt8] { [0x58] + le32(s.utf8.count) + Array(s.utf8) }
        static func global(_ module: String, _ name: String) -> [UInt8] { [0x63] + Array("\(module)\n\(name)\n".utf8) }
        static func int(_ v: Int) -> [UInt8] { [0x4A] + le32(v) }
        static func tuple(_ items: [[UInt8]]) -> [UInt8] { [0x28] + items.flatMap { $0 } + [0x74] }

        /// `rebuild(storage key, offset, size, stride, False, OrderedDict())` with a FloatStorage
        /// of `count` elements; `rebuild` defaults to torch._utils._rebuild_tensor_v2.
        static func tensor(key: String, count: Int, offset: Int = 0, shape: [Int], strides: [Int],
                           rebuild: (String, String) = ("torch._utils", "_rebuild_tensor_v2")) -> [UInt8] {
            let storage = tuple([string("storage"), global("torch", "FloatStorage"), string(key), string("cpu"), int(count)]) + [0x51]
            let hooks = global("collections", "OrderedDict") + [0x29, 0x52]
            return global(rebuild.0, rebuild.1)
                + tuple([storage, int(offset), tuple(shape.map(int)), tuple(strides.map(int)), [0x89], hooks]) + [0x52]
        }

        /// `{name: value, ...}` (protocol 2), optionally wrapped as `{"model": dict, "epoch": 3}`.
        static func dict(_ items: [(String, [UInt8])], underModel: Bool = false) -> [UInt8] {
            let entries: [UInt8] = items.flatMap { string($0.0) + $0.1 }
            let inner: [UInt8] = [0x7D, 0x28] + entries + [0x75]
            let wrapped: [UInt8] = [0x7D, 0x28] + string("model") + inner + string("epoch") + int(3) + [0x75]
            return [0x80, 0x02] + (underModel ? wrapped : inner) + [0x2E]
        }
    }

    /// A torch.save-style archive: `<top>/data.pkl` plus storages `<top>/data/<key>`.
    static func checkpoint(pickle: [UInt8], storages: [String: [Float]], top: String = "ckpt") -> [UInt8] {
        zip([("\(top)/data.pkl", pickle)] + storages.sorted { $0.key < $1.key }.map { ("\(top)/data/\($0.key)", floats($0.value)) }
            + [("\(top)/version", Array("3\n".utf8))])
    }
}
