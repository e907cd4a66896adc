import Foundation

/// A pickle reader (protocols 0 to 5) that builds plain values and executes nothing.
///
/// Globals are names. Calling one (REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ) builds a value only
/// for the allow-list in `reduce`, each implemented here as a pure function of its arguments
/// (an OrderedDict, a tensor view of a storage, a `torch.Size`, a numpy scalar, `bytes` from
/// `_codecs.encode`); every other call yields an inert object that records its class name and
/// absorbs the items, elements and state a pickle gives it, so a training checkpoint's yacs
/// `CfgNode`, `argparse.Namespace` or optimizer state loads without running any of it.
///
/// The reader has no recursion: values live in a flat `PickleHeap`. Several pickles may be read
/// in turn into one heap (the legacy checkpoint format is five pickles back to back).
struct Unpickler {
    let file: String
    /// Names the stream in errors ("data.pkl").
    let stream: String
    private(set) var heap = PickleHeap()
    private var stack: [PickleRef] = []
    /// Stack heights at each open MARK.
    private var marks: [Int] = []
    private var memo: [Int: PickleRef] = [:]

    /// Python refuses to parse integers of more than 4300 decimal digits (`sys.int_info`); so do we.
    static let maxDecimalDigits = 4300
    /// At most this many values (about 1 GB of heap): a real checkpoint's pickle builds thousands,
    /// a hostile one of empty dicts would build one per byte.
    static let maxValues = 10_000_000

    init(file: String, stream: String = "data.pkl") {
        self.file = file
        self.stream = stream
    }

    /// Storage globals and the element types they hold.
    static let storageTypes: [String: StorageDType] = [
        "torch.FloatStorage": .float32, "torch.HalfStorage": .float16, "torch.BFloat16Storage": .bfloat16,
        "torch.DoubleStorage": .float64, "torch.LongStorage": .int64, "torch.IntStorage": .int32,
        "torch.ShortStorage": .int16, "torch.CharStorage": .int8, "torch.ByteStorage": .uint8, "torch.BoolStorage": .bool,
    ]

    func fail(_ message: String) -> WeightFileError { WeightFileError(file: file, "\(stream): \(message)") }

    /// Reads one pickle starting at byte `start` of `bytes`; returns its value and the offset just
    /// past its STOP. The memo is the stream's own; the heap is shared with earlier calls.
    mutating func load(_ bytes: UnsafeRawBufferPointer, from start: Int = 0) throws -> (value: PickleRef, end: Int) {
        stack = []
        marks = []
        memo = [:]
        var p = start
        func need(_ n: Int) throws {
            guard n >= 0, n <= bytes.count - p else { throw fail("truncated pickle at byte \(p) (needs \(n) more bytes)") }
        }
        func u8() throws -> Int { try need(1); defer { p += 1 }; return Int(bytes[p]) }
        func u16() throws -> Int { try need(2); defer { p += 2 }; return Int(Bytes.uint16(bytes, p)) }
        func u32() throws -> Int { try need(4); defer { p += 4 }; return Int(Bytes.uint32(bytes, p)) }
        func u64() throws -> Int {
            try need(8); defer { p += 8 }
            let v = Bytes.uint64(bytes, p)
            guard v <= UInt64(Int.max) else { throw fail("length \(v) at byte \(p) is too large") }
            return Int(v)
        }
        func raw(_ n: Int) throws -> [UInt8] { try need(n); defer { p += n }; return Array(bytes[p..<(p + n)]) }
        func line() throws -> [UInt8] {
            var end = p
            while end < bytes.count, bytes[end] != 0x0A { end += 1 }
            guard end < bytes.count else { throw fail("truncated pickle at byte \(p) (a line without its newline)") }
            defer { p = end + 1 }
            return Array(bytes[p..<end])
        }
        func text<S: Sequence>(_ b: S) -> String where S.Element == UInt8 { String(decoding: Array(b), as: UTF8.self) }
        func lineInt(_ what: String) throws -> Int {
            let l = try line()
            guard let v = Int(text(l)) else { throw fail("\(what) is not an integer: '\(text(l.prefix(40)))'") }
            return v
        }
        func push(_ value: PickleHeap.Value) { stack.append(heap.add(value)) }
        func pushString(_ b: [UInt8]) { push(.string(text(b))) }

        while true {
            let at = p
            guard heap.values.count <= Self.maxValues else {
                throw fail("the pickle builds more than \(Self.maxValues) values (at byte \(at)); no checkpoint needs that many")
            }
            let opcode = try u8()
            switch opcode {
            case 0x80: _ = try u8()                                             // PROTO
            case 0x95: _ = try u64()                                            // FRAME (frames need no handling)
            case 0x2E:                                                          // STOP
                guard marks.isEmpty else { throw fail("STOP at byte \(at) with a MARK still open") }
                return (try pop(at), p)
            case 0x28: marks.append(stack.count)                                // MARK
            case 0x30: _ = try pop(at)                                          // POP
            case 0x31: _ = try popMark(at)                                      // POP_MARK
            case 0x32: stack.append(try top(at))                                // DUP

            // Constants and numbers.
            case 0x4E: push(.none)                                              // NONE
            case 0x88: push(.bool(true))                                        // NEWTRUE
            case 0x89: push(.bool(false))                                       // NEWFALSE
            case 0x4A: push(.int(Int(Int32(bitPattern: UInt32(try u32())))))   // BININT
            case 0x4B: push(.int(try u8()))                                     // BININT1
            case 0x4D: push(.int(try u16()))                                    // BININT2
            case 0x49:                                                          // INT (protocol 0; I01/I00 are bools)
                let l = text(try line())
                if l == "01" { push(.bool(true)) } else if l == "00" { push(.bool(false)) } else {
                    guard let v = Int(l) else { throw fail("INT at byte \(at) is not an integer: '\(l.prefix(40))'") }
                    push(.int(v))
                }
            case 0x4C:                                                          // LONG (protocol 0: digits, then L)
                var l = text(try line())
                if l.hasSuffix("L") { l.removeLast() }
                push(try Self.integer(decimal: l) ?? { throw fail("LONG at byte \(at) is not an integer: '\(l.prefix(40))'") }())
            case 0x8A: push(Self.integer(littleEndian: try raw(try u8())))      // LONG1
            case 0x8B:                                                          // LONG4
                let n = Int(Int32(bitPattern: UInt32(try u32())))
                guard n >= 0 else { throw fail("LONG4 at byte \(at) has a negative length") }
                push(Self.integer(littleEndian: try raw(n)))
            case 0x47:                                                          // BINFLOAT (big-endian)
                let b = try raw(8)
                push(.float(Double(bitPattern: b.reduce(UInt64(0)) { $0 << 8 | UInt64($1) })))
            case 0x46:                                                          // FLOAT (protocol 0 text)
                let l = text(try line())
                guard let v = Double(l) else { throw fail("FLOAT at byte \(at) is not a number: '\(l.prefix(40))'") }
                push(.float(v))

            // Strings and bytes.
            case 0x58: pushString(try raw(try u32()))                           // BINUNICODE
            case 0x8C: pushString(try raw(try u8()))                            // SHORT_BINUNICODE
            case 0x8D: pushString(try raw(try u64()))                           // BINUNICODE8
            case 0x56: push(.string(Self.rawUnicodeEscape(try line())))         // UNICODE (protocol 0)
            case 0x53:                                                          // STRING (protocol 0: a quoted repr)
                guard let s = Self.quotedString(try line()) else { throw fail("STRING at byte \(at) is not a quoted string") }
                push(.string(s))
            case 0x54:                                                          // BINSTRING (Python 2 str)
                let n = Int(Int32(bitPattern: UInt32(try u32())))
                guard n >= 0 else { throw fail("BINSTRING at byte \(at) has a negative length") }
                push(.string(Self.latin1(try raw(n))))
            case 0x55: push(.string(Self.latin1(try raw(try u8()))))            // SHORT_BINSTRING
            case 0x43: push(.bytes(try raw(try u8())))                          // SHORT_BINBYTES
            case 0x42: push(.bytes(try raw(try u32())))                         // BINBYTES
            case 0x8E, 0x96: push(.bytes(try raw(try u64())))                   // BINBYTES8, BYTEARRAY8
            case 0x97: throw fail("NEXT_BUFFER at byte \(at): the pickle refers to out-of-band buffers, which a file cannot carry")
            case 0x98: _ = try top(at)                                          // READONLY_BUFFER: no effect on a value

            // Containers.
            case 0x29: push(.tuple([]))                                         // EMPTY_TUPLE
            case 0x74: push(.tuple(try popMark(at)))                            // TUPLE
            case 0x85: let a = try pop(at); push(.tuple([a]))                   // TUPLE1
            case 0x86: let b = try pop(at), a = try pop(at); push(.tuple([a, b]))
            case 0x87: let c = try pop(at), b = try pop(at), a = try pop(at); push(.tuple([a, b, c]))
            case 0x5D: stack.append(heap.newList())                             // EMPTY_LIST
            case 0x6C: stack.append(heap.newList(try popMark(at)))              // LIST
            case 0x7D: stack.append(heap.newDict())                             // EMPTY_DICT
            case 0x64:                                                          // DICT
                let items = try popMark(at)
                guard items.count % 2 == 0 else { throw fail("DICT at byte \(at) with an odd number of items") }
                let dict = heap.newDict()
                try setItems(on: dict, items, at)
                stack.append(dict)
            case 0x8F: stack.append(heap.newSet())                              // EMPTY_SET
            case 0x91: stack.append(heap.newSet(try popMark(at)))               // FROZENSET
            case 0x73:                                                          // SETITEM
                let value = try pop(at), key = try pop(at)
                try setItems(on: try top(at), [key, value], at)
            case 0x75:                                                          // SETITEMS
                let items = try popMark(at)
                guard items.count % 2 == 0 else { throw fail("SETITEMS at byte \(at) with an odd number of items") }
                try setItems(on: try top(at), items, at)
            case 0x61: let value = try pop(at); try append(to: try top(at), [value], "APPEND", at)
            case 0x65: let items = try popMark(at); try append(to: try top(at), items, "APPENDS", at)
            case 0x90: let items = try popMark(at); try append(to: try top(at), items, "ADDITEMS", at)

            // Memo.
            case 0x71: memo[try u8()] = try top(at)                             // BINPUT
            case 0x72: memo[try u32()] = try top(at)                            // LONG_BINPUT
            case 0x70: memo[try lineInt("PUT index")] = try top(at)             // PUT
            case 0x94: memo[memo.count] = try top(at)                           // MEMOIZE
            case 0x68, 0x6A, 0x67:                                              // BINGET, LONG_BINGET, GET
                let index = opcode == 0x68 ? try u8() : opcode == 0x6A ? try u32() : try lineInt("GET index")
                guard let value = memo[index] else {
                    throw fail("memo index \(index) at byte \(at) was never stored (the memo holds \(memo.count) entries)")
                }
                stack.append(value)

            // Globals, calls and objects (nothing is imported or called; see `reduce`).
            case 0x63:                                                          // GLOBAL
                let module = text(try line()), name = text(try line())
                push(.global(module: module, name: name))
            case 0x93:                                                          // STACK_GLOBAL
                let nameRef = try pop(at), moduleRef = try pop(at)
                guard let name = heap.string(nameRef), let module = heap.string(moduleRef) else {
                    throw fail("STACK_GLOBAL at byte \(at) needs two strings")
                }
                push(.global(module: module, name: name))
            case 0x82, 0x83, 0x84:                                              // EXT1, EXT2, EXT4
                let code = opcode == 0x82 ? try u8() : opcode == 0x83 ? try u16() : try u32()
                push(.global(module: "copyreg extension", name: String(code)))
            case 0x52:                                                          // REDUCE
                let args = try pop(at), callable = try pop(at)
                stack.append(try reduce(callable, args, at))
            case 0x81:                                                          // NEWOBJ: cls.__new__(cls, *args)
                let args = try pop(at), cls = try pop(at)
                stack.append(newObject(cls, args))
            case 0x92:                                                          // NEWOBJ_EX: cls.__new__(cls, *args, **kwargs)
                _ = try pop(at)
                let args = try pop(at), cls = try pop(at)
                stack.append(newObject(cls, args))
            case 0x69:                                                          // INST (protocol 0)
                let module = text(try line()), name = text(try line())
                let args = heap.add(.tuple(try popMark(at)))
                stack.append(heap.newObject("\(module).\(name)", arguments: args))
            case 0x6F:                                                          // OBJ (protocol 1)
                let items = try popMark(at)
                guard let cls = items.first else { throw fail("OBJ at byte \(at) without a class") }
                stack.append(newObject(cls, heap.add(.tuple(Array(items.dropFirst())))))
            case 0x62:                                                          // BUILD: the state is kept, never applied
                let state = try pop(at), target = try top(at)
                switch heap[target] {
                case let .object(i): heap.objects[i].state = state
                case let .dict(i): heap.dicts[i].state = state
                default: break
                }
            case 0x51: stack.append(try persistent(try pop(at)))                // BINPERSID
            case 0x50: stack.append(try persistent(heap.add(.string(text(try line())))))  // PERSID
            default:
                throw fail(String(format: "unknown pickle opcode 0x%02X at byte %d", opcode, at))
            }
        }
    }

    // MARK: the stack

    private mutating func pop(_ at: Int) throws -> PickleRef {
        guard stack.count > (marks.last ?? 0) else { throw fail("pickle stack underflow at byte \(at)") }
        return stack.removeLast()
    }

    private func top(_ at: Int) throws -> PickleRef {
        guard stack.count > (marks.last ?? 0), let value = stack.last else { throw fail("pickle stack underflow at byte \(at)") }
        return value
    }

    private mutating func popMark(_ at: Int) throws -> [PickleRef] {
        guard let height = marks.popLast() else { throw fail("pickle MARK missing at byte \(at)") }
        let items = Array(stack[height...])
        stack.removeSubrange(height...)
        return items
    }

    private mutating func setItems(on target: PickleRef, _ items: [PickleRef], _ at: Int) throws {
        let index: Int
        switch heap[target] {
        case let .dict(i): index = i
        case let .object(i): index = heap.objects[i].items
        default: throw fail("SETITEM at byte \(at) on a \(heap.typeName(target))")
        }
        for i in stride(from: 0, to: items.count, by: 2) { heap.setItem(dict: index, key: items[i], value: items[i + 1]) }
    }

    private mutating func append(to target: PickleRef, _ items: [PickleRef], _ op: String, _ at: Int) throws {
        switch heap[target] {
        case let .list(i) where op != "ADDITEMS": heap.lists[i] += items
        case let .set(i) where op == "ADDITEMS": heap.lists[i] += items
        case let .object(i): heap.lists[heap.objects[i].elements] += items
        default: throw fail("\(op) at byte \(at) on a \(heap.typeName(target))")
        }
    }

    // MARK: calls

    private mutating func newObject(_ cls: PickleRef, _ args: PickleRef) -> PickleRef {
        let name = heap.globalName(cls) ?? heap.typeName(cls)
        if name == "collections.OrderedDict" { return heap.newDict() }
        return heap.newObject(name, arguments: args)
    }

    private mutating func persistent(_ id: PickleRef) throws -> PickleRef {
        // torch: ('storage', storage type, key, location, numel) in zip files; the legacy format
        // adds a view: None, or (view key, offset, size) for a slice of a shared root storage.
        guard let parts = heap.sequence(id), parts.count >= 5, heap.string(parts[0]) == "storage",
              let key = heap.string(parts[2]), let count = heap.int(parts[4]), count >= 0
        else { return heap.newObject("persistent id (\(heap.typeName(id)))", arguments: id) }
        let type = heap.globalName(parts[1]) ?? heap.typeName(parts[1])
        if parts.count >= 6, let view = heap.sequence(parts[5]), view.count == 3,
           let offset = heap.int(view[1]), let size = heap.int(view[2]), offset >= 0, size >= 0 {
            guard offset <= count, size <= count - offset else {
                throw fail("storage \(key): a view of \(size) elements at \(offset) runs past its \(count) elements")
            }
            return heap.add(.storage(type: type, key: key, count: size, viewOffset: offset))
        }
        return heap.add(.storage(type: type, key: key, count: count, viewOffset: 0))
    }

    /// Builds a value for an allow-listed callable, as a pure function of its arguments; any
    /// other call yields an inert object named after the callable.
    private mutating func reduce(_ callable: PickleRef, _ argsRef: PickleRef, _ at: Int) throws -> PickleRef {
        guard let name = heap.globalName(callable) else {
            return heap.newObject("result of calling a \(heap.typeName(callable))", arguments: argsRef)
        }
        let args = heap.sequence(argsRef) ?? []
        switch name {
        case "collections.OrderedDict":
            return heap.newDict()
        case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor":
            // (storage, offset, size, stride[, requires_grad, backward_hooks[, metadata]])
            guard args.count >= 4, case let .storage(type, key, count, viewOffset) = heap[args[0]],
                  let offset = heap.int(args[1]), let sizes = heap.sequence(args[2]), let strides = heap.sequence(args[3])
            else { throw fail("malformed \(name) arguments at byte \(at)") }
            let shape = sizes.compactMap { heap.int($0) }, stride = strides.compactMap { heap.int($0) }
            guard shape.count == sizes.count, stride.count == strides.count, shape.count == stride.count,
                  let start = Checked.add(offset, viewOffset)
            else { throw fail("malformed tensor size or stride at byte \(at)") }
            return heap.add(.tensor(PickledTensor(storageType: type, storageKey: key, storageCount: count + viewOffset,
                                                  offset: start, shape: shape, strides: stride)))
        case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
            guard let data = args.first else { throw fail("\(name) without arguments at byte \(at)") }
            return data
        case "torch.Size":
            return heap.add(.tuple(args.first.flatMap { heap.sequence($0) } ?? []))
        case "builtins.set", "__builtin__.set", "builtins.frozenset", "__builtin__.frozenset":
            return heap.newSet(args.first.flatMap { heap.sequence($0) } ?? [])
        case "builtins.bytes", "__builtin__.bytes", "builtins.bytearray", "__builtin__.bytearray":
            if args.isEmpty { return heap.add(.bytes([])) }
        case "_codecs.encode":
            // Protocol 2 writes Python 3 bytes as _codecs.encode(str, 'latin1').
            if args.count == 2, let s = heap.string(args[0]), let encoding = heap.string(args[1]) {
                switch encoding.lowercased() {
                case "latin1", "latin-1", "iso-8859-1":
                    let scalars = s.unicodeScalars.map(\.value)
                    if scalars.allSatisfy({ $0 < 256 }) { return heap.add(.bytes(scalars.map { UInt8($0) })) }
                case "utf8", "utf-8":
                    return heap.add(.bytes(Array(s.utf8)))
                default: break
                }
            }
        case "copyreg._reconstructor", "copy_reg._reconstructor":
            // copyreg._reconstructor(cls, base, state): how protocols 0 and 1 pickle instances of
            // classes; for a dict subclass (a yacs CfgNode) `state` is dict(obj), its items.
            if let cls = args.first, let className = heap.globalName(cls) {
                if className == "collections.OrderedDict" { return heap.newDict() }
                let object = heap.newObject(className, arguments: argsRef)
                if args.count == 3, case let .dict(source) = heap[args[2]], case let .object(i) = heap[object] {
                    let store = heap.dicts[source], target = heap.objects[i].items
                    for (k, v) in zip(store.keys, store.values) { heap.setItem(dict: target, key: k, value: v) }
                }
                return object
            }
        case "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar":
            if args.count == 2, case let .bytes(b) = heap[args[1]], let value = numpyScalar(dtype: args[0], b) {
                return heap.add(value)
            }
        default:
            break
        }
        return heap.newObject(name, arguments: argsRef)
    }

    /// A numpy scalar `scalar(dtype('f8'), raw bytes)` as a plain number, when its dtype is a
    /// plain number type (`numpy.dtype(code, align, copy)`, its byte order in the BUILD state).
    private func numpyScalar(dtype: PickleRef, _ b: [UInt8]) -> PickleHeap.Value? {
        guard case let .object(i) = heap[dtype], heap.objects[i].className.hasSuffix(".dtype"),
              let arguments = heap.objects[i].arguments, let first = heap.sequence(arguments)?.first,
              let code = heap.string(first) else { return nil }
        var bigEndian = false
        if let state = heap.objects[i].state, let parts = heap.sequence(state), parts.count > 1 {
            bigEndian = heap.string(parts[1]) == ">"
        }
        let bytes = bigEndian ? Array(b.reversed()) : b
        let bits = bytes.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        switch (code, bytes.count) {
        case ("f8", 8): return .float(Double(bitPattern: bits))
        case ("f4", 4): return .float(Double(Float(bitPattern: UInt32(bits))))
        case ("f2", 2): return .float(Double(Float(Float16(bitPattern: UInt16(bits)))))
        case ("i8", 8): return .int(Int(Int64(bitPattern: bits)))
        case ("i4", 4): return .int(Int(Int32(bitPattern: UInt32(bits))))
        case ("i2", 2): return .int(Int(Int16(bitPattern: UInt16(bits))))
        case ("i1", 1): return .int(Int(Int8(bitPattern: UInt8(bits))))
        case ("u8", 8): return bits <= UInt64(Int.max) ? .int(Int(bits)) : nil
        case ("u4", 4), ("u2", 2), ("u1", 1): return .int(Int(bits))
        case ("b1", 1): return .bool(bits != 0)
        default: return nil
        }
    }

    // MARK: literals

    /// A little-endian two's complement integer (LONG1, LONG4) as `.int` when it fits.
    static func integer(littleEndian digits: [UInt8]) -> PickleHeap.Value {
        guard !digits.isEmpty else { return .int(0) }
        let negative = digits[digits.count - 1] & 0x80 != 0
        // Drop sign-extension bytes that do not change the value.
        var trimmed = digits
        while trimmed.count > 1, trimmed[trimmed.count - 1] == (negative ? 0xFF : 0),
              (trimmed[trimmed.count - 2] & 0x80 != 0) == negative {
            trimmed.removeLast()
        }
        guard trimmed.count <= 8 else { return .bigInt(trimmed) }
        var v: UInt64 = negative ? ~0 : 0
        for (i, d) in trimmed.enumerated() {
            v &= ~(UInt64(0xFF) << (8 * UInt64(i)))
            v |= UInt64(d) << (8 * UInt64(i))
        }
        return .int(Int(Int64(bitPattern: v)))
    }

    /// A decimal integer (protocol 0 INT / LONG) of any size.
    static func integer(decimal text: String) throws -> PickleHeap.Value? {
        if let v = Int(text) { return .int(v) }
        var digits = Substring(text)
        let negative = digits.first == "-"
        if negative || digits.first == "+" { digits = digits.dropFirst() }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        guard digits.count <= maxDecimalDigits else { return nil }
        // Magnitude in base 256, little-endian; then two's complement when negative.
        var magnitude: [UInt8] = [0]
        for c in digits.utf8 {
            var carry = Int(c - 0x30)
            for i in magnitude.indices {
                let v = Int(magnitude[i]) * 10 + carry
                magnitude[i] = UInt8(v & 0xFF)
                carry = v >> 8
            }
            while carry > 0 { magnitude.append(UInt8(carry & 0xFF)); carry >>= 8 }
        }
        magnitude.append(0)  // room for the sign bit
        if negative {
            var carry = 1
            for i in magnitude.indices {
                let v = Int(~magnitude[i]) + carry
                magnitude[i] = UInt8(v & 0xFF)
                carry = v >> 8
            }
        }
        return integer(littleEndian: magnitude)
    }

    /// The decimal digits of a little-endian two's complement integer (for messages and tests).
    static func decimal(littleEndian bytes: [UInt8]) -> String {
        guard let last = bytes.last else { return "0" }
        let negative = last & 0x80 != 0
        var magnitude = bytes
        if negative {  // negate: invert and add one
            var carry = 1
            for i in magnitude.indices {
                let v = Int(~magnitude[i]) + carry
                magnitude[i] = UInt8(v & 0xFF)
                carry = v >> 8
            }
        }
        var digits: [UInt8] = []
        while magnitude.contains(where: { $0 != 0 }) {
            var remainder = 0
            for i in magnitude.indices.reversed() {
                let v = remainder << 8 | Int(magnitude[i])
                magnitude[i] = UInt8(v / 10)
                remainder = v % 10
            }
            digits.append(UInt8(0x30 + remainder))
        }
        return (negative ? "-" : "") + (digits.isEmpty ? "0" : String(decoding: digits.reversed(), as: UTF8.self))
    }

    static func latin1(_ bytes: [UInt8]) -> String {
        String(String.UnicodeScalarView(bytes.map { Unicode.Scalar($0) }))
    }

    /// Protocol 0 UNICODE: raw-unicode-escape, i.e. latin-1 bytes with \uXXXX and \UXXXXXXXX.
    static func rawUnicodeEscape(_ bytes: [UInt8]) -> String {
        var scalars = String.UnicodeScalarView()
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x5C, i + 1 < bytes.count, bytes[i + 1] == 0x75 || bytes[i + 1] == 0x55 {
                let width = bytes[i + 1] == 0x75 ? 4 : 8
                if i + 2 + width <= bytes.count, let v = UInt32(String(decoding: bytes[(i + 2)..<(i + 2 + width)], as: UTF8.self), radix: 16),
                   let scalar = Unicode.Scalar(v) {
                    scalars.append(scalar)
                    i += 2 + width
                    continue
                }
            }
            scalars.append(Unicode.Scalar(bytes[i]))
            i += 1
        }
        return String(scalars)
    }

    /// Protocol 0 STRING: a Python 2 repr, '...' or "...", with backslash escapes.
    static func quotedString(_ bytes: [UInt8]) -> String? {
        guard bytes.count >= 2, let q = bytes.first, q == 0x27 || q == 0x22, bytes.last == q else { return nil }
        let body = bytes[1..<(bytes.count - 1)]
        var out: [UInt8] = []
        var i = body.startIndex
        while i < body.endIndex {
            let c = body[i]
            i += 1
            guard c == 0x5C, i < body.endIndex else { out.append(c); continue }
            let e = body[i]
            i += 1
            switch e {
            case 0x6E: out.append(0x0A)   // \n
            case 0x74: out.append(0x09)   // \t
            case 0x72: out.append(0x0D)   // \r
            case 0x30...0x37:             // \ooo
                var v = Int(e - 0x30), n = 1
                while n < 3, i < body.endIndex, (0x30...0x37).contains(body[i]) { v = v * 8 + Int(body[i] - 0x30); i += 1; n += 1 }
                out.append(UInt8(v & 0xFF))
            case 0x78:                    // \xNN
                guard i + 2 <= body.endIndex, let v = UInt8(String(decoding: body[i..<(i + 2)], as: UTF8.self), radix: 16) else { return nil }
                out.append(v)
                i += 2
            default: out.append(e)        // \\ \' \" and anything else as itself
            }
        }
        return latin1(out)
    }
}
