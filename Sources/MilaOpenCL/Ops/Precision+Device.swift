import COpenCL
import MilaCore

extension Precision {
    /// Bytes one stored weight takes on the device.
    public var bytesPerWeight: Int { self == .fp16 ? 2 : 4 }

    /// The build defines of the weight-reading kernels (common.cl's weight_t).
    var kernelDefines: [String] { self == .fp16 ? ["MILA_HALF_WEIGHTS"] : [] }
}

extension CLDeviceInfo {
    /// Why this device cannot run `precision`, or nil when it can.
    public func refusal(of precision: Precision) -> String? {
        guard precision == .fp16, !supportsFP16 else { return nil }
        return "\(name) (\(platformName)) does not support fp16: it lacks the OpenCL extension cl_khr_fp16; use --precision fp32 or a device that has it (mila-infer devices shows 'fp16 yes')"
    }
}

extension CLContext {
    /// Throws the one-line refusal when this device cannot store weights as `precision`.
    public func require(_ precision: Precision) throws {
        if let refusal = device.refusal(of: precision) { throw MilaError.unsupported(op: "fp16", message: refusal) }
    }

    /// Uploads packed weights as `precision`: float32 as they are, fp16 as half floats (a buffer
    /// of ceil(n / 2) float-sized slots; `Precision.checkFitsHalf` first).
    func uploadWeights(_ values: [Float], precision: Precision) throws -> CLBuffer {
        switch precision {
        case .fp32: return try upload(values)
        case .fp16: return try upload(halfBits: Precision.halfBits(values))
        }
    }
}
