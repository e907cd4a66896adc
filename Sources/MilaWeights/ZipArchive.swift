import Foundation

/// The entries of a zip archive whose members are stored uncompressed (as `torch.save` writes
/// them), found through the central directory. Zip64 records are read for large checkpoints.
struct ZipArchive {
    struct Entry {
        let name: String
        let dataOffset: Int
        let size: Int
    }

    let entries: [String: Entry]

    init(path: String, data: Data) throws {
        func fail(_ message: String) -> WeightFileError { WeightFileError(file: path, "zip archive: \(message)") }
        let entries = try data.withUnsafeBytes { raw -> [String: Entry] in
            let count = raw.count
            // End of central directory: 22 bytes + comment (<= 65535), searched from the end.
            var eocd = -1
            var i = count - 22
            while i >= max(0, count - 22 - 65535) {
                if Bytes.uint32(raw, i) == 0x0605_4B50 { eocd = i; break }
                i -= 1
            }
            guard eocd >= 0 else { throw fail("no end-of-central-directory record (truncated file?)") }
            var entryCount = Int(Bytes.uint16(raw, eocd + 10))
            var directorySize = Int(Bytes.uint32(raw, eocd + 12))
            var directoryOffset = Int(Bytes.uint32(raw, eocd + 16))
            if directoryOffset == 0xFFFF_FFFF || entryCount == 0xFFFF, eocd >= 20, Bytes.uint32(raw, eocd - 20) == 0x0706_4B50 {
                let record = Int(Bytes.uint64(raw, eocd - 20 + 8))
                guard record >= 0, record + 56 <= count, Bytes.uint32(raw, record) == 0x0606_4B50 else { throw fail("bad zip64 record") }
                entryCount = Int(Bytes.uint64(raw, record + 32))
                directorySize = Int(Bytes.uint64(raw, record + 40))
                directoryOffset = Int(Bytes.uint64(raw, record + 48))
            }
            guard directoryOffset >= 0, directorySize >= 0, directoryOffset + directorySize <= count else {
                throw fail("central directory at \(directoryOffset)+\(directorySize) is outside the file (\(count) bytes)")
            }
            var result: [String: Entry] = [:]
            var p = directoryOffset
            for _ in 0..<entryCount {
                guard p + 46 <= count, Bytes.uint32(raw, p) == 0x0201_4B50 else { throw fail("corrupt central directory entry") }
                let method = Bytes.uint16(raw, p + 10)
                var compressed = Int(Bytes.uint32(raw, p + 20))
                var size = Int(Bytes.uint32(raw, p + 24))
                let nameLength = Int(Bytes.uint16(raw, p + 28)), extraLength = Int(Bytes.uint16(raw, p + 30))
                let commentLength = Int(Bytes.uint16(raw, p + 32))
                var localOffset = Int(Bytes.uint32(raw, p + 42))
                guard p + 46 + nameLength + extraLength <= count else { throw fail("central directory entry past the end") }
                let name = String(decoding: UnsafeRawBufferPointer(rebasing: raw[(p + 46)..<(p + 46 + nameLength)]), as: UTF8.self)
                // Zip64 extended information: the 0xFFFFFFFF fields, in order.
                var e = p + 46 + nameLength
                let extraEnd = e + extraLength
                while e + 4 <= extraEnd {
                    let tag = Bytes.uint16(raw, e), length = Int(Bytes.uint16(raw, e + 2))
                    if tag == 0x0001 {
                        var q = e + 4
                        if size == 0xFFFF_FFFF, q + 8 <= e + 4 + length { size = Int(Bytes.uint64(raw, q)); q += 8 }
                        if compressed == 0xFFFF_FFFF, q + 8 <= e + 4 + length { compressed = Int(Bytes.uint64(raw, q)); q += 8 }
                        if localOffset == 0xFFFF_FFFF, q + 8 <= e + 4 + length { localOffset = Int(Bytes.uint64(raw, q)) }
                    }
                    e += 4 + length
                }
                guard method == 0 else { throw fail("entry \(name) is compressed (method \(method)); torch.save stores entries uncompressed") }
                guard localOffset >= 0, localOffset + 30 <= count, Bytes.uint32(raw, localOffset) == 0x0403_4B50 else {
                    throw fail("entry \(name): local header missing")
                }
                let dataOffset = localOffset + 30 + Int(Bytes.uint16(raw, localOffset + 26)) + Int(Bytes.uint16(raw, localOffset + 28))
                guard size == compressed, dataOffset + size <= count else {
                    throw fail("entry \(name): \(size) bytes at \(dataOffset) run past the end of the file (\(count) bytes)")
                }
                result[name] = Entry(name: name, dataOffset: dataOffset, size: size)
                p += 46 + nameLength + extraLength + commentLength
            }
            return result
        }
        self.entries = entries
    }
}
