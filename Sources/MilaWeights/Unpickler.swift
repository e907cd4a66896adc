import Foundation

/// A value of a pickle stream, as far as a weight reader needs it. Nothing is ever executed or
/// imported: globals are names, and calling one only builds a value when it is on the allow-list
/// (see `Unpickler.reduce`); everything else stays an inert `.object`.
indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    case global(module: String, name: String)
    /// The result of calling a global that is not allow-listed (never called).
    case object(callable: String)
    /// `('storage', <storage type>, key, location, numel)` from BINPERSID.
    case storage(type: String, key: String, count: Int)
    case tensor(PickledTensor)

    var typeName: String {
        switch self {
        case .none: "None"
        case .bool: "bool"
        case .int: "int"
        case .float: "float"
        case .string: "str"
        case .bytes: "bytes"
        case .tuple: "tuple"
        case .list: "list"
        case .dict: "dict"
        case let .global(module, name): "global \(module).\(name)"
        case let .object(callable): "object built by \(callable)"
        case .storage: "storage"
        case .tensor: "tensor"
        }
    }
}

final class PickleList { var items: [PickleValue] = [] }

final class PickleDict {
    var keys: [PickleValue] = []
    var values: [PickleValue] = []
    func set(_ key: PickleValue, _ value: PickleValue) {
        if case let .string(name) = key, let i = keys.firstIndex(where: { if case let .string(k) = $0 { return k == name }; return false }) {
            values[i] = value
        } else {
            keys.append(key)
            values.append(value)
        }
    }
    func value(for name: String) -> PickleValue? {
        for (k, v) in zip(keys, values) { if case let .string(s) = k, s == name { return v } }
        return nil
    }
}

/// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`.
struct PickledTensor {
    let storageType: String
    let storageKey: String
    let storageCount: Int
    let offset: Int
    let shape: [Int]
    let strides: [Int]
}

/// A protocol 2-5 unpickler for `data.pkl` that builds plain values and executes nothing.
struct Unpickler {
    let file: String
    private var stack: [PickleValue] = []
    private var metaStack: [[PickleValue]] = []
    private var memo: [Int: PickleValue] = [:]

    init(file: String) { self.file = file }

    /// Globals whose call builds a value; any other global is kept as an inert placeholder.
    static let allowed: Set<String> = [
        "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
    ]
    static let storageTypes: [String: StorageDType] = [
        "torch.FloatStorage": .float32, "torch.HalfStorage": .float16, "torch.BFloat16Storage": .bfloat16,
        "torch.LongStorage": .int64,
    ]

    private func fail(_ message: String) -> WeightFileError { WeightFileError(file: file, "data.pkl: \(message)") }

    mutating func load(_ bytes: UnsafeRawBufferPointer) throws -> PickleValue {
        var p = 0
        func need(_ n: Int) throws {
            guard p + n <= bytes.count else { throw fail("truncated pickle at byte \(p)") }
        }
        func u8() throws -> Int { try need(1); defer { p += 1 }; return Int(bytes[p]) }
        func u16() throws -> Int { try need(2); defer { p += 2 }; return Int(Bytes.uint16(bytes, p)) }
        func u32() throws -> Int { try need(4); defer { p += 4 }; return Int(Bytes.uint32(bytes, p)) }
        func u64() throws -> Int {
            try need(8); defer { p += 8 }
            let v = Bytes.uint64(bytes, p)
            guard v <= UInt64(Int.max) else { throw fail("length \(v) too large") }
            return Int(v)
        }
        func raw(_ n: Int) throws -> [UInt8] { try need(n); defer { p += n }; return Array(bytes[p..<(p + n)]) }
        func line() throws -> String {
            var end = p
            while end < bytes.count, bytes[end] != 0x0A { end += 1 }
            guard end < bytes.count else { throw fail("truncated pickle (unterminated line)") }
            defer { p = end + 1 }
            return String(decoding: bytes[p..<end], as: UTF8.self)
        }
        func utf8(_ n: Int) throws -> PickleValue { .string(String(decoding: try raw(n), as: UTF8.self)) }

        while true {
            let opcode = try u8()
            switch opcode {
            case 0x80: _ = try u8()                                   // PROTO
            case 0x95: _ = try u64()                                  // FRAME
            case 0x2E:                                                // STOP
                guard let top = stack.popLast() else { throw fail("STOP with an empty stack") }
                return top
            case 0x7D: stack.append(.dict(PickleDict()))              // EMPTY_DICT
            case 0x5D: stack.append(.list(PickleList()))              // EMPTY_LIST
            case 0x29: stack.append(.tuple([]))                       // EMPTY_TUPLE
            case 0x8F: stack.append(.object(callable: "set"))         // EMPTY_SET
            case 0x28: metaStack.append(stack); stack = []            // MARK
            case 0x74: stack.append(.tuple(try popMark()))            // TUPLE
            case 0x85: let a = try pop(); stack.append(.tuple([a]))   // TUPLE1
            case 0x86: let b = try pop(), a = try pop(); stack.append(.tuple([a, b]))
            case 0x87: let c = try pop(), b = try pop(), a = try pop(); stack.append(.tuple([a, b, c]))
            case 0x6C:                                                // LIST
                let list = PickleList(); list.items = try popMark(); stack.append(.list(list))
            case 0x64:                                                // DICT
                let items = try popMark(), dict = PickleDict()
                guard items.count % 2 == 0 else { throw fail("DICT with an odd number of items") }
                for i in stride(from: 0, to: items.count, by: 2) { dict.set(items[i], items[i + 1]) }
                stack.append(.dict(dict))
            case 0x58: stack.append(try utf8(try u32()))              // BINUNICODE
            case 0x8C: stack.append(try utf8(try u8()))               // SHORT_BINUNICODE
            case 0x8D: stack.append(try utf8(try u64()))              // BINUNICODE8
            case 0x43: stack.append(.bytes(try raw(try u8())))        // SHORT_BINBYTES
            case 0x42: stack.append(.bytes(try raw(try u32())))       // BINBYTES
            case 0x4A: stack.append(.int(Int(Int32(bitPattern: UInt32(try u32())))))  // BININT
            case 0x4B: stack.append(.int(try u8()))                   // BININT1
            case 0x4D: stack.append(.int(try u16()))                  // BININT2
            case 0x8A:                                                // LONG1
                let n = try u8(), digits = try raw(n)
                guard n <= 8 else { throw fail("LONG1 of \(n) bytes is too large") }
                var v: Int64 = 0
                for (i, d) in digits.enumerated() { v |= Int64(d) << (8 * Int64(i)) }
                if n > 0, n < 8, digits[n - 1] & 0x80 != 0 { v -= Int64(1) << (8 * Int64(n)) }
                stack.append(.int(Int(v)))
            case 0x47:                                                // BINFLOAT (big-endian)
                let b = try raw(8)
                stack.append(.float(Double(bitPattern: b.reduce(UInt64(0)) { $0 << 8 | UInt64($1) })))
            case 0x88: stack.append(.bool(true))                      // NEWTRUE
            case 0x89: stack.append(.bool(false))                     // NEWFALSE
            case 0x4E: stack.append(.none)                            // NONE
            case 0x63:                                                // GLOBAL
                let module = try line(), name = try line()
                stack.append(.global(module: module, name: name))
            case 0x93:                                                // STACK_GLOBAL
                guard case let .string(name) = try pop(), case let .string(module) = try pop() else {
                    throw fail("STACK_GLOBAL needs two strings")
                }
                stack.append(.global(module: module, name: name))
            case 0x52:                                                // REDUCE
                let args = try pop(), callable = try pop()
                stack.append(try reduce(callable, args))
            case 0x81:                                                // NEWOBJ
                _ = try pop()
                let cls = try pop()
                stack.append(.object(callable: Self.name(of: cls)))
            case 0x62:                                                // BUILD: state is ignored
                _ = try pop()
                guard !stack.isEmpty else { throw fail("BUILD with an empty stack") }
            case 0x51:                                                // BINPERSID
                stack.append(try persistent(try pop()))
            case 0x73:                                                // SETITEM
                let value = try pop(), key = try pop()
                guard case let .dict(dict) = try top() else { throw fail("SETITEM on a non-dict") }
                dict.set(key, value)
            case 0x75:                                                // SETITEMS
                let items = try popMark()
                guard items.count % 2 == 0 else { throw fail("SETITEMS with an odd number of items") }
                if case let .dict(dict) = try top() {
                    for i in stride(from: 0, to: items.count, by: 2) { dict.set(items[i], items[i + 1]) }
                }
            case 0x61:                                                // APPEND
                let value = try pop()
                if case let .list(list) = try top() { list.items.append(value) }
            case 0x65:                                                // APPENDS
                let items = try popMark()
                if case let .list(list) = try top() { list.items += items }
            case 0x90:                                                // ADDITEMS (sets stay inert)
                _ = try popMark()
            case 0x71: memo[try u8()] = try top()                     // BINPUT
            case 0x72: memo[try u32()] = try top()                    // LONG_BINPUT
            case 0x94: memo[memo.count] = try top()                   // MEMOIZE
            case 0x68, 0x6A:                                          // BINGET, LONG_BINGET
                let index = opcode == 0x68 ? try u8() : try u32()
                guard let value = memo[index] else { throw fail("memo entry \(index) is missing") }
                stack.append(value)
            case 0x30: _ = try pop()                                  // POP
            case 0x31: _ = try popMark()                              // POP_MARK
            case 0x32: stack.append(try top())                        // DUP
            default:
                throw fail(String(format: "unsupported pickle opcode 0x%02X at byte %d", opcode, p - 1))
            }
        }
    }

    private mutating func pop() throws -> PickleValue {
        guard let value = stack.popLast() else { throw fail("pickle stack underflow") }
        return value
    }

    private func top() throws -> PickleValue {
        guard let value = stack.last else { throw fail("pickle stack underflow") }
        return value
    }

    private mutating func popMark() throws -> [PickleValue] {
        guard let previous = metaStack.popLast() else { throw fail("pickle MARK missing") }
        let items = stack
        stack = previous
        return items
    }

    static func name(of value: PickleValue) -> String {
        if case let .global(module, name) = value { return "\(module).\(name)" }
        return value.typeName
    }

    private func persistent(_ id: PickleValue) throws -> PickleValue {
        guard case let .tuple(parts) = id, parts.count >= 5, case .string("storage") = parts[0],
              case let .string(key) = parts[2], case let .int(count) = parts[4]
        else { throw fail("unsupported persistent id (not a torch storage)") }
        return .storage(type: Self.name(of: parts[1]), key: key, count: count)
    }

    /// Calls `callable` only when it is allow-listed; anything else becomes an inert object.
    private func reduce(_ callable: PickleValue, _ args: PickleValue) throws -> PickleValue {
        let name = Self.name(of: callable)
        guard Self.allowed.contains(name), case let .tuple(arguments) = args else { return .object(callable: name) }
        switch name {
        case "collections.OrderedDict":
            return .dict(PickleDict())
        case "torch._utils._rebuild_parameter":
            guard let first = arguments.first else { throw fail("_rebuild_parameter without arguments") }
            return first
        default:  // _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])
            guard arguments.count >= 4, case let .storage(type, key, count) = arguments[0], case let .int(offset) = arguments[1],
                  case let .tuple(sizeValues) = arguments[2], case let .tuple(strideValues) = arguments[3]
            else { throw fail("malformed _rebuild_tensor_v2 arguments") }
            let shape = sizeValues.compactMap { if case let .int(v) = $0 { return v } else { return nil } }
            let strides = strideValues.compactMap { if case let .int(v) = $0 { return v } else { return nil } }
            guard shape.count == sizeValues.count, strides.count == strideValues.count, shape.count == strides.count else {
                throw fail("malformed tensor size or stride")
            }
            return .tensor(PickledTensor(storageType: type, storageKey: key, storageCount: count, offset: offset,
                                         shape: shape, strides: strides))
        }
    }
}
