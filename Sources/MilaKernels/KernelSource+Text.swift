import Foundation

extension KernelSource {
    /// The environment variable that points at a folder of `.cl` files to use instead of the
    /// embedded copies, so kernels can be edited without rebuilding the binary.
    public static let folderEnvironmentVariable = "MILA_KERNEL_DIR"

    /// The kernel text to compile: from `$MILA_KERNEL_DIR/<file>` when that variable is set,
    /// else the copy embedded at build time.
    public func text() throws -> String {
        guard let folder = ProcessInfo.processInfo.environment[Self.folderEnvironmentVariable],
              !folder.isEmpty
        else { return embeddedText }
        let path = URL(fileURLWithPath: folder).appendingPathComponent(rawValue).path
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw KernelFileError(path: path, reason: "\(error.localizedDescription)")
        }
    }

    /// Names of the `__kernel` functions this file defines, in file order.
    public var entryPoints: [String] {
        Self.entryPoints(in: embeddedText)
    }

    static func entryPoints(in text: String) -> [String] {
        var names: [String] = []
        for line in text.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard trimmed.hasPrefix("__kernel") || trimmed.hasPrefix("kernel ") else { continue }
            guard let open = trimmed.firstIndex(of: "(") else { continue }
            let head = trimmed[..<open].split(separator: " ")
            if let name = head.last { names.append(String(name)) }
        }
        return names
    }
}

/// A kernel file named by `MILA_KERNEL_DIR` could not be read.
public struct KernelFileError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "cannot read kernel file \(path): \(reason)" }
}
