import Foundation
@testable import MilaWeights
import Testing

/// Pickles written by Python's own `pickle` at every protocol (Tests/PyTorchReference/
/// make_checkpoint_fixtures.py) and what a reader that executes nothing must see in them.
enum PickleFixtures {
    static let folder = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("pickles")
    static func data(_ name: String) throws -> Data { try Data(contentsOf: folder.appendingPathComponent(name)) }

    static func load(_ bytes: [UInt8]) throws -> (PickleHeap, PickleRef) {
        var unpickler = Unpickler(file: "test.pkl")
        let value = try bytes.withUnsafeBytes { try unpickler.load($0).value }
        return (unpickler.heap, value)
    }

    /// A value as JSON-compatible Swift values, in the convention of values.json: containers as
    /// arrays and dicts, bytes as {"bytes": [...]}, big ints as {"bigint": "digits"}, inert objects
    /// as {"class", "items"} when they were given items, else {"class", "state"}.
    static func describe(_ heap: PickleHeap, _ ref: PickleRef, depth: Int = 0) -> Any {
        guard depth < 50 else { return "<too deep>" }
        func d(_ r: PickleRef) -> Any { describe(heap, r, depth: depth + 1) }
        func dict(_ store: PickleHeap.DictStore) -> [String: Any] {
            var out: [String: Any] = [:]
            for (k, v) in zip(store.keys, store.values) { out[heap.string(k) ?? "<\(heap.typeName(k))>"] = d(v) }
            return out
        }
        switch heap[ref] {
        case .none: return NSNull()
        case let .bool(b): return b
        case let .int(v): return v
        case let .bigInt(b): return ["bigint": Unpickler.decimal(littleEndian: b)]
        case let .float(v): return v
        case let .string(s): return s
        case let .bytes(b): return ["bytes": b.map(Int.init)]
        case .tuple, .list, .set: return heap.sequence(ref)!.map(d)
        case let .dict(i): return dict(heap.dicts[i])
        case let .global(module, name): return ["global": "\(module).\(name)"]
        case let .object(i):
            let object = heap.objects[i]
            let items = heap.dicts[object.items]
            if !items.keys.isEmpty { return ["class": object.className, "items": dict(items)] }
            return ["class": object.className, "state": object.state.map(d) ?? NSNull()]
        case let .storage(type, key, count, _): return ["storage": type, "key": key, "count": count]
        case .tensor: return "<tensor>"
        }
    }

    static func canonical(_ value: Any) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed]), as: UTF8.self)
    }
}

@Suite("Unpickler") struct UnpicklerTests {
    typealias F = PickleFixtures

    @Test(arguments: 0...5)
    func readsPythonsOwnPicklesAtEveryProtocol(_ protocolVersion: Int) throws {
        let expected = try JSONSerialization.jsonObject(with: try F.data("values.json"))
        let (heap, root) = try F.load(Array(try F.data("values_p\(protocolVersion).pkl")))
        let got = F.describe(heap, root)
        let (a, b) = (try F.canonical(got), try F.canonical(expected))
        #expect(a == b, "protocol \(protocolVersion):\n got \(a)\nwant \(b)")
    }

    @Test func readsByteArraysOfProtocol5() throws {
        let (heap, root) = try F.load(Array(try F.data("values_p5_bytearray.pkl")))
        #expect(try F.canonical(F.describe(heap, root)) == #"{"data":{"bytes":[120,121,122]}}"#)
    }

    @Test func integersOfEverySize() throws {
        #expect(Unpickler.decimal(littleEndian: [0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]) == "119547037146038801333356")
        for text in ["0", "-1", "127", "-128", "9223372036854775807", "-9223372036854775808", "18446744073709551616",
                     "-170141183460469231731687303715884105728", "119547037146038801333356"] {
            let value = try #require(try Unpickler.integer(decimal: text))
            switch value {
            case let .int(v): #expect(String(v) == text)
            case let .bigInt(b): #expect(Unpickler.decimal(littleEndian: b) == text)
            default: Issue.record("\(text) read as \(value)")
            }
        }
        #expect(try Unpickler.integer(decimal: String(repeating: "9", count: 5000)) == nil)
    }

    /// Nothing is ever called: a REDUCE of os.system stays an inert object that names it.
    @Test func callsNothingOutsideTheAllowList() throws {
        // c os\nsystem\n (S'echo hi'\n tR.
        let bytes = Array("cos\nsystem\n(S'echo hi'\ntR.".utf8)
        let (heap, root) = try F.load(bytes)
        #expect(heap.typeName(root) == "object of class os.system (never constructed)")
    }

    /// Hostile streams end in a named error (or an inert value), never a crash or a hang.
    static let hostile: [(label: String, bytes: [UInt8], message: String?)] = [
        ("a list nested a million deep", [0x80, 0x02] + [UInt8](repeating: 0x5D, count: 1_000_000) + [UInt8](repeating: 0x61, count: 999_999) + [0x2E], nil),
        ("a tuple nested a million deep", [0x80, 0x02, 0x4E] + [UInt8](repeating: 0x85, count: 1_000_000) + [0x2E], nil),
        ("ten million empty dicts", [0x80, 0x02] + [UInt8](repeating: 0x7D, count: 10_000_100), "more than 10000000 values"),
        ("a million open MARKs", [UInt8](repeating: 0x28, count: 1_000_000) + [0x2E], "MARK still open"),
        ("a memo index far out of range", [0x80, 0x02, 0x6A, 0xFF, 0xFF, 0xFF, 0xFF, 0x2E], "memo index 4294967295"),
        ("a huge BINUNICODE length", [0x80, 0x02, 0x58, 0xFF, 0xFF, 0xFF, 0x7F], "truncated pickle"),
        ("a huge BINBYTES8 length", [0x80, 0x04, 0x8E] + [UInt8](repeating: 0xFF, count: 8), "too large"),
        ("a negative LONG4 length", [0x80, 0x02, 0x8B, 0xFF, 0xFF, 0xFF, 0xFF], "negative length"),
        ("an unknown opcode", [0x80, 0x02, 0xFF], "unknown pickle opcode 0xFF"),
        ("stack underflow", [0x80, 0x02, 0x52], "stack underflow"),
        ("underflow below a MARK", [0x80, 0x02, 0x4E, 0x28, 0x30], "stack underflow"),
        ("SETITEM on a list", [0x80, 0x02, 0x5D, 0x4E, 0x4E, 0x73, 0x2E], "SETITEM at byte 5 on a list"),
        ("out-of-band buffer", [0x80, 0x05, 0x97], "out-of-band"),
        ("empty", [], "truncated"),
    ]

    @Test(arguments: hostile.indices)
    func hostileStreamsAreNamedErrors(_ index: Int) throws {
        let c = Self.hostile[index]
        do {
            _ = try F.load(c.bytes)
            #expect(c.message == nil, "\(c.label): read without error")
        } catch let error as WeightFileError {
            #expect(c.message != nil && error.message.contains(c.message!), "\(c.label): \(error)")
        }
    }
}
