/// Errors of the op layer that do not come from a device: bad shapes, bad arguments, unsupported
/// features. OpenCL failures have their own type (`CLError` in MilaOpenCL).
public enum MilaError: Error, CustomStringConvertible, Equatable {
    /// A tensor given to `op` has the wrong shape.
    case shapeMismatch(op: String, tensor: String, expected: String, actual: [Int])
    /// An argument is out of its domain (a stride of 3, zero heads, a zero-sized dimension).
    case invalidArgument(op: String, message: String)
    /// The device or backend lacks something the op needs.
    case unsupported(op: String, message: String)

    public var description: String {
        switch self {
        case let .shapeMismatch(op, tensor, expected, actual):
            return "\(op): \(tensor) has shape \(Shape.describe(actual)), expected \(expected)"
        case let .invalidArgument(op, message):
            return "\(op): \(message)"
        case let .unsupported(op, message):
            return "\(op): unsupported: \(message)"
        }
    }
}
