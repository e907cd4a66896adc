import Foundation

/// Program binaries on disk, keyed by device name, driver version, source hash and build options.
///
/// File layout: magic "MILACLB1", the 16-byte key, payload length (UInt64 LE), payload FNV-1a
/// checksum (UInt64 LE), payload. An entry whose magic, key, length or checksum is off is
/// ignored (and later overwritten); a binary that the driver refuses is rebuilt from source.
/// Folder: `$MILA_CACHE_DIR`, else `$XDG_CACHE_HOME/mila`, else `~/.cache/mila`, plus `kernels/`.
/// `MILA_KERNEL_CACHE=0` turns it off.
public struct ProgramDiskCache: Sendable {
    public let folder: URL
    static let magic = Array("MILACLB1".utf8)

    public static func fromEnvironment() -> ProgramDiskCache? {
        let environment = ProcessInfo.processInfo.environment
        if environment["MILA_KERNEL_CACHE"] == "0" { return nil }
        let base: URL
        if let dir = environment["MILA_CACHE_DIR"], !dir.isEmpty {
            base = URL(fileURLWithPath: dir)
        } else if let xdg = environment["XDG_CACHE_HOME"], !xdg.isEmpty {
            base = URL(fileURLWithPath: xdg).appendingPathComponent("mila")
        } else {
            base = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/mila")
        }
        return ProgramDiskCache(folder: base.appendingPathComponent("kernels"))
    }

    public init(folder: URL) { self.folder = folder }

    /// A 128-bit key as 16 bytes, from two FNV-1a passes with different seeds.
    public static func key(deviceName: String, driverVersion: String, source: String, options: String) -> [UInt8] {
        let text = Array("\(deviceName)\u{0}\(driverVersion)\u{0}\(options)\u{0}\(source)".utf8)
        return bytes(fnv1a(text, seed: 0xcbf2_9ce4_8422_2325)) + bytes(fnv1a(text, seed: 0x8422_2325_cbf2_9ce4))
    }

    public func path(for key: [UInt8]) -> URL {
        folder.appendingPathComponent(key.map { String(format: "%02x", $0) }.joined() + ".clbin")
    }

    /// The stored binary for `key`, or nil if absent or damaged.
    public func load(key: [UInt8]) -> [UInt8]? {
        guard let data = FileManager.default.contents(atPath: path(for: key).path) else { return nil }
        let bytes = [UInt8](data)
        let header = Self.magic.count + 16 + 16
        guard bytes.count >= header, Array(bytes[0..<8]) == Self.magic, Array(bytes[8..<24]) == key else { return nil }
        let length = Self.uint64(bytes, at: 24), checksum = Self.uint64(bytes, at: 32)
        guard UInt64(bytes.count - header) == length else { return nil }
        let payload = Array(bytes[header...])
        guard Self.fnv1a(payload, seed: 0xcbf2_9ce4_8422_2325) == checksum else { return nil }
        return payload
    }

    /// Writes atomically (temporary file, then rename); failures are ignored: the cache is an
    /// optimisation, never a requirement.
    public func store(key: [UInt8], binary: [UInt8]) {
        var bytes = Self.magic + key
        bytes += Self.bytes(UInt64(binary.count)) + Self.bytes(Self.fnv1a(binary, seed: 0xcbf2_9ce4_8422_2325)) + binary
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            let target = path(for: key)
            let temporary = folder.appendingPathComponent(".\(UUID().uuidString).tmp")
            try Data(bytes).write(to: temporary)
            _ = try? FileManager.default.removeItem(at: target)
            try FileManager.default.moveItem(at: temporary, to: target)
        } catch {
            return
        }
    }

    static func fnv1a(_ bytes: [UInt8], seed: UInt64) -> UInt64 {
        var hash = seed
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return hash
    }

    static func bytes(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }

    static func uint64(_ bytes: [UInt8], at offset: Int) -> UInt64 {
        (0..<8).reduce(0) { $0 | UInt64(bytes[offset + $1]) << (8 * $1) }
    }
}
