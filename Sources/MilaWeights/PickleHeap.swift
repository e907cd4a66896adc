/// Index of a value in a `PickleHeap`.
typealias PickleRef = Int

/// The values of an unpickled stream, held flat: a container refers to its items by index, so
/// building, reading and freeing a value never recurses (a pickle nested a million deep is just
/// a long array) and reference cycles cost nothing.
struct PickleHeap {
    enum Value {
        case none
        case bool(Bool)
        case int(Int)
        /// An integer that does not fit 64 bits: its little-endian two's complement bytes.
        case bigInt([UInt8])
        case float(Double)
        case string(String)
        case bytes([UInt8])
        case tuple([PickleRef])
        case list(Int)          // index into `lists`
        case set(Int)           // index into `lists`
        case dict(Int)          // index into `dicts`
        case global(module: String, name: String)
        /// An instance of a class that is never constructed (index into `objects`).
        case object(Int)
        /// A persistent id `('storage', <storage type>, key, location, numel[, view])`.
        case storage(type: String, key: String, count: Int, viewOffset: Int)
        case tensor(PickledTensor)
    }

    /// Items given to a dict (or absorbed by an inert object): string keys are indexed, so a
    /// repeated key replaces its value in O(1) as Python's dict does.
    struct DictStore {
        var keys: [PickleRef] = []
        var values: [PickleRef] = []
        var stringIndex: [String: Int] = [:]
        /// A BUILD state given to the dict (an OrderedDict's `_metadata`), kept and not applied.
        var state: PickleRef?
    }

    /// What an inert object was given: the arguments of the call that would have built it, the
    /// items SETITEM(S) and APPEND(S) would have added, the BUILD state. Nothing is applied, but
    /// a reader can look at them (a yacs `CfgNode` reads like the dict it is).
    struct InertObject {
        var className: String
        var arguments: PickleRef?
        var items: Int           // index into `dicts`
        var elements: Int        // index into `lists`
        var state: PickleRef?
    }

    private(set) var values: [Value] = []
    var lists: [[PickleRef]] = []
    var dicts: [DictStore] = []
    var objects: [InertObject] = []

    mutating func add(_ value: Value) -> PickleRef {
        values.append(value)
        return values.count - 1
    }

    mutating func newList(_ items: [PickleRef] = []) -> PickleRef {
        lists.append(items)
        return add(.list(lists.count - 1))
    }

    mutating func newSet(_ items: [PickleRef] = []) -> PickleRef {
        lists.append(items)
        return add(.set(lists.count - 1))
    }

    mutating func newDict() -> PickleRef {
        dicts.append(DictStore())
        return add(.dict(dicts.count - 1))
    }

    mutating func newObject(_ className: String, arguments: PickleRef? = nil) -> PickleRef {
        dicts.append(DictStore())
        lists.append([])
        objects.append(InertObject(className: className, arguments: arguments, items: dicts.count - 1, elements: lists.count - 1))
        return add(.object(objects.count - 1))
    }

    subscript(_ ref: PickleRef) -> Value { values[ref] }

    mutating func setItem(dict index: Int, key: PickleRef, value: PickleRef) {
        if case let .string(name) = values[key] {
            if let i = dicts[index].stringIndex[name] {
                dicts[index].values[i] = value
                return
            }
            dicts[index].stringIndex[name] = dicts[index].keys.count
        }
        dicts[index].keys.append(key)
        dicts[index].values.append(value)
    }

    // MARK: reading values

    func typeName(_ ref: PickleRef) -> String {
        switch values[ref] {
        case .none: "None"
        case .bool: "bool"
        case .int, .bigInt: "int"
        case .float: "float"
        case .string: "str"
        case .bytes: "bytes"
        case .tuple: "tuple"
        case .list: "list"
        case .set: "set"
        case .dict: "dict"
        case let .global(module, name): "global \(module).\(name)"
        case let .object(i): "object of class \(objects[i].className) (never constructed)"
        case .storage: "storage"
        case .tensor: "tensor"
        }
    }

    /// The dict store of a dict, or the items an inert dict-like object (a yacs CfgNode) was given.
    func dictStore(_ ref: PickleRef) -> DictStore? {
        switch values[ref] {
        case let .dict(i): dicts[i]
        case let .object(i): dicts[objects[i].items]
        default: nil
        }
    }

    /// The (key, value) pairs of a dict (or dict-like inert object) whose keys are strings.
    func stringItems(_ ref: PickleRef) -> [(key: String, value: PickleRef)]? {
        guard let store = dictStore(ref) else { return nil }
        var items: [(key: String, value: PickleRef)] = []
        for (k, v) in zip(store.keys, store.values) {
            guard case let .string(s) = values[k] else { continue }
            items.append((s, v))
        }
        return items
    }

    func item(_ ref: PickleRef, _ key: String) -> PickleRef? {
        guard let store = dictStore(ref), let i = store.stringIndex[key] else { return nil }
        return store.values[i]
    }

    func string(_ ref: PickleRef) -> String? {
        if case let .string(s) = values[ref] { return s }
        return nil
    }

    func int(_ ref: PickleRef) -> Int? {
        switch values[ref] {
        case let .int(v): v
        case let .bool(b): b ? 1 : 0
        default: nil
        }
    }

    /// The items of a tuple, list or set.
    func sequence(_ ref: PickleRef) -> [PickleRef]? {
        switch values[ref] {
        case let .tuple(items): items
        case let .list(i), let .set(i): lists[i]
        default: nil
        }
    }

    func globalName(_ ref: PickleRef) -> String? {
        if case let .global(module, name) = values[ref] { return "\(module).\(name)" }
        return nil
    }
}

/// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`.
struct PickledTensor {
    let storageType: String
    let storageKey: String
    let storageCount: Int
    /// In elements, from the start of the storage (a legacy view's offset included).
    let offset: Int
    let shape: [Int]
    let strides: [Int]
}
