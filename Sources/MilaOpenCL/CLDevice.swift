import COpenCL
import Foundation

/// What the engine needs to know about one OpenCL device, read once at discovery.
public struct CLDeviceInfo: @unchecked Sendable {
    public let id: cl_device_id
    public let platformIndex: Int
    public let deviceIndex: Int
    public let platformName: String
    public let name: String
    public let vendor: String
    public let driverVersion: String
    public let openCLCVersion: String
    public let isGPU: Bool
    public let isCPU: Bool
    public let isAccelerator: Bool
    public let computeUnits: Int
    public let globalMemory: UInt64
    public let localMemory: UInt64
    public let maxAllocation: UInt64
    public let maxWorkGroupSize: Int
    /// Floats in one native vector (CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT; 0 when unreported): on
    /// CPUs 16 with AVX-512, 8 with AVX2 (PoCL and Intel's runtime both say so).
    public let nativeFloatWidth: Int
    public let supportsFP16: Bool
    public let supportsFP64: Bool
    /// Alignment of sub-buffer origins (CL_DEVICE_MEM_BASE_ADDR_ALIGN), in bytes.
    public let baseAddressAlignment: Int

    /// `platform:device` as used by `--device` and `MILA_DEVICE`.
    public var selector: String { "\(platformIndex):\(deviceIndex)" }

    /// A simulator or emulator (Oclgrind, Intel's FPGA emulator): it runs every kernel correctly,
    /// in an interpreter or on the host, thousands of times slower than real hardware, whatever
    /// device type it reports (Oclgrind says "GPU"). Never the default device.
    public var isSimulator: Bool {
        let text = [platformName, name, vendor].joined(separator: " ").lowercased()
        return CLDiscovery.simulatorMarkers.contains { text.contains($0) }
    }

    /// The device type as `devices` shows it, simulators marked.
    public var kindLabel: String {
        let type = isGPU ? "GPU" : isCPU ? "CPU" : isAccelerator ? "accelerator" : "other"
        return isSimulator ? "\(type), simulator" : type
    }

    /// The kernel family that suits this device: GPUs get local-memory tiling, everything else
    /// (CPUs, accelerators of unknown kind) the register-tiled CPU kernels.
    public var preferredVariant: KernelVariant { isGPU ? .gpu : .cpu }
}

public struct CLPlatformInfo: Sendable {
    public let index: Int
    public let name: String
    public let vendor: String
    public let version: String
    public let devices: [CLDeviceInfo]
}

/// Platform and device discovery, and selection by index or name substring.
public enum CLDiscovery {
    /// The environment variable that selects a device: an index into the flat device list
    /// (`1`), `platform:device` (`0:1`), or a case-insensitive substring of the device or platform
    /// name (`nvidia`, `pthread`).
    public static let deviceEnvironmentVariable = "MILA_DEVICE"

    /// Sets the PoCL knobs that help before the first OpenCL call: worker pinning
    /// (POCL_AFFINITY=1: +10-20% and far less noise on the measured VM), unless the user set it.
    public static func configureEnvironment() {
        if getenv("POCL_AFFINITY") == nil { setenv("POCL_AFFINITY", "1", 0) }
    }

    /// All platforms with their devices. An empty list means no ICD is installed.
    /// Discovered once per process (a Swift static is initialised exactly once, under a lock):
    /// concurrent first calls into the ICD loader were seen to return no platforms.
    public static func platforms() throws -> [CLPlatformInfo] {
        try discovered.get()
    }

    private static let discovered: Result<[CLPlatformInfo], Error> = Result { try discover() }

    private static func discover() throws -> [CLPlatformInfo] {
        configureEnvironment()
        var count: cl_uint = 0
        let status = clGetPlatformIDs(0, nil, &count)
        installExitGuard()
        if status == -1001 || count == 0 { return [] }  // CL_PLATFORM_NOT_FOUND_KHR: no ICD
        try CLError.check(status, "clGetPlatformIDs")
        var ids = [cl_platform_id?](repeating: nil, count: Int(count))
        try CLError.check(clGetPlatformIDs(count, &ids, nil), "clGetPlatformIDs")
        return try ids.enumerated().compactMap { index, id in
            guard let id else { return nil }
            let name = try platformString(id, cl_platform_info(CL_PLATFORM_NAME))
            var deviceCount: cl_uint = 0
            let st = clGetDeviceIDs(id, cl_device_type(CL_DEVICE_TYPE_ALL), 0, nil, &deviceCount)
            var devices: [CLDeviceInfo] = []
            if st == CL_SUCCESS, deviceCount > 0 {
                var deviceIDs = [cl_device_id?](repeating: nil, count: Int(deviceCount))
                try CLError.check(clGetDeviceIDs(id, cl_device_type(CL_DEVICE_TYPE_ALL), deviceCount, &deviceIDs, nil),
                                  "clGetDeviceIDs")
                devices = try deviceIDs.enumerated().compactMap { deviceIndex, deviceID in
                    guard let deviceID else { return nil }
                    return try describe(deviceID, platformIndex: index, deviceIndex: deviceIndex, platformName: name)
                }
            } else if st != CL_DEVICE_NOT_FOUND {
                try CLError.check(st, "clGetDeviceIDs")
            }
            return CLPlatformInfo(index: index, name: name,
                                  vendor: try platformString(id, cl_platform_info(CL_PLATFORM_VENDOR)),
                                  version: try platformString(id, cl_platform_info(CL_PLATFORM_VERSION)),
                                  devices: devices)
        }
    }

    /// Name fragments (lower case, of platform, device or vendor) that mark a simulator.
    static let simulatorMarkers = ["oclgrind", "emulat"]

    /// CPU implementations in the order the engine prefers them when no GPU or accelerator is
    /// present: the faster first, by the kernel benchmark (`mila-kernel-bench --resolution 224`,
    /// both on one machine in one run; README "OpenCL implementations"): Intel's runtime ran
    /// every CPU kernel family faster than PoCL (GEMM 203 vs 176 GFLOP/s, dense 3x3 150 vs 114,
    /// depthwise 62 vs 33, attention 66 vs 40) and MLLA-T 1-6% faster whole. Matched against
    /// the platform name; a CPU implementation not listed comes after these.
    public static let cpuPreference = ["intel(r) opencl", "portable computing language"]

    /// The device the engine uses when none is named: the first real GPU, else the first real
    /// accelerator, else a CPU (by `cpuPreference`); never a simulator. Nil when there is no
    /// device or only simulators.
    public static func defaultDevice(from all: [CLDeviceInfo]) -> CLDeviceInfo? {
        let real = all.filter { !$0.isSimulator }
        if let gpu = real.first(where: \.isGPU) { return gpu }
        if let accelerator = real.first(where: \.isAccelerator) { return accelerator }
        func rank(_ device: CLDeviceInfo) -> Int {
            let platform = device.platformName.lowercased()
            return cpuPreference.firstIndex { platform.contains($0) } ?? cpuPreference.count
        }
        // min(by:) keeps the first of equal ranks: discovery order breaks ties.
        return real.filter(\.isCPU).min { rank($0) < rank($1) } ?? real.first
    }

    /// The ICD loader loads every installed driver into the process on the first call. Several
    /// drivers together (PoCL, Intel's runtime and Oclgrind each carry their own LLVM) were seen
    /// to crash in their C++ static destructors at exit, after all work was done ("corrupted
    /// double-linked list", "pure virtual function called", SIGABRT) - now and then, in test runs
    /// that used all three. So at exit the process flushes stdio and ends with its exit status
    /// without running the drivers' destructors (`on_exit`, registered after they are loaded, so
    /// it runs before theirs). `MILA_OPENCL_EXIT_GUARD=0` turns this off (leak checkers).
    private static func installExitGuard() {
        guard ProcessInfo.processInfo.environment["MILA_OPENCL_EXIT_GUARD"] != "0" else { return }
        on_exit({ status, _ in
            fflush(nil)
            _exit(status)
        }, nil)
    }

    /// Picks a device: by `selector` if given, else `$MILA_DEVICE`, else `defaultDevice`.
    public static func select(_ selector: String? = nil, from platforms: [CLPlatformInfo]) throws -> CLDeviceInfo {
        let all = platforms.flatMap(\.devices)
        guard !all.isEmpty else { throw CLDiscoveryError.noDevice }
        let environment = ProcessInfo.processInfo.environment[deviceEnvironmentVariable]
        guard let raw = (selector ?? environment)?.trimmingCharacters(in: .whitespaces), !raw.isEmpty else {
            guard let device = defaultDevice(from: all) else {
                throw CLDiscoveryError.onlySimulators(all.map { "\($0.selector) \($0.name)" })
            }
            return device
        }
        if let index = Int(raw) {
            guard all.indices.contains(index) else {
                throw CLDiscoveryError.noMatch(selector: raw, available: all.map { "\($0.selector) \($0.name)" })
            }
            return all[index]
        }
        let parts = raw.split(separator: ":")
        if parts.count == 2, let p = Int(parts[0]), let d = Int(parts[1]) {
            if let match = all.first(where: { $0.platformIndex == p && $0.deviceIndex == d }) { return match }
            throw CLDiscoveryError.noMatch(selector: raw, available: all.map { "\($0.selector) \($0.name)" })
        }
        let needle = raw.lowercased()
        // The platform's name first (it names the implementation: on an Intel CPU "intel" is in
        // PoCL's device name too, and means Intel's runtime), then the device and vendor names and
        // the OpenCL C version string, which names PoCL.
        if let match = all.first(where: { $0.platformName.lowercased().contains(needle) })
            ?? all.first(where: { [$0.name, $0.vendor, $0.openCLCVersion].contains { $0.lowercased().contains(needle) } }) {
            return match
        }
        throw CLDiscoveryError.noMatch(selector: raw, available: all.map { "\($0.selector) \($0.name)" })
    }

    static func describe(_ id: cl_device_id, platformIndex: Int, deviceIndex: Int, platformName: String) throws -> CLDeviceInfo {
        let type: cl_device_type = try deviceValue(id, CL_DEVICE_TYPE)
        let extensions = try deviceString(id, CL_DEVICE_EXTENSIONS)
        return CLDeviceInfo(
            id: id, platformIndex: platformIndex, deviceIndex: deviceIndex, platformName: platformName,
            name: try deviceString(id, CL_DEVICE_NAME),
            vendor: try deviceString(id, CL_DEVICE_VENDOR),
            driverVersion: try deviceString(id, CL_DRIVER_VERSION),
            openCLCVersion: try deviceString(id, CL_DEVICE_OPENCL_C_VERSION),
            isGPU: type & cl_device_type(CL_DEVICE_TYPE_GPU) != 0,
            isCPU: type & cl_device_type(CL_DEVICE_TYPE_CPU) != 0,
            isAccelerator: type & cl_device_type(CL_DEVICE_TYPE_ACCELERATOR) != 0,
            computeUnits: Int(try deviceValue(id, CL_DEVICE_MAX_COMPUTE_UNITS) as cl_uint),
            globalMemory: try deviceValue(id, CL_DEVICE_GLOBAL_MEM_SIZE) as cl_ulong,
            localMemory: try deviceValue(id, CL_DEVICE_LOCAL_MEM_SIZE) as cl_ulong,
            maxAllocation: try deviceValue(id, CL_DEVICE_MAX_MEM_ALLOC_SIZE) as cl_ulong,
            maxWorkGroupSize: Int(try deviceValue(id, CL_DEVICE_MAX_WORK_GROUP_SIZE) as Int),
            nativeFloatWidth: (try? deviceValue(id, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT) as cl_uint).map(Int.init) ?? 0,
            supportsFP16: extensions.contains("cl_khr_fp16"),
            supportsFP64: extensions.contains("cl_khr_fp64"),
            baseAddressAlignment: max(4, Int(try deviceValue(id, CL_DEVICE_MEM_BASE_ADDR_ALIGN) as cl_uint) / 8))
    }

    static func deviceString(_ id: cl_device_id, _ param: Int32) throws -> String {
        var size = 0
        try CLError.check(clGetDeviceInfo(id, cl_device_info(param), 0, nil, &size), "clGetDeviceInfo")
        var bytes = [CChar](repeating: 0, count: size + 1)
        try CLError.check(clGetDeviceInfo(id, cl_device_info(param), size, &bytes, nil), "clGetDeviceInfo")
        return String(decoding: bytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            .trimmingCharacters(in: .whitespaces)
    }

    static func deviceValue<T>(_ id: cl_device_id, _ param: Int32) throws -> T {
        let pointer = UnsafeMutablePointer<T>.allocate(capacity: 1)
        defer { pointer.deallocate() }
        try CLError.check(clGetDeviceInfo(id, cl_device_info(param), MemoryLayout<T>.size, pointer, nil), "clGetDeviceInfo")
        return pointer.pointee
    }

    static func platformString(_ id: cl_platform_id, _ param: cl_platform_info) throws -> String {
        var size = 0
        try CLError.check(clGetPlatformInfo(id, param, 0, nil, &size), "clGetPlatformInfo")
        var bytes = [CChar](repeating: 0, count: size + 1)
        try CLError.check(clGetPlatformInfo(id, param, size, &bytes, nil), "clGetPlatformInfo")
        return String(decoding: bytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

public enum CLDiscoveryError: Error, CustomStringConvertible {
    case noDevice
    case noMatch(selector: String, available: [String])
    case onlySimulators([String])

    public var description: String {
        switch self {
        case .noDevice:
            return "no OpenCL platform or device found; install one, e.g. `apt-get install pocl-opencl-icd` (CPU) or your GPU vendor's OpenCL driver"
        case let .onlySimulators(devices):
            return "only simulated OpenCL devices found (\(devices.joined(separator: ", "))); they are thousands of times slower than hardware, so none is chosen by default: name one with --device or MILA_DEVICE, or install a driver, e.g. `apt-get install pocl-opencl-icd`"
        case let .noMatch(selector, available):
            return "no OpenCL device matches '\(selector)'; available: \(available.joined(separator: ", "))"
        }
    }
}

/// The two kernel families: register-tiled, no local memory, wide vectors (CPUs); local-memory
/// tiled work-groups with float4 (GPUs). Chosen by device type; `MILA_KERNEL_VARIANT=cpu|gpu`
/// forces one, so the GPU family is tested on PoCL too.
public enum KernelVariant: String, CaseIterable, Sendable {
    case cpu
    case gpu

    public static let environmentVariable = "MILA_KERNEL_VARIANT"

    public static func resolve(for device: CLDeviceInfo) -> KernelVariant {
        if let raw = ProcessInfo.processInfo.environment[environmentVariable], let forced = KernelVariant(rawValue: raw.lowercased()) {
            return forced
        }
        return device.preferredVariant
    }
}
