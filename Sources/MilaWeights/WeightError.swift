/// A weight or tensor file that cannot be read: names the file, and the tensor or entry where
/// there is one.
public struct WeightFileError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let message: String

    public init(file: String, _ message: String) {
        self.file = file
        self.message = message
    }

    public var description: String { "\(file): \(message)" }
}

/// Element types of tensors on disk.
/// The names are safetensors' dtype names.
public enum StorageDType: String, Sendable {
    case float32 = "F32"
    case float16 = "F16"
    case bfloat16 = "BF16"
    case float64 = "F64"
    case int64 = "I64"
    case int32 = "I32"
    case int16 = "I16"
    case int8 = "I8"
    case uint8 = "U8"
    case bool = "BOOL"

    public var byteSize: Int {
        switch self {
        case .float64, .int64: 8
        case .float32, .int32: 4
        case .float16, .bfloat16, .int16: 2
        case .int8, .uint8, .bool: 1
        }
    }

    /// Whether the engine computes with it (converted to float32); integer tensors such as
    /// `num_batches_tracked` are carried but never bound.
    public var isFloatingPoint: Bool {
        switch self {
        case .float32, .float16, .bfloat16, .float64: true
        default: false
        }
    }
}

/// Integer arithmetic on sizes read from a file: nil on overflow instead of a trap.
enum Checked {
    static func add(_ a: Int, _ b: Int) -> Int? {
        let (r, overflow) = a.addingReportingOverflow(b)
        return overflow ? nil : r
    }

    static func multiply(_ a: Int, _ b: Int) -> Int? {
        let (r, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow ? nil : r
    }

    /// The product of `dims` (1 for none), nil when a dimension is negative or it overflows.
    static func product(_ dims: [Int]) -> Int? {
        var n = 1
        for d in dims {
            guard d >= 0, let m = multiply(n, d) else { return nil }
            n = m
        }
        return n
    }

    /// A 64-bit unsigned field as an Int, nil when it does not fit.
    static func int(_ v: UInt64) -> Int? { v <= UInt64(Int.max) ? Int(v) : nil }
}

/// Little-endian reads from a byte buffer with bounds already checked by the caller.
enum Bytes {
    static func uint16(_ p: UnsafeRawBufferPointer, _ offset: Int) -> UInt16 {
        UInt16(p[offset]) | UInt16(p[offset + 1]) << 8
    }

    static func uint32(_ p: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(p[offset + $1]) << (8 * UInt32($1)) }
    }

    static func uint64(_ p: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 | UInt64(p[offset + $1]) << (8 * UInt64($1)) }
    }

    /// Converts `count` elements of `dtype` starting at byte `offset` to Float, reading element i
    /// at element index `index(i)` (for strided tensors).
    static func floats(_ p: UnsafeRawBufferPointer, offset: Int, dtype: StorageDType, count: Int,
                       index: (Int) -> Int) -> [Float] {
        var out = [Float](repeating: 0, count: count)
        switch dtype {
        case .float32:
            for i in 0..<count { out[i] = Float(bitPattern: uint32(p, offset + 4 * index(i))) }
        case .float16:
            for i in 0..<count { out[i] = Float(Float16(bitPattern: uint16(p, offset + 2 * index(i)))) }
        case .bfloat16:
            for i in 0..<count { out[i] = Float(bitPattern: UInt32(uint16(p, offset + 2 * index(i))) << 16) }
        case .float64:
            for i in 0..<count { out[i] = Float(Double(bitPattern: uint64(p, offset + 8 * index(i)))) }
        case .int64:
            for i in 0..<count { out[i] = Float(Int64(bitPattern: uint64(p, offset + 8 * index(i)))) }
        case .int32:
            for i in 0..<count { out[i] = Float(Int32(bitPattern: uint32(p, offset + 4 * index(i)))) }
        case .int16:
            for i in 0..<count { out[i] = Float(Int16(bitPattern: uint16(p, offset + 2 * index(i)))) }
        case .int8:
            for i in 0..<count { out[i] = Float(Int8(bitPattern: p[offset + index(i)])) }
        case .uint8, .bool:
            for i in 0..<count { out[i] = Float(p[offset + index(i)]) }
        }
        return out
    }
}
