import Foundation

/// The text of `mila-infer devices`: every platform and device with what the engine cares
/// about, the one it would pick marked with `*`.
public enum DeviceReport {
    public static let noPlatformMessage =
        "no OpenCL platform found: install an OpenCL driver (ICD), e.g. `apt-get install pocl-opencl-icd` for CPUs, or your GPU vendor's OpenCL package"

    public static func render(_ platforms: [CLPlatformInfo], selected: CLDeviceInfo?) -> String {
        guard !platforms.isEmpty else { return noPlatformMessage }
        var lines: [String] = []
        for platform in platforms {
            lines.append("Platform \(platform.index): \(platform.name) (\(platform.vendor)), \(platform.version)")
            if platform.devices.isEmpty { lines.append("    (no devices)") }
            for device in platform.devices {
                let mark = device.selector == selected?.selector ? "*" : " "
                lines.append("  \(mark) \(device.selector)  \(device.name)  [\(device.kindLabel)]")
                lines.append("        compute units \(device.computeUnits), global memory \(bytes(device.globalMemory)), "
                             + "local memory \(bytes(device.localMemory)), max work-group \(device.maxWorkGroupSize)")
                let variant = KernelVariant.resolve(for: device)
                lines.append("        \(device.openCLCVersion), fp16 \(device.supportsFP16 ? "yes" : "no"), "
                             + "fp64 \(device.supportsFP64 ? "yes" : "no"), driver \(device.driverVersion), "
                             + "kernels \(variant), GEMM \(GemmProvider.resolve(for: variant))")
            }
        }
        if selected == nil, !platforms.flatMap(\.devices).isEmpty {
            lines.append("(no device is picked by default: simulators are used only when named)")
        }
        lines.append("* = the device the engine picks (choose with --device or MILA_DEVICE: an index, platform:device, or part of a name); "
                     + "by default a real GPU, else an accelerator, else a CPU (Intel's runtime before PoCL), never a simulator")
        return lines.joined(separator: "\n")
    }

    static func bytes(_ value: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var amount = Double(value), unit = 0
        while amount >= 1024, unit < units.count - 1 { amount /= 1024; unit += 1 }
        return unit == 0 ? "\(value) B" : String(format: "%.1f %@", amount, units[unit])
    }
}
