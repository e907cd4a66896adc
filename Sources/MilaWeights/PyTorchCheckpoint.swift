import Foundation

/// PyTorch checkpoints, in both formats `torch.save` writes, read without executing anything:
/// - the zip format (PyTorch >= 1.6): `<top>/data.pkl` and one entry `<top>/data/<key>` per storage;
/// - the legacy format (PyTorch <= 1.5, or `_use_new_zipfile_serialization=False`): five pickles
///   back to back (magic number, protocol version, system info, the object, the storage keys),
///   then each storage as an 8-byte element count and its raw bytes.
///
/// The state dict is the entry `stateDictKey` when given, else `model` (the MLLA training
/// script, DeiT/Swin-style trainers), else `state_dict` (mmcv / mmdet / mmseg, timm), else the
/// top-level dict. A leading `module.` (a DataParallel / DDP model) is removed when every name has it.
enum PyTorchCheckpoint {
    /// Where a storage's bytes are in the file and how many there are.
    typealias StorageLocation = (offset: Int, bytes: Int)

    static func read(path: String, data: Data, stateDictKey: String?) throws -> WeightFile {
        let archive = try ZipArchive(path: path, data: data)
        let pickles = archive.entries.values.filter { $0.name.hasSuffix("/data.pkl") || $0.name == "data.pkl" }
        guard let pickle = pickles.min(by: { $0.name.count < $1.name.count }) else {
            throw WeightFileError(file: path, "zip archive has no data.pkl: not a PyTorch checkpoint")
        }
        let top = String(pickle.name.dropLast("data.pkl".count))
        var unpickler = Unpickler(file: path)
        let root = try data.withUnsafeBytes { raw in
            try unpickler.load(UnsafeRawBufferPointer(rebasing: raw[pickle.dataOffset..<(pickle.dataOffset + pickle.size)])).value
        }
        let (tensors, metadata) = try stateDict(path: path, heap: unpickler.heap, root: root, stateDictKey: stateDictKey) { key in
            archive.entries["\(top)data/\(key)"].map { ($0.dataOffset, $0.size) }
        }
        return WeightFile(path: path, format: "pytorch", data: data, tensors: tensors, metadata: metadata)
    }

    // MARK: the legacy format

    /// The legacy format's magic number, 0x1950a86a20f9469cfc6c, as a little-endian integer.
    static let legacyMagic: [UInt8] = [0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]

    /// Whether `data` starts with a pickle of the legacy magic number (any protocol).
    static func isLegacy(_ data: Data) -> Bool {
        guard let first = data.first, first == 0x80 || first == UInt8(ascii: "L") else { return false }
        var unpickler = Unpickler(file: "", stream: "magic")
        return data.withUnsafeBytes { raw in
            // The magic pickle is at most a few dozen bytes; do not parse further than that.
            let head = UnsafeRawBufferPointer(rebasing: raw[0..<min(raw.count, 64)])
            guard let (value, _) = try? unpickler.load(head), case let .bigInt(digits) = unpickler.heap[value] else { return false }
            return digits == legacyMagic
        }
    }

    static func readLegacy(path: String, data: Data, stateDictKey: String?) throws -> WeightFile {
        func fail(_ message: String) -> WeightFileError { WeightFileError(file: path, "legacy PyTorch checkpoint: \(message)") }
        var unpickler = Unpickler(file: path, stream: "legacy PyTorch checkpoint")
        let (root, keys, storageStart) = try data.withUnsafeBytes { raw -> (PickleRef, [String], Int) in
            var (_, end) = try unpickler.load(raw, from: 0)                      // magic number
            let protocolVersion: PickleRef
            (protocolVersion, end) = try unpickler.load(raw, from: end)
            guard unpickler.heap.int(protocolVersion) == 1001 else {
                throw fail("protocol version \(unpickler.heap.typeName(protocolVersion)) is not 1001")
            }
            let systemInfo: PickleRef
            (systemInfo, end) = try unpickler.load(raw, from: end)
            if let little = unpickler.heap.item(systemInfo, "little_endian"), unpickler.heap.int(little) == 0 {
                throw fail("written on a big-endian machine; only little-endian checkpoints are read")
            }
            let root: PickleRef, keyList: PickleRef
            (root, end) = try unpickler.load(raw, from: end)
            (keyList, end) = try unpickler.load(raw, from: end)
            guard let items = unpickler.heap.sequence(keyList) else { throw fail("the storage key list is a \(unpickler.heap.typeName(keyList))") }
            let keys = try items.map { ref -> String in
                guard let key = unpickler.heap.string(ref) else { throw fail("a storage key is a \(unpickler.heap.typeName(ref))") }
                return key
            }
            return (root, keys, end)
        }
        // Element sizes of the storages, from the tensors' persistent ids.
        var elementSize: [String: Int] = [:]
        for value in unpickler.heap.values {
            if case let .storage(type, key, _, _) = value, let dtype = Unpickler.storageTypes[type] { elementSize[key] = dtype.byteSize }
        }
        var locations: [String: StorageLocation] = [:]
        var p = storageStart
        for key in keys {
            guard let size = elementSize[key] else { throw fail("storage \(key) is listed but no tensor uses it (or its type is unknown)") }
            guard locations[key] == nil else { throw fail("storage \(key) is listed twice") }
            guard data.count - p >= 8 else { throw fail("storage \(key): the file ends before its element count at byte \(p)") }
            let count = data.withUnsafeBytes { Bytes.uint64($0, p) }
            guard let n = Checked.int(count), let bytes = Checked.multiply(n, size), bytes <= data.count - p - 8 else {
                throw fail("storage \(key): \(count) elements of \(size) bytes at byte \(p + 8) run past the end of the file (\(data.count) bytes)")
            }
            locations[key] = (p + 8, bytes)
            p += 8 + bytes
        }
        let (tensors, metadata) = try stateDict(path: path, heap: unpickler.heap, root: root, stateDictKey: stateDictKey) { locations[$0] }
        return WeightFile(path: path, format: "pytorch-legacy", data: data, tensors: tensors, metadata: metadata)
    }

    // MARK: the state dict

    /// Entries that may hold the state dict, in the order they are tried without `--state-dict`.
    static let defaultStateDictKeys = ["model", "state_dict"]

    static func stateDict(path: String, heap: PickleHeap, root: PickleRef, stateDictKey: String?,
                          storage: (String) -> StorageLocation?) throws -> ([String: StoredTensor], [String: String]) {
        guard let rootItems = heap.stringItems(root) else {
            throw WeightFileError(file: path, "the checkpoint holds a \(heap.typeName(root)), not a dict of tensors")
        }
        func holdsTensors(_ ref: PickleRef) -> Bool {
            heap.stringItems(ref)?.contains { if case .tensor = heap[$0.value] { return true } else { return false } } ?? false
        }
        func isLeaf(_ ref: PickleRef) -> Bool {
            switch heap[ref] {
            case .dict, .list, .set, .tuple: return false
            case let .object(i): return heap.dicts[heap.objects[i].items].keys.isEmpty
            default: return true
            }
        }
        let candidates = rootItems.filter { holdsTensors($0.value) }.map(\.key)
        let topKeys = rootItems.prefix(12).map(\.key).joined(separator: ", ") + (rootItems.count > 12 ? ", ..." : "")
        let chosen: PickleRef, chosenName: String
        if let key = stateDictKey {
            guard let ref = heap.item(root, key), holdsTensors(ref) else {
                let what = heap.item(root, key).map { "it is a \(heap.typeName($0))" } ?? "there is no such entry"
                throw WeightFileError(file: path, "no state dict under key '\(key)' (\(what)); entries holding tensors: "
                                      + (candidates.isEmpty ? "none" : candidates.joined(separator: ", ")) + "; top-level keys: \(topKeys)")
            }
            (chosen, chosenName) = (ref, key)
        } else if let key = defaultStateDictKeys.first(where: { heap.item(root, $0).map(holdsTensors) ?? false }) {
            (chosen, chosenName) = (heap.item(root, key)!, key)
        } else if holdsTensors(root) || (!defaultStateDictKeys.contains { heap.item(root, $0) != nil } && rootItems.allSatisfy { isLeaf($0.value) }) {
            // The top level is the state dict (a bare `torch.save(model.state_dict())`); one whose
            // entries are all leaves is taken as one too, so an entry that is not a tensor is named.
            (chosen, chosenName) = (root, "")
        } else {
            if let key = defaultStateDictKeys.first(where: { heap.item(root, $0) != nil }), let ref = heap.item(root, key) {
                throw WeightFileError(file: path, "the checkpoint's '\(key)' entry is a \(heap.typeName(ref)), not a state dict of tensors"
                                      + " (a whole pickled module cannot be read; save its state_dict())")
            }
            throw WeightFileError(file: path, "the checkpoint holds no state dict of tensors"
                                  + (candidates.isEmpty ? "" : " (entries holding tensors: \(candidates.joined(separator: ", ")); pick one with --state-dict)")
                                  + "; top-level keys: \(topKeys)")
        }
        let entries = heap.stringItems(chosen) ?? []
        let where_ = chosenName.isEmpty ? "the state dict" : "state dict '\(chosenName)'"
        // DataParallel / DistributedDataParallel prefix every name with `module.`.
        let prefix = "module."
        let strip = !entries.isEmpty && entries.allSatisfy { $0.key.hasPrefix(prefix) }
        var tensors: [String: StoredTensor] = [:]
        for (key, value) in entries {
            let name = strip ? String(key.dropFirst(prefix.count)) : key
            guard case let .tensor(t) = heap[value] else {
                throw WeightFileError(file: path, "\(where_) entry \(key) is a \(heap.typeName(value)), not a tensor built by an allowed rebuild function")
            }
            tensors[name] = try stored(t, name: name, path: path, storage: storage)
        }
        var metadata: [String: String] = ["pytorch.state_dict": chosenName.isEmpty ? "<top level>" : chosenName]
        if strip { metadata["pytorch.stripped_prefix"] = prefix }
        if let config = heap.item(root, "config"), let json = trainingConfig(heap: heap, config) { metadata["mila.config"] = json }
        // mmcv / mmseg / mmcls record the class names in meta.CLASSES.
        let meta = heap.item(root, "meta")
        if let classes = meta.flatMap({ heap.item($0, "CLASSES") }).flatMap({ heap.sequence($0) }) {
            let names = classes.compactMap { heap.string($0) }
            if names.count == classes.count, !names.isEmpty,
               let json = try? JSONSerialization.data(withJSONObject: names) { metadata["pytorch.classes"] = String(decoding: json, as: UTF8.self) }
        }
        // mmseg records the palette in meta.PALETTE ([r, g, b] per class) and the run's config
        // as Python source text in meta.config.
        if let rows = meta.flatMap({ heap.item($0, "PALETTE") }).flatMap({ heap.sequence($0) }) {
            let palette = rows.compactMap { row in heap.sequence(row).map { $0.compactMap { heap.int($0) } } }
            if palette.count == rows.count, palette.allSatisfy({ $0.count == 3 }),
               let json = try? JSONSerialization.data(withJSONObject: palette) { metadata["pytorch.palette"] = String(decoding: json, as: UTF8.self) }
        }
        if metadata["mila.config"] == nil, let text = meta.flatMap({ heap.item($0, "config") }).flatMap({ heap.string($0) }),
           let json = MMConfigText.segmentationConfig(text) {
            metadata["mila.config"] = json
        }
        return (tensors, metadata)
    }

    /// The model configuration of an MLLA training run, from the yacs `CfgNode` the authors'
    /// training script stores under `config` (MODEL.MLLA.EMBED_DIM / DEPTHS / NUM_HEADS /
    /// MLP_RATIO, MODEL.NUM_CLASSES, DATA.IMG_SIZE, TEST.CROP: their test transform resizes to
    /// 256/224 of the size and center-crops when CROP is set), as `mila.config` JSON; nil when the
    /// entry does not describe an MLLA model. Read from the inert object's items: nothing is run.
    static func trainingConfig(heap: PickleHeap, _ config: PickleRef) -> String? {
        func node(_ ref: PickleRef?, _ path: String) -> PickleRef? {
            var current = ref
            for part in path.split(separator: ".") { current = current.flatMap { heap.item($0, String(part)) } }
            return current
        }
        func number(_ ref: PickleRef?) -> Double? {
            guard let ref else { return nil }
            if case let .float(v) = heap[ref] { return v }
            return heap.int(ref).map(Double.init)
        }
        func ints(_ ref: PickleRef?) -> [Int]? {
            guard let items = ref.flatMap({ heap.sequence($0) }) else { return nil }
            let values = items.compactMap { heap.int($0) }
            return values.count == items.count && !values.isEmpty ? values : nil
        }
        let mlla = node(config, "MODEL.MLLA")
        guard let embed = node(mlla, "EMBED_DIM").flatMap({ heap.int($0) }), let depths = ints(node(mlla, "DEPTHS")),
              let heads = ints(node(mlla, "NUM_HEADS")) else { return nil }
        var object: [String: Any] = ["embed_dim": embed, "depths": depths, "num_heads": heads]
        if let ratio = number(node(mlla, "MLP_RATIO")) { object["mlp_ratio"] = ratio }
        if let classes = node(config, "MODEL.NUM_CLASSES").flatMap({ heap.int($0) }) { object["num_classes"] = classes }
        if let size = node(config, "DATA.IMG_SIZE") {
            if let s = heap.int(size) { object["image_size"] = [s, s] } else if let hw = ints(size), hw.count == 2 { object["image_size"] = hw }
        }
        if let crop = node(config, "TEST.CROP").flatMap({ heap.int($0) }) { object["crop_fraction"] = crop != 0 ? 224.0 / 256.0 : 1.0 }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    /// A state-dict tensor pointed at its bytes, after checking that every element it reaches lies
    /// inside its storage and the storage inside the file.
    static func stored(_ t: PickledTensor, name: String, path: String, storage: (String) -> StorageLocation?) throws -> StoredTensor {
        func fail(_ message: String) -> WeightFileError { WeightFileError(file: path, "tensor \(name): \(message)") }
        guard let dtype = Unpickler.storageTypes[t.storageType] else { throw fail("unsupported storage type \(t.storageType)") }
        guard let location = storage(t.storageKey) else { throw fail("storage \(t.storageKey) is missing from the file") }
        guard let needed = Checked.multiply(t.storageCount, dtype.byteSize), location.bytes >= needed else {
            throw fail("storage \(t.storageKey) holds \(location.bytes) bytes, expected \(t.storageCount) elements of \(dtype.byteSize) bytes")
        }
        guard t.offset >= 0, t.offset <= t.storageCount, t.shape.allSatisfy({ $0 >= 0 }), t.strides.allSatisfy({ $0 >= 0 }), let count = Checked.product(t.shape) else {
            throw fail("negative or overflowing size \(t.shape), stride \(t.strides) or offset \(t.offset)")
        }
        if count > 0 {
            // The last element reached by (offset, shape, strides) must lie inside the storage.
            var last = t.offset
            for (size, stride) in zip(t.shape, t.strides) {
                guard let step = Checked.multiply(size - 1, stride), let next = Checked.add(last, step) else {
                    throw fail("offset and strides overflow")
                }
                last = next
            }
            guard last < t.storageCount else {
                throw fail("offset \(t.offset) and strides \(t.strides) reach element \(last), outside its storage of \(t.storageCount) elements")
            }
            // A broadcast view (stride 0) would expand a small storage into a huge tensor.
            guard count <= t.storageCount else {
                throw fail("shape \(t.shape) has \(count) elements but its storage only \(t.storageCount) (a broadcast view)")
            }
        }
        return StoredTensor(name: name, dtype: dtype, shape: t.shape, byteOffset: location.offset + t.offset * dtype.byteSize, strides: t.strides)
    }
}
