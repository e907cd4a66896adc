import Foundation
import PackagePlugin

/// Embeds every `.safetensors` file in the `Models/` folder of the target it is applied to
/// (`Sources/MilaModelZoo`) as base64 string literals (`EmbeddedModelFiles`). The files are the
/// command's inputs, so replacing one (a retrained model) reruns it.
@main
struct EmbedModels: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let modelsDir = context.package.directoryURL.appending(path: "Sources/MilaModelZoo/Models")
        let names = try FileManager.default.contentsOfDirectory(atPath: modelsDir.path())
            .filter { $0.hasSuffix(".safetensors") }
            .sorted()
        let inputs = names.map { modelsDir.appending(path: $0) }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedModelFiles.swift")
        return [
            .buildCommand(
                displayName: "Embedding \(inputs.count) model files",
                executable: try context.tool(named: "ModelEmbedder").url,
                arguments: [output.path()] + inputs.map { $0.path() },
                inputFiles: inputs,
                outputFiles: [output]
            ),
        ]
    }
}
