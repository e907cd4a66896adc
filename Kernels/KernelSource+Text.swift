import Foundation

extension KernelSource {
    /// The environment variable that points at a folder of `.cl` files to use instead of the
    /// embedded copies, so kernels can be edited without rebuilding the binary.
    public static let folderEnvironmentVariable = "MILA_KERNEL_DIR"

    /// The kernel text to compile: from `$MILA_KERNEL_DIR/<file>` when that variable is set,
    /// else the copy embedded at build time.
    public func text() throws -> String {
        try text(folder: ProcessInfo.processInfo.environment[Self.folderEnvironmentVariable])
    }

    /// The kernel text from `folder` when given (and not empty), else the embedded copy.
    public func text(folder: String?) throws -> String {
        guard let folder, !folder.isEmpty else { return embeddedText }
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

    /// Finds `__kernel [__attribute__((...))] void NAME(` declarations, across line breaks.
    static func entryPoints(in text: String) -> [String] {
        let pattern = #"(?:__kernel|\bkernel)\s+(?:__attribute__\s*\(\((?:[^()]|\([^()]*\))*\)\)\s*)*void\s+([A-Za-z_][A-Za-z0-9_]*)\s*\("#
        guard let regex = try? NSRegularExpression(pattern: pattern) else { return [] }
        let range = NSRange(text.startIndex..., in: text)
        return regex.matches(in: text, range: range).compactMap { match in
            Range(match.range(at: 1), in: text).map { String(text[$0]) }
        }
    }
}

/// A kernel file named by `MILA_KERNEL_DIR` could not be read.
public struct KernelFileError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "cannot read kernel file \(path): \(reason)" }
}
