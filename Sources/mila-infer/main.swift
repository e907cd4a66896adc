import ArgumentParser
import Foundation
import MilaOpenCL

@main
struct MilaInfer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mila-infer",
        abstract: "Run MILA / MLLA vision models on OpenCL devices.",
        discussion: """
            Environment: MILA_DEVICE selects the device (index, platform:device or name part); \
            MILA_KERNEL_VARIANT=cpu|gpu and MILA_GEMM=register|tiled|clblast force kernel families; \
            MILA_KERNEL_DIR loads Kernels/*.cl from a folder instead of the embedded copies; \
            MILA_CACHE_DIR moves the program cache (MILA_KERNEL_CACHE=0 turns it off).
            """,
        subcommands: [Devices.self])
}

struct Devices: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List OpenCL platforms and devices, marking the one the engine would use.")

    @Option(name: .long, help: "Device to mark as selected: index, platform:device, or part of a name (default: $MILA_DEVICE, else the first GPU, else the first device).")
    var device: String?

    func run() throws {
        do {
            let platforms = try CLDiscovery.platforms()
            guard !platforms.flatMap(\.devices).isEmpty else {
                print(DeviceReport.render(platforms, selected: nil))
                if platforms.isEmpty { throw ExitCode(1) }
                return
            }
            let selected = try CLDiscovery.select(device, from: platforms)
            print(DeviceReport.render(platforms, selected: selected))
        } catch let exit as ExitCode {
            throw exit
        } catch {
            FileHandle.standardError.write(Data("mila-infer: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
