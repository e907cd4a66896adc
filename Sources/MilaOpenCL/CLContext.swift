import COpenCL
import Foundation
import MilaCore
import MilaKernels

/// One argument of a kernel launch.
public enum KernelArgument {
    case buffer(CLBuffer)
    case int(Int32)
    case float(Float)
    /// `__local` scratch of this many bytes.
    case local(bytes: Int)
}

/// The kernel launches of one `CLContext.record` call (see there).
public final class LaunchRecording: @unchecked Sendable {
    struct Launch {
        let kernel: CLKernel
        let global: [Int]
        let local: [Int]?
        let arguments: [KernelArgument]
        let tag: Int
    }
    var launches: [Launch] = []
    /// False when the recorded work enqueued anything but kernel launches.
    public internal(set) var isComplete = true
    public var count: Int { launches.count }
    /// The recorded kernels' names, in launch order.
    public var kernelNames: [String] { launches.map(\.kernel.name) }
    /// Every buffer the recorded launches read or write.
    public var buffers: [CLBuffer] {
        var seen = Set<ObjectIdentifier>()
        return launches.flatMap { launch in
            launch.arguments.compactMap { argument -> CLBuffer? in
                if case let .buffer(buffer) = argument, seen.insert(ObjectIdentifier(buffer)).inserted { return buffer }
                return nil
            }
        }
    }
}

/// A compiled kernel entry point of one program.
public final class CLKernel: @unchecked Sendable {
    let kernel: cl_kernel
    public let name: String
    /// Set at its first launch (for `launchedKernelNames`), under the context's lock.
    var launched = false
    init(_ kernel: cl_kernel, name: String) { self.kernel = kernel; self.name = name }
    deinit { clReleaseKernel(kernel) }
}

/// The OpenCL runtime for one device: context, an in-order queue with profiling, programs built
/// once per (source, options) and cached in memory and on disk, buffer reuse, kernel launches.
///
/// Thread safety: every queue and kernel-argument operation takes `lock`, so one context may be
/// shared by concurrent callers (tests run in parallel); work is still serialised on one queue.
public final class CLContext: @unchecked Sendable {
    public let device: CLDeviceInfo
    public let variant: KernelVariant
    let context: cl_context
    let queue: cl_command_queue
    let diskCache: ProgramDiskCache?
    private let lock = NSRecursiveLock()
    private var programs: [String: cl_program] = [:]
    private var kernels: [String: CLKernel] = [:]
    private let pool = BufferPool()
    private var launched: Set<String> = []
    private var recordedEvents: [(name: String, tag: Int, event: CLEvent)]?
    private var tag = -1
    private var clblastFailure: String?
    private var gemmTuningValue: GemmTuning?
    private var streamMinBytesValue = CLContext.defaultStreamMinBytes
    private var recording: LaunchRecording?

    /// Why CLBlast's SGEMM failed on this device, once it has: the default GEMM provider then
    /// falls back to gemm_tiled for the context's life.
    public var clblastUnavailable: String? {
        lock.lock(); defer { lock.unlock() }
        return clblastFailure
    }

    /// Stops the default GEMM provider using CLBlast on this context (the engine calls it when
    /// CLBlast fails); the first reason is kept and said once on stderr.
    public func markCLBlastUnavailable(_ error: Error) {
        lock.lock(); defer { lock.unlock() }
        guard clblastFailure == nil else { return }
        clblastFailure = "\(error)"
        FileHandle.standardError.write(Data("mila: CLBlast failed on \(device.name) (\(error)); GEMMs run on gemm_tiled from now on\n".utf8))
    }

    /// Outputs of at least this many bytes are written with non-temporal stores by the CPU
    /// kernels gemm_reg, conv3x3, conv3x3_igemm, dwconv3x3_rows and dwconv3x3_strips_s2 (EPI_STREAM,
    /// `MILA_STREAM16`/`VSTORE_OUT` in Kernels/common.cl): they go to DRAM anyway, and a normal
    /// store first reads each line it writes. 8 MiB by default (a quarter of the build VM's
    /// 32 MiB L3, so a smaller output stays in cache for the next kernel); `MILA_STREAM_MIN_KB`
    /// sets it, 0 turns streaming off. On PoCL (Zen 4) streaming made the GEMMs at 1024x1024
    /// 12-14% faster; Intel's runtime measured unchanged.
    public static let defaultStreamMinBytes: Int = {
        let kb = ProcessInfo.processInfo.environment["MILA_STREAM_MIN_KB"].flatMap { Int($0) } ?? 8192
        return kb > 0 ? kb * 1024 : .max
    }()

    /// This context's streaming threshold in bytes (`defaultStreamMinBytes` unless set; tests
    /// set 0 to stream every output, `.max` to stream none).
    public var streamMinBytes: Int {
        get { lock.lock(); defer { lock.unlock() }; return streamMinBytesValue }
        set { lock.lock(); defer { lock.unlock() }; streamMinBytesValue = newValue }
    }

    /// Whether an output of `elements` floats takes non-temporal stores: the CPU variant's
    /// kernels only (the GPU kernels store through their own paths).
    public func streamsOutput(elements: Int) -> Bool {
        variant == .cpu && elements * MemoryLayout<Float>.size >= streamMinBytes
    }

    /// How gemm_reg splits its work here: what `useGemmTuning` set (the engine's tuning pass),
    /// else `GemmTuning.defaults(for:variant:)`; `MILA_GEMM_TILE` (4x64, 6x16, 3x32, 8x32),
    /// `MILA_GEMM_ROW_TILES`, `MILA_GEMM_COL_TILES` and `MILA_GEMM_PANEL_K` override either.
    public var gemmTuning: GemmTuning {
        lock.lock(); defer { lock.unlock() }
        var tuning = gemmTuningValue ?? .defaults(for: device, variant: variant)
        let environment = ProcessInfo.processInfo.environment
        if let raw = environment["MILA_GEMM_ROW_TILES"], let value = Int(raw), [1, 2, 4, 8, 16, 32, 64].contains(value) { tuning.rowTiles = value }
        if let raw = environment["MILA_GEMM_COL_TILES"], let value = Int(raw), [1, 2, 4, 8, 16, 32, 64].contains(value) { tuning.colTiles = value }
        if let raw = environment["MILA_GEMM_PANEL_K"], let value = Int(raw), value >= 16 { tuning.panelRows = value }
        if let raw = environment["MILA_GEMM_TILE"], let tile = GemmTile(parsing: raw) { tuning.tile = tile }
        return tuning
    }

    public func useGemmTuning(_ tuning: GemmTuning?) {
        lock.lock(); defer { lock.unlock() }
        gemmTuningValue = tuning
    }

    /// Opens `device` (or the one `CLDiscovery.select` picks for `selector`).
    public convenience init(selector: String? = nil, variant: KernelVariant? = nil) throws {
        let device = try CLDiscovery.select(selector, from: try CLDiscovery.platforms())
        try self.init(device: device, variant: variant)
    }

    public init(device: CLDeviceInfo, variant: KernelVariant? = nil, diskCache: ProgramDiskCache? = ProgramDiskCache.fromEnvironment()) throws {
        self.device = device
        self.variant = variant ?? KernelVariant.resolve(for: device)
        self.diskCache = diskCache
        var status: cl_int = 0
        var id: cl_device_id? = device.id
        guard let context = clCreateContext(nil, 1, &id, nil, nil, &status), status == CL_SUCCESS else {
            throw CLError(call: "clCreateContext", status: status, context: device.name)
        }
        self.context = context
        guard let queue = clCreateCommandQueue(context, device.id, cl_command_queue_properties(CL_QUEUE_PROFILING_ENABLE), &status),
              status == CL_SUCCESS
        else {
            clReleaseContext(context)
            throw CLError(call: "clCreateCommandQueue", status: status, context: device.name)
        }
        self.queue = queue
    }

    deinit {
        kernels.removeAll()
        pool.drain()
        for program in programs.values { clReleaseProgram(program) }
        clReleaseCommandQueue(queue)
        clReleaseContext(context)
    }

    // MARK: Buffers

    /// A device buffer of `count` floats, recycled from the pool when one of that size is free.
    /// Its contents are undefined.
    public func buffer(count: Int) throws -> CLBuffer {
        guard count > 0 else {
            throw CLError(call: "clCreateBuffer", status: CL_INVALID_BUFFER_SIZE, context: "zero-sized buffer")
        }
        lock.lock(); defer { lock.unlock() }
        return try pool.acquire(count: count, context: context)
    }

    /// Gives a buffer back for reuse by a later `buffer(count:)`.
    public func recycle(_ buffer: CLBuffer) {
        lock.lock(); defer { lock.unlock() }
        pool.recycle(buffer)
    }

    /// (allocations, reuses) made by the pool so far.
    public var poolStatistics: (allocations: Int, reuses: Int) {
        lock.lock(); defer { lock.unlock() }
        return (pool.allocations, pool.reuses)
    }

    /// Byte offsets of regions of `counts` floats laid out one after another, each aligned for
    /// the device's sub-buffers, and the total size in bytes.
    public func arenaLayout(counts: [Int]) -> (offsets: [Int], bytes: Int) {
        let alignment = max(device.baseAddressAlignment, 256)
        var offsets: [Int] = []
        var total = 0
        for count in counts {
            offsets.append(total)
            total += (max(count, 1) * 4 + alignment - 1) / alignment * alignment
        }
        return (offsets, total)
    }

    /// One device allocation split into regions of `counts` floats (`arenaLayout`): the
    /// activation arena of a memory plan.
    public func arena(counts: [Int]) throws -> [CLBuffer] {
        let layout = arenaLayout(counts: counts)
        let parent = try CLBuffer(context: context, count: max(layout.bytes / 4, 1))
        return try zip(layout.offsets, counts).map { try CLBuffer(subBufferOf: parent, offset: $0, count: max($1, 1)) }
    }

    /// Device tables that depend only on sizes (RoPE rotations per grid), built once and kept.
    private var sizeTables: [String: [CLBuffer]] = [:]

    /// The cached tables for `key`, made by `make` the first time.
    func sizeTables(_ key: String, make: () throws -> [CLBuffer]) rethrows -> [CLBuffer] {
        lock.lock(); defer { lock.unlock() }
        if let tables = sizeTables[key] { return tables }
        let tables = try make()
        sizeTables[key] = tables
        return tables
    }

    /// Copies host floats into a new buffer (blocking).
    public func upload(_ values: [Float]) throws -> CLBuffer {
        let buffer = try self.buffer(count: max(values.count, 1))
        try write(values, to: buffer)
        return buffer
    }

    /// Copies IEEE half bit patterns into a new buffer (blocking). The buffer's `count` is in
    /// float-sized slots: ceil(n / 2).
    public func upload(halfBits: [UInt16]) throws -> CLBuffer {
        let buffer = try self.buffer(count: max((halfBits.count + 1) / 2, 1))
        guard !halfBits.isEmpty else { return buffer }
        lock.lock(); defer { lock.unlock() }
        try halfBits.withUnsafeBytes { raw in
            recording?.isComplete = false
            try CLError.check(clEnqueueWriteBuffer(queue, buffer.mem, cl_bool(CL_TRUE), 0, raw.count, raw.baseAddress, 0, nil, nil),
                              "clEnqueueWriteBuffer")
        }
        return buffer
    }

    public func write(_ values: [Float], to buffer: CLBuffer, offset: Int = 0) throws {
        guard offset + values.count <= buffer.count else {
            throw CLError(call: "clEnqueueWriteBuffer", status: CL_INVALID_VALUE,
                          context: "\(values.count) floats at \(offset) into a buffer of \(buffer.count)")
        }
        guard !values.isEmpty else { return }
        lock.lock(); defer { lock.unlock() }
        try values.withUnsafeBytes { raw in
            recording?.isComplete = false
            try CLError.check(clEnqueueWriteBuffer(queue, buffer.mem, cl_bool(CL_TRUE), offset * 4, raw.count, raw.baseAddress, 0, nil, nil),
                              "clEnqueueWriteBuffer")
        }
    }

    /// Reads `count` floats (default: all) back; blocks until the queue has produced them.
    public func download(_ buffer: CLBuffer, count: Int? = nil) throws -> [Float] {
        let n = count ?? buffer.count
        guard n <= buffer.count else {
            throw CLError(call: "clEnqueueReadBuffer", status: CL_INVALID_VALUE, context: "\(n) floats from a buffer of \(buffer.count)")
        }
        var values = [Float](repeating: 0, count: n)
        lock.lock(); defer { lock.unlock() }
        try values.withUnsafeMutableBytes { raw in
            recording?.isComplete = false
            try CLError.check(clEnqueueReadBuffer(queue, buffer.mem, cl_bool(CL_TRUE), 0, raw.count, raw.baseAddress, 0, nil, nil),
                              "clEnqueueReadBuffer")
        }
        return values
    }

    /// Waits until every command enqueued so far has finished.
    public func finish() throws {
        lock.lock(); defer { lock.unlock() }
        try CLError.check(clFinish(queue), "clFinish")
    }

    // MARK: Programs and kernels

    /// The build options every program gets, before its own defines. No fast-math flags: the
    /// agreement tests against the reference hold without them.
    public static let baseOptions = "-cl-std=CL1.2"

    /// `baseOptions` for this device: simulators also get MILA_NO_PREFETCH (Oclgrind builds
    /// `__builtin_prefetch` but cannot create a kernel that calls it).
    var deviceOptions: String { device.isSimulator ? Self.baseOptions + " -DMILA_NO_PREFETCH" : Self.baseOptions }

    /// The kernel `name` from `source` built with `defines` (`["RM=4", "VEC=16"]`); built once
    /// per (source, options) and cached in memory and on disk.
    public func kernel(_ source: KernelSource, _ name: String, defines: [String] = []) throws -> CLKernel {
        let options = ([deviceOptions] + defines.map { "-D\($0)" }).joined(separator: " ")
        let key = "\(source.rawValue)|\(options)|\(name)"
        lock.lock(); defer { lock.unlock() }
        if let cached = kernels[key] { return cached }
        return try entryPoint(name, of: try program(source, options: options), file: source.rawValue, key: key)
    }

    /// Creates the kernel `name` of a built `program` and caches it under `key` (lock held).
    private func entryPoint(_ name: String, of program: cl_program, file: String, key: String) throws -> CLKernel {
        var status: cl_int = 0
        guard let kernel = clCreateKernel(program, name, &status), status == CL_SUCCESS else {
            throw CLError(call: "clCreateKernel", status: status, context: "\(name) in \(file)")
        }
        let wrapped = CLKernel(kernel, name: name)
        kernels[key] = wrapped
        return wrapped
    }

    private func program(_ source: KernelSource, options: String) throws -> cl_program {
        // common.cl (shared math and vector helpers) is prepended to every other file.
        let text = source == .common ? try source.text() : try KernelSource.common.text() + "\n" + source.text()
        let memoryKey = "\(source.rawValue)|\(options)|\(text.hashValue)"
        if let program = programs[memoryKey] { return program }
        let diskKey = ProgramDiskCache.key(deviceName: device.name, driverVersion: device.driverVersion, source: text, options: options)
        if let binary = diskCache?.load(key: diskKey), let program = try? programFromBinary(binary, options: options) {
            programs[memoryKey] = program
            return program
        }
        let program = try programFromSource(text, file: source.rawValue, options: options)
        programs[memoryKey] = program
        if let diskCache, let binary = try? binaryOf(program) { diskCache.store(key: diskKey, binary: binary) }
        return program
    }

    /// Builds OpenCL C `text` (with common.cl prepended) without caching it: for tools and tests
    /// that check a source compiles. Throws `CLError` with the build log when it does not.
    public func compile(text: String, file: String, defines: [String] = []) throws {
        let options = ([deviceOptions] + defines.map { "-D\($0)" }).joined(separator: " ")
        lock.lock(); defer { lock.unlock() }
        let program = try programFromSource(try KernelSource.common.text() + "\n" + text, file: file, options: options)
        clReleaseProgram(program)
    }

    /// The kernel `name` from OpenCL C `text` (with common.cl prepended), built once per text and
    /// kept in memory only: for tests and tools that launch a kernel of their own.
    public func kernel(text: String, file: String, name: String) throws -> CLKernel {
        let source = try KernelSource.common.text() + "\n" + text
        let key = "text:\(file)|\(source.hashValue)|\(name)"
        lock.lock(); defer { lock.unlock() }
        if let cached = kernels[key] { return cached }
        let memoryKey = "text:\(file)|\(source.hashValue)"
        let program = try programs[memoryKey] ?? programFromSource(source, file: file, options: deviceOptions)
        programs[memoryKey] = program
        return try entryPoint(name, of: program, file: file, key: key)
    }

    private func programFromSource(_ text: String, file: String, options: String) throws -> cl_program {
        var status: cl_int = 0
        let program: cl_program? = text.withCString { cString in
            var pointer: UnsafePointer<CChar>? = cString
            return clCreateProgramWithSource(context, 1, &pointer, nil, &status)
        }
        guard let program, status == CL_SUCCESS else {
            throw CLError(call: "clCreateProgramWithSource", status: status, context: file)
        }
        try build(program, options: options, what: "\(file) with \(options)")
        return program
    }

    private func programFromBinary(_ binary: [UInt8], options: String) throws -> cl_program {
        var status: cl_int = 0, binaryStatus: cl_int = 0
        var length = binary.count
        var id: cl_device_id? = device.id
        let program: cl_program? = binary.withUnsafeBufferPointer { buffer in
            var pointer: UnsafePointer<UInt8>? = buffer.baseAddress
            return clCreateProgramWithBinary(context, 1, &id, &length, &pointer, &binaryStatus, &status)
        }
        guard let program, status == CL_SUCCESS, binaryStatus == CL_SUCCESS else {
            if let program { clReleaseProgram(program) }
            throw CLError(call: "clCreateProgramWithBinary", status: status != CL_SUCCESS ? status : binaryStatus)
        }
        do {
            try build(program, options: options, what: "cached binary")
        } catch {
            clReleaseProgram(program)
            throw error
        }
        return program
    }

    private func build(_ program: cl_program, options: String, what: String) throws {
        var id: cl_device_id? = device.id
        let status = clBuildProgram(program, 1, &id, options, nil, nil)
        guard status == CL_SUCCESS else {
            let log = buildLog(program)
            clReleaseProgram(program)
            throw CLError(call: "clBuildProgram", status: status, buildLog: log, context: what)
        }
    }

    private func buildLog(_ program: cl_program) -> String {
        var size = 0
        guard clGetProgramBuildInfo(program, device.id, cl_program_build_info(CL_PROGRAM_BUILD_LOG), 0, nil, &size) == CL_SUCCESS,
              size > 0 else { return "" }
        var bytes = [CChar](repeating: 0, count: size + 1)
        _ = clGetProgramBuildInfo(program, device.id, cl_program_build_info(CL_PROGRAM_BUILD_LOG), size, &bytes, nil)
        return String(decoding: bytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func binaryOf(_ program: cl_program) throws -> [UInt8] {
        var size = 0
        try CLError.check(clGetProgramInfo(program, cl_program_info(CL_PROGRAM_BINARY_SIZES), MemoryLayout<Int>.size, &size, nil),
                          "clGetProgramInfo")
        guard size > 0 else { return [] }
        var binary = [UInt8](repeating: 0, count: size)
        try binary.withUnsafeMutableBufferPointer { buffer in
            var pointer: UnsafeMutablePointer<UInt8>? = buffer.baseAddress
            try CLError.check(clGetProgramInfo(program, cl_program_info(CL_PROGRAM_BINARIES), MemoryLayout<UnsafeMutablePointer<UInt8>>.size,
                                               &pointer, nil), "clGetProgramInfo")
        }
        return binary
    }

    // MARK: Launches

    /// Enqueues `kernel` over `global` work-items (rounded up to a multiple of `local` when given).
    /// Returns the command's event when `profile` is set.
    @discardableResult
    public func launch(_ kernel: CLKernel, global: [Int], local: [Int]? = nil, arguments: [KernelArgument],
                       profile: Bool = false) throws -> CLEvent? {
        precondition(!global.isEmpty && global.count <= 3 && (local == nil || local!.count == global.count))
        lock.lock(); defer { lock.unlock() }
        for (index, argument) in arguments.enumerated() {
            let status: cl_int
            switch argument {
            case let .buffer(buffer):
                var mem: cl_mem? = buffer.mem
                status = clSetKernelArg(kernel.kernel, cl_uint(index), MemoryLayout<cl_mem>.size, &mem)
            case var .int(value):
                status = clSetKernelArg(kernel.kernel, cl_uint(index), 4, &value)
            case var .float(value):
                status = clSetKernelArg(kernel.kernel, cl_uint(index), 4, &value)
            case let .local(bytes):
                status = clSetKernelArg(kernel.kernel, cl_uint(index), bytes, nil)
            }
            try CLError.check(status, "clSetKernelArg", context: "\(kernel.name) argument \(index)")
        }
        if let local {
            try WorkGroupLimit.check(local: local, maximum: device.maxWorkGroupSize, kernel: kernel.name, device: device.name)
        }
        var globalSize = global.map { max($0, 1) }
        if let local {
            globalSize = zip(globalSize, local).map { ($0 + $1 - 1) / $1 * $1 }
        }
        var localSize = local ?? []
        let profile = profile || recordedEvents != nil
        var event: cl_event?
        let status = globalSize.withUnsafeMutableBufferPointer { g in
            localSize.withUnsafeMutableBufferPointer { l in
                let localPointer = local == nil ? nil : l.baseAddress
                if profile {
                    return clEnqueueNDRangeKernel(queue, kernel.kernel, cl_uint(global.count), nil, g.baseAddress,
                                                  localPointer, 0, nil, &event)
                }
                return clEnqueueNDRangeKernel(queue, kernel.kernel, cl_uint(global.count), nil, g.baseAddress,
                                              localPointer, 0, nil, nil)
            }
        }
        try CLError.check(status, "clEnqueueNDRangeKernel", context: "\(kernel.name) global \(globalSize) local \(local.map { "\($0)" } ?? "auto")")
        recording?.launches.append(.init(kernel: kernel, global: global, local: local, arguments: arguments, tag: tag))
        if !kernel.launched {
            kernel.launched = true
            launched.insert(kernel.name)
        }
        let wrapped = event.map(CLEvent.init)
        if let wrapped { recordEvents(wrapped, name: kernel.name) }
        return wrapped
    }

    // MARK: Recorded launches

    /// Runs `body` and returns the kernel launches it made, in order, with their arguments,
    /// sizes and launch tags. The recording is complete only if `body` enqueued nothing but
    /// kernel launches (a write, a read or a CLBlast call inside it makes it incomplete: such
    /// a forward does host work that a replay would skip); `unrecorded` runs work that is not
    /// part of it (the per-run input upload).
    public func record(_ body: () throws -> Void) throws -> LaunchRecording {
        lock.lock(); defer { lock.unlock() }
        let made = LaunchRecording()
        let outer = recording
        recording = made
        defer { recording = outer }
        try body()
        // The forward's temporaries went back to the pool as its ops finished; a replay writes
        // them again, so nothing else may be handed them from now on (a weight or table
        // uploaded later into one would be overwritten). The recording's arguments keep them.
        pool.withdraw(Set(made.buffers.map(ObjectIdentifier.init)))
        return made
    }

    /// Runs `body` outside the current recording.
    public func unrecorded<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock(); defer { lock.unlock() }
        let outer = recording
        recording = nil
        defer { recording = outer }
        return try body()
    }

    /// Marks the current recording incomplete (for enqueues made outside `launch`, e.g. CLBlast).
    func noteUnrecordableWork() {
        lock.lock(); defer { lock.unlock() }
        recording?.isComplete = false
    }

    /// Enqueues a complete recording's launches again, each with its recorded arguments and tag:
    /// the same forward without the host work of building it (graph walk, weight and kernel
    /// look-ups), a few microseconds a launch.
    public func replay(_ recorded: LaunchRecording) throws {
        precondition(recorded.isComplete, "replay of an incomplete recording")
        lock.lock(); defer { lock.unlock() }
        let outerTag = tag
        defer { tag = outerTag }
        for launch in recorded.launches {
            tag = launch.tag
            _ = try self.launch(launch.kernel, global: launch.global, local: launch.local, arguments: launch.arguments)
        }
    }

    func recordEvents(_ event: CLEvent, name: String) {
        recordedEvents?.append((name, tag, event))
    }

    /// Stored with every launch `deviceTimes` / `taggedDeviceTimes` record (a backend sets the
    /// id of the graph node it is executing).
    public var launchTag: Int {
        get { lock.lock(); defer { lock.unlock() }; return tag }
        set { lock.lock(); defer { lock.unlock() }; tag = newValue }
    }

    /// Runs `body` (which enqueues work), waits for it, and returns the summed device time of
    /// every command it launched, in seconds, from the queue's profiling events.
    public func deviceTime(_ body: () throws -> Void) throws -> Double {
        try deviceTimes(body).reduce(0) { $0 + $1.seconds }
    }

    /// Like `deviceTime`, per command in launch order: (kernel name, seconds on the device).
    public func deviceTimes(_ body: () throws -> Void) throws -> [(name: String, seconds: Double)] {
        try taggedDeviceTimes(body).map { ($0.name, Double($0.end &- $0.start) * 1e-9) }
    }

    /// Like `deviceTimes`, with each command's `launchTag` and its start and end on the device
    /// clock (nanoseconds), so callers can attribute time to graph nodes and see launch gaps.
    public func taggedDeviceTimes(_ body: () throws -> Void) throws -> [(name: String, tag: Int, start: UInt64, end: UInt64)] {
        lock.lock(); defer { lock.unlock() }
        recordedEvents = []
        defer { recordedEvents = nil }
        try body()
        try CLError.check(clFinish(queue), "clFinish")
        return try (recordedEvents ?? []).map { name, tag, event in
            let (start, end) = try event.profile()
            return (name, tag, start, end)
        }
    }

    /// The names of every kernel launched on this context so far (for the coverage test).
    public var launchedKernelNames: Set<String> {
        lock.lock(); defer { lock.unlock() }
        return launched
    }

    /// Raw handles for libraries that take them (CLBlast).
    var rawQueue: cl_command_queue { queue }

    /// Runs `body` holding the queue lock (for libraries that enqueue on our queue).
    func withQueueLock<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock(); defer { lock.unlock() }
        return try body()
    }
}

/// A kernel that needs a larger work-group than the device allows is reported before launch.
public enum WorkGroupLimit {
    public static func check(local: [Int], maximum: Int, kernel: String, device: String) throws {
        let size = local.reduce(1, *)
        guard size <= maximum else {
            throw MilaError.unsupported(op: kernel, message: "needs work-groups of \(size) work-items; \(device) allows at most \(maximum)")
        }
    }
}
