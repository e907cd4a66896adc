import Foundation

/// A `torch.save` zip checkpoint: `<top>/data.pkl` unpickled without executing anything, the
/// state dict taken from its `model` entry, else its `state_dict` entry (mmdet / mmseg), else
/// the top-level dict (or `stateDictKey`), and each
/// tensor pointed at its storage entry `<top>/data/<key>` in the mapped file.
enum PyTorchCheckpoint {
    static func read(path: String, data: Data, stateDictKey: String?) throws -> WeightFile {
        let archive = try ZipArchive(path: path, data: data)
        guard let pickle = archive.entries.values.first(where: { $0.name.hasSuffix("/data.pkl") || $0.name == "data.pkl" }) else {
            throw WeightFileError(file: path, "zip archive has no data.pkl: not a PyTorch checkpoint")
        }
        let top = String(pickle.name.dropLast("data.pkl".count))
        var unpickler = Unpickler(file: path)
        let root = try data.withUnsafeBytes { raw in
            try unpickler.load(UnsafeRawBufferPointer(rebasing: raw[pickle.dataOffset..<(pickle.dataOffset + pickle.size)]))
        }
        guard case let .dict(rootDict) = root else {
            throw WeightFileError(file: path, "the checkpoint holds a \(root.typeName), not a dict of tensors")
        }
        let stateDict: PickleDict
        if let key = stateDictKey {
            guard case let .dict(d)? = rootDict.value(for: key) else {
                throw WeightFileError(file: path, "no state dict under key '\(key)' (keys: \(keyList(rootDict)))")
            }
            stateDict = d
        } else if case let .dict(d)? = rootDict.value(for: "model") {
            stateDict = d
        } else if case let .dict(d)? = rootDict.value(for: "state_dict") {
            stateDict = d  // mmdetection / mmsegmentation checkpoints
        } else {
            stateDict = rootDict
        }
        var tensors: [String: StoredTensor] = [:]
        for (key, value) in zip(stateDict.keys, stateDict.values) {
            guard case let .string(name) = key else { continue }
            guard case let .tensor(t) = value else {
                throw WeightFileError(file: path, "state dict entry \(name) is a \(value.typeName), not a tensor built by an allowed rebuild function")
            }
            guard let dtype = Unpickler.storageTypes[t.storageType] else {
                throw WeightFileError(file: path, "tensor \(name): unsupported storage type \(t.storageType)")
            }
            guard let entry = archive.entries["\(top)data/\(t.storageKey)"] else {
                throw WeightFileError(file: path, "tensor \(name): storage \(t.storageKey) is missing from the archive")
            }
            guard entry.size >= t.storageCount * dtype.byteSize else {
                throw WeightFileError(file: path, "tensor \(name): storage \(t.storageKey) holds \(entry.size) bytes, expected \(t.storageCount * dtype.byteSize)")
            }
            // The last element reached by (offset, shape, strides) must lie inside the storage.
            let last = t.offset + zip(t.shape, t.strides).reduce(0) { $0 + ($1.0 > 0 ? ($1.0 - 1) * $1.1 : 0) }
            guard t.offset >= 0, t.strides.allSatisfy({ $0 >= 0 }), t.shape.allSatisfy({ $0 >= 0 }),
                  t.shape.contains(0) || last < t.storageCount
            else { throw WeightFileError(file: path, "tensor \(name): offset and strides reach outside its storage of \(t.storageCount) elements") }
            tensors[name] = StoredTensor(name: name, dtype: dtype, shape: t.shape,
                                         byteOffset: entry.dataOffset + t.offset * dtype.byteSize, strides: t.strides)
        }
        guard !tensors.isEmpty else { throw WeightFileError(file: path, "the state dict holds no tensors (keys: \(keyList(rootDict)))") }
        return WeightFile(path: path, format: "pytorch", data: data, tensors: tensors, metadata: [:])
    }

    static func keyList(_ dict: PickleDict) -> String {
        dict.keys.prefix(12).map { if case let .string(s) = $0 { return s } else { return $0.typeName } }.joined(separator: ", ")
    }
}
