import ArgumentParser
import MilaOpenCL

struct Devices: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List OpenCL platforms and devices, marking the one the engine would use.")

    @Option(name: .long, help: "Device to mark as selected: index, platform:device, or part of a name (default: $MILA_DEVICE, else a real GPU, else an accelerator, else a CPU; never a simulator).")
    var device: String?

    func run() throws {
        try reportingErrors {
            let platforms = try CLDiscovery.platforms()
            guard !platforms.flatMap(\.devices).isEmpty else {
                print(DeviceReport.render(platforms, selected: nil))
                throw ExitCode(1)
            }
            let selected: CLDeviceInfo?
            do {
                selected = try CLDiscovery.select(device, from: platforms)
            } catch CLDiscoveryError.onlySimulators {
                selected = nil  // listed, none marked: a simulator is used only when named
            }
            print(DeviceReport.render(platforms, selected: selected))
        }
    }
}
