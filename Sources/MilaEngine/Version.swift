import Foundation

/// The engine's version, and the git commit of the checkout the binary was built in.
public enum MilaVersion {
    public static let string = "0.6.0"

    /// The commit of the repository holding the running binary (found by walking up from the
    /// executable to a `.git` folder and reading HEAD, no git needed), or "unknown".
    public static func commit() -> String {
        var folder = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<8 {
            let git = folder.appendingPathComponent(".git")
            if let head = try? String(contentsOf: git.appendingPathComponent("HEAD"), encoding: .utf8) {
                let text = head.trimmingCharacters(in: .whitespacesAndNewlines)
                guard text.hasPrefix("ref: ") else { return String(text.prefix(12)) }
                let ref = String(text.dropFirst(5))
                if let hash = try? String(contentsOf: git.appendingPathComponent(ref), encoding: .utf8) {
                    return String(hash.trimmingCharacters(in: .whitespacesAndNewlines).prefix(12))
                }
                if let packed = try? String(contentsOf: git.appendingPathComponent("packed-refs"), encoding: .utf8),
                   let line = packed.split(separator: "\n").first(where: { $0.hasSuffix(" " + ref) }) {
                    return String(line.prefix(12))
                }
                return "unknown"
            }
            folder = folder.deletingLastPathComponent()
        }
        return "unknown"
    }
}
