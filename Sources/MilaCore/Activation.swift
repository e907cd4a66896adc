/// Activations that kernels apply in their epilogue. The raw values are the codes the kernels
/// take (`ACT_*` in Kernels/common.cl); keep the two in step.
public enum Activation: Int32, CaseIterable, Sendable, CustomStringConvertible {
    case none = 0
    case relu = 1
    case silu = 2
    /// The exact form, x * (1 + erf(x / sqrt(2))) / 2.
    case gelu = 3
    /// log(1 + exp(x)): the forget gate's step size.
    case softplus = 4

    public var description: String {
        switch self {
        case .none: "none"
        case .relu: "relu"
        case .silu: "silu"
        case .gelu: "gelu"
        case .softplus: "softplus"
        }
    }
}
