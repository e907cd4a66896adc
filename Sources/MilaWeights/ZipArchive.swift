import Foundation

/// The entries of a zip archive whose members are stored uncompressed (as `torch.save` writes
/// them), found through the central directory. Zip64 records are read for large checkpoints.
///
/// Every size and offset is checked against the file before it is used: the declared entry
/// count must fit the central directory (46 bytes an entry at least), the directory must lie in
/// the file, each entry's local header and data must lie before the directory, and no two
/// entries may overlap or share a name.
struct ZipArchive {
    struct Entry {
        let name: String
        let headerOffset: Int
        let dataOffset: Int
        let size: Int
    }

    let entries: [String: Entry]

    init(path: String, data: Data) throws {
        func fail(_ message: String) -> WeightFileError { WeightFileError(file: path, "zip archive: \(message)") }
        let entries = try data.withUnsafeBytes { raw -> [String: Entry] in
            let count = raw.count
            guard count >= 22 else { throw fail("\(count) bytes is too short for a zip file") }
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
            var directoryEnd = eocd
            if directoryOffset == 0xFFFF_FFFF || entryCount == 0xFFFF || directorySize == 0xFFFF_FFFF,
               eocd >= 20, Bytes.uint32(raw, eocd - 20) == 0x0706_4B50 {
                guard let record = Checked.int(Bytes.uint64(raw, eocd - 20 + 8)), record <= eocd - 20 - 56,
                      Bytes.uint32(raw, record) == 0x0606_4B50,
                      let n = Checked.int(Bytes.uint64(raw, record + 32)), let size = Checked.int(Bytes.uint64(raw, record + 40)),
                      let offset = Checked.int(Bytes.uint64(raw, record + 48))
                else { throw fail("bad zip64 end-of-central-directory record") }
                (entryCount, directorySize, directoryOffset, directoryEnd) = (n, size, offset, record)
            }
            guard directoryOffset <= directoryEnd, directorySize <= directoryEnd - directoryOffset else {
                throw fail("central directory at \(directoryOffset)+\(directorySize) is outside the file (\(count) bytes)")
            }
            guard entryCount <= directorySize / 46 else {
                throw fail("\(entryCount) entries declared, but the central directory of \(directorySize) bytes holds at most \(directorySize / 46)")
            }
            var result: [String: Entry] = [:]
            result.reserveCapacity(entryCount)
            var p = directoryOffset
            let end = directoryOffset + directorySize
            for _ in 0..<entryCount {
                guard p <= end - 46, Bytes.uint32(raw, p) == 0x0201_4B50 else { throw fail("corrupt central directory entry at byte \(p)") }
                let method = Bytes.uint16(raw, p + 10)
                var compressed = Int(Bytes.uint32(raw, p + 20))
                var size = Int(Bytes.uint32(raw, p + 24))
                let nameLength = Int(Bytes.uint16(raw, p + 28)), extraLength = Int(Bytes.uint16(raw, p + 30))
                let commentLength = Int(Bytes.uint16(raw, p + 32))
                var localOffset = Int(Bytes.uint32(raw, p + 42))
                guard nameLength + extraLength + commentLength <= end - p - 46 else {
                    throw fail("central directory entry at byte \(p) runs past the directory")
                }
                let name = String(decoding: UnsafeRawBufferPointer(rebasing: raw[(p + 46)..<(p + 46 + nameLength)]), as: UTF8.self)
                // Zip64 extended information: the 0xFFFFFFFF fields, in order.
                var e = p + 46 + nameLength
                let extraEnd = e + extraLength
                while e + 4 <= extraEnd {
                    let tag = Bytes.uint16(raw, e), length = Int(Bytes.uint16(raw, e + 2))
                    let fieldEnd = min(e + 4 + length, extraEnd)
                    if tag == 0x0001 {
                        var q = e + 4
                        func next() throws -> Int {
                            guard q + 8 <= fieldEnd, let v = Checked.int(Bytes.uint64(raw, q)) else {
                                throw fail("entry \(name): bad zip64 extra field")
                            }
                            q += 8
                            return v
                        }
                        if size == 0xFFFF_FFFF { size = try next() }
                        if compressed == 0xFFFF_FFFF { compressed = try next() }
                        if localOffset == 0xFFFF_FFFF { localOffset = try next() }
                    }
                    e += 4 + length
                }
                guard method == 0 else { throw fail("entry \(name) is compressed (method \(method)); torch.save stores entries uncompressed") }
                guard localOffset <= directoryOffset - 30, Bytes.uint32(raw, localOffset) == 0x0403_4B50 else {
                    throw fail("entry \(name): local header missing at byte \(localOffset)")
                }
                let dataOffset = localOffset + 30 + Int(Bytes.uint16(raw, localOffset + 26)) + Int(Bytes.uint16(raw, localOffset + 28))
                guard size == compressed, dataOffset <= directoryOffset, size <= directoryOffset - dataOffset else {
                    throw fail("entry \(name): \(size) bytes at byte \(dataOffset) run into the central directory at \(directoryOffset)")
                }
                guard result[name] == nil else { throw fail("entry \(name) appears twice") }
                result[name] = Entry(name: name, headerOffset: localOffset, dataOffset: dataOffset, size: size)
                p += 46 + nameLength + extraLength + commentLength
            }
            // No two entries may share bytes (each one's header and data end before the next header).
            let ordered = result.values.sorted { $0.headerOffset < $1.headerOffset }
            for (a, b) in zip(ordered, ordered.dropFirst()) where a.dataOffset + a.size > b.headerOffset {
                throw fail("entries \(a.name) and \(b.name) overlap")
            }
            return result
        }
        self.entries = entries
    }
}
