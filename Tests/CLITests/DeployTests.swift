import ArgumentParser
import Foundation
@testable import mila_infer
import Testing

/// The mila-infer command lines in deploy/ (Kubernetes, KServe, Slurm), as the container or
/// the batch system would run them: `args:` lists after `command: ["mila-infer"]`, and `srun
/// mila-infer ...` lines. Each must parse with the CLI's own parser, validation included.
enum DeployCommands {
    static func yamlCommands(_ text: String) -> [[String]] {
        var commands: [[String]] = []
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var i = 0
        while i < lines.count {
            if lines[i].contains("command: [\"mila-infer\"]") {
                var j = i + 1
                while j < lines.count && !lines[j].trimmingCharacters(in: .whitespaces).hasPrefix("args:") { j += 1 }
                let indent = lines[j].prefix { $0 == " " }.count
                var args: [String] = []
                j += 1
                while j < lines.count, lines[j].prefix(while: { $0 == " " }).count > indent || lines[j].trimmingCharacters(in: .whitespaces).hasPrefix("- ") {
                    let item = lines[j].trimmingCharacters(in: .whitespaces)
                    guard item.hasPrefix("- ") else { break }
                    args.append(String(item.dropFirst(2)).trimmingCharacters(in: CharacterSet(charactersIn: "\"")))
                    j += 1
                }
                commands.append(args)
                i = j
            } else {
                i += 1
            }
        }
        return commands
    }

    static func shellCommands(_ text: String) -> [[String]] {
        text.split(separator: "\n").compactMap { line in
            let words = line.split(separator: " ").map(String.init)
            guard let at = words.firstIndex(of: "mila-infer"), !line.hasPrefix("#") else { return nil }
            return Array(words[(at + 1)...])
        }
    }
}

@Suite("deploy/ manifests") struct DeployTests {
    static let files = ["kubernetes/deployment.yaml", "kubernetes/eval-indexed-job.yaml", "kserve/servingruntime.yaml", "slurm/eval-array.sh"]

    @Test(arguments: files)
    func everyCommandParses(_ file: String) throws {
        let text = try String(contentsOf: CLI.root.appendingPathComponent("deploy").appendingPathComponent(file), encoding: .utf8)
        let commands = file.hasSuffix(".sh") ? DeployCommands.shellCommands(text) : DeployCommands.yamlCommands(text)
        #expect(!commands.isEmpty, "\(file) has no mila-infer command")
        for args in commands {
            #expect(throws: Never.self, "\(file): mila-infer \(args.joined(separator: " "))") { _ = try MilaInfer.parseAsRoot(args) }
        }
    }

    /// The check above can fail: a misspelt flag is refused by the same parser.
    @Test func aWrongFlagIsRefused() {
        #expect(throws: (any Error).self) { _ = try MilaInfer.parseAsRoot(["serve", "--max-batches", "4"]) }
        #expect(DeployCommands.yamlCommands("command: [\"mila-infer\"]\nargs:\n  - serve\n  - --host\n  - \"0.0.0.0\"\nports: []") == [["serve", "--host", "0.0.0.0"]])
    }
}
