import COpenCL

/// A device buffer of float32 elements. Released when the last reference goes.
public final class CLBuffer: @unchecked Sendable {
    public let mem: cl_mem
    /// Number of float32 elements it holds.
    public let count: Int
    public var byteCount: Int { count * MemoryLayout<Float>.size }

    init(context: cl_context, count: Int) throws {
        precondition(count > 0, "buffers hold at least one element")
        var status: cl_int = 0
        guard let mem = clCreateBuffer(context, cl_mem_flags(CL_MEM_READ_WRITE), count * MemoryLayout<Float>.size, nil, &status),
              status == CL_SUCCESS
        else {
            throw CLError(call: "clCreateBuffer", status: status, context: "\(count * 4) bytes")
        }
        self.mem = mem
        self.count = count
        self.parent = nil
    }

    /// The buffer a sub-buffer lives in (kept alive as long as the sub-buffer).
    let parent: CLBuffer?

    /// A region of `parent`: `count` floats from byte `offset` (aligned for the device).
    init(subBufferOf parent: CLBuffer, offset: Int, count: Int) throws {
        var region = cl_buffer_region(origin: offset, size: count * MemoryLayout<Float>.size)
        var status: cl_int = 0
        guard let mem = clCreateSubBuffer(parent.mem, cl_mem_flags(CL_MEM_READ_WRITE), cl_buffer_create_type(CL_BUFFER_CREATE_TYPE_REGION),
                                          &region, &status), status == CL_SUCCESS
        else {
            throw CLError(call: "clCreateSubBuffer", status: status, context: "\(count * 4) bytes at \(offset) of \(parent.byteCount)")
        }
        self.mem = mem
        self.count = count
        self.parent = parent
    }

    deinit { clReleaseMemObject(mem) }
}

/// Reuses buffers by element count: `acquire` hands back a recycled buffer of exactly that size
/// when one is free, else allocates. Sizes repeat from one forward pass to the next, so exact
/// matching keeps the pool small.
final class BufferPool {
    private var free: [Int: [CLBuffer]] = [:]
    private(set) var allocations = 0
    private(set) var reuses = 0

    func acquire(count: Int, context: cl_context) throws -> CLBuffer {
        if var list = free[count], let buffer = list.popLast() {
            free[count] = list
            reuses += 1
            return buffer
        }
        allocations += 1
        return try CLBuffer(context: context, count: count)
    }

    func recycle(_ buffer: CLBuffer) {
        free[buffer.count, default: []].append(buffer)
    }

    func drain() { free.removeAll() }

    /// Takes `buffers` out of the free lists, so no later `acquire` hands them out (a recorded
    /// forward keeps using its temporaries; see `CLContext.record`).
    func withdraw(_ buffers: Set<ObjectIdentifier>) {
        for (count, list) in free { free[count] = list.filter { !buffers.contains(ObjectIdentifier($0)) } }
    }
}

/// A finished or pending command's event; with the queue's profiling on it reports device time.
public final class CLEvent: @unchecked Sendable {
    let event: cl_event

    init(_ event: cl_event) { self.event = event }
    deinit { clReleaseEvent(event) }

    /// Start and end of the command on the device, in nanoseconds (waits for it to finish).
    public func profile() throws -> (start: UInt64, end: UInt64) {
        var e: cl_event? = event
        try CLError.check(clWaitForEvents(1, &e), "clWaitForEvents")
        var start: cl_ulong = 0, end: cl_ulong = 0
        try CLError.check(clGetEventProfilingInfo(event, cl_profiling_info(CL_PROFILING_COMMAND_START), 8, &start, nil),
                          "clGetEventProfilingInfo")
        try CLError.check(clGetEventProfilingInfo(event, cl_profiling_info(CL_PROFILING_COMMAND_END), 8, &end, nil),
                          "clGetEventProfilingInfo")
        return (start, end)
    }
}
