import Foundation
import MilaCore

/// NumPy `.npy` files: C order, format versions 1.0 to 3.0; float32 (what the engine writes),
/// and float64, int32, int64 and uint8 arrays (label maps, images) read as float32 values.
public enum NPY {
    static let dtypes: [String: StorageDType] = ["<f4": .float32, "|f4": .float32, "<f8": .float64, "<i4": .int32,
                                                 "<i8": .int64, "|u1": .uint8, "<u1": .uint8]
    static let names: [StorageDType: String] = [.float32: "float32", .float64: "float64", .int32: "int32", .int64: "int64", .uint8: "uint8"]

    public static func read(_ path: String) throws -> Tensor {
        try read(try WeightFile.mapped(path), name: path)
    }

    /// Reads `.npy` bytes already in memory; `name` stands for the file in errors.
    public static func read(_ data: Data, name path: String) throws -> Tensor {
        try data.withUnsafeBytes { raw -> Tensor in
            guard raw.count >= 10, Array(raw[0..<6]) == [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59] else {
                throw WeightFileError(file: path, "not a .npy file (bad magic)")
            }
            let major = raw[6]
            guard (1...3).contains(major) else { throw WeightFileError(file: path, ".npy version \(major) is not supported") }
            guard major == 1 || raw.count >= 12 else { throw WeightFileError(file: path, ".npy header runs past the end") }
            let headerLength = major == 1 ? Int(Bytes.uint16(raw, 8)) : Int(Bytes.uint32(raw, 8))
            let start = major == 1 ? 10 : 12
            guard headerLength <= raw.count - start else { throw WeightFileError(file: path, ".npy header runs past the end") }
            let header = String(decoding: raw[start..<(start + headerLength)], as: UTF8.self)
            guard let dtype = dtypes.first(where: { header.contains("'descr': '\($0.key)'") })?.value else {
                throw WeightFileError(file: path, ".npy dtype must be little-endian float32, float64, int32, int64 or uint8; header: \(header.prefix(200).trimmingCharacters(in: .whitespacesAndNewlines))")
            }
            guard header.contains("'fortran_order': False") else { throw WeightFileError(file: path, ".npy must be C order") }
            guard let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")") else {
                throw WeightFileError(file: path, ".npy header has no shape")
            }
            let fields = header[open.upperBound..<close].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            let shape = fields.compactMap { Int($0) }
            guard shape.count == fields.count, shape.allSatisfy({ $0 >= 0 }) else {
                throw WeightFileError(file: path, ".npy shape (\(header[open.upperBound..<close].prefix(80))) is not a tuple of non-negative integers")
            }
            let dataStart = start + headerLength
            guard let count = Checked.product(shape), let bytes = Checked.multiply(count, dtype.byteSize), raw.count - dataStart == bytes else {
                throw WeightFileError(file: path, ".npy holds \(raw.count - dataStart) data bytes, which shape \(shape) of \(names[dtype] ?? dtype.rawValue) does not fit")
            }
            let values = Bytes.floats(raw, offset: dataStart, dtype: dtype, count: count) { $0 }
            return try Tensor(shape: shape.isEmpty ? [1] : shape, data: values)
        }
    }

    /// Writes format 1.0, '<f4', C order.
    public static func write(_ tensor: Tensor, to path: String) throws {
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(tensor.shape.map(String.init).joined(separator: ", "))\(tensor.shape.count == 1 ? "," : "")), }"
        let total = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - total % 64) % 64) + "\n"
        var bytes: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0]
        let length = header.utf8.count
        bytes += [UInt8(length & 0xFF), UInt8(length >> 8)]
        bytes += Array(header.utf8)
        bytes.reserveCapacity(bytes.count + tensor.count * 4)
        for v in tensor.data { let b = v.bitPattern; bytes += [UInt8(b & 0xFF), UInt8((b >> 8) & 0xFF), UInt8((b >> 16) & 0xFF), UInt8(b >> 24)] }
        do { try Data(bytes).write(to: URL(fileURLWithPath: path)) } catch {
            throw WeightFileError(file: path, "cannot write: \((error as NSError).localizedDescription)")
        }
    }
}
