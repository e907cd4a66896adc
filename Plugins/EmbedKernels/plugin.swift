import Foundation
import PackagePlugin

/// Turns every `.cl` file in the folder of the target it is applied to (`Kernels/`) into one
/// Swift file with a string per kernel source and a typed enum (`KernelSource`). The .cl files
/// are the command's inputs, so editing one reruns it; the folder is the target's, so adding or
/// removing one makes SwiftPM plan the build again, which lists the folder anew.
@main
struct EmbedKernels: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let kernelsDir = context.package.directoryURL.appending(path: "Kernels")
        let names = try FileManager.default.contentsOfDirectory(atPath: kernelsDir.path())
            .filter { $0.hasSuffix(".cl") }
            .sorted()
        let inputs = names.map { kernelsDir.appending(path: $0) }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedKernels.swift")
        return [
            .buildCommand(
                displayName: "Embedding \(inputs.count) OpenCL kernel files",
                executable: try context.tool(named: "KernelEmbedder").url,
                arguments: [output.path()] + inputs.map { $0.path() },
                inputFiles: inputs,
                outputFiles: [output]
            ),
        ]
    }
}
