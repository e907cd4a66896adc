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
public enum StorageDType: String, Sendable {
    case float32 = "F32"
    case float16 = "F16"
    case bfloat16 = "BF16"
    case int64 = "I64"

    public var byteSize: Int {
        switch self {
        case .float32: 4
        case .float16, .bfloat16: 2
        case .int64: 8
        }
    }

    /// Whether the engine computes with it (converted to float32); I64 tensors such as
    /// `num_batches_tracked` are carried but never needed.
    public var isFloatingPoint: Bool { self != .int64 }
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
        case .int64:
            for i in 0..<count { out[i] = Float(Int64(bitPattern: uint64(p, offset + 8 * index(i)))) }
        }
        return out
    }
}
