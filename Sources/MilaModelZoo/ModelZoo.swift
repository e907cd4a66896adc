import Foundation

/// The models shipped inside the engine (`Models/*.safetensors`, embedded at build time by the
/// EmbedModels plugin), so that a fresh build has something to run with no download:
/// `digits` (the default of `mila-infer classify`) and `digits-fg`, trained by
/// Tests/PyTorchReference/train_digits.py, and `digits-seg` (the default of `mila-infer segment`),
/// trained by Tests/PyTorchReference/train_digits_seg.py.
public enum ModelZoo {
    /// The embedded models' names, sorted.
    public static var names: [String] { EmbeddedModelFiles.all.map(\.name) }

    /// The model `classify` uses when no `--model` is given.
    public static let defaultName = "digits"

    /// The model `segment` uses when no `--model` is given: an MLLA + UperNet trained on scenes
    /// of handwritten digits (Tests/PyTorchReference/train_digits_seg.py).
    public static let segmentationDefaultName = "digits-seg"

    /// The safetensors bytes of the embedded model `name`, or nil when there is none.
    public static func data(named name: String) -> Data? {
        guard let entry = EmbeddedModelFiles.all.first(where: { $0.name == name }) else { return nil }
        guard let data = Data(base64Encoded: entry.base64, options: .ignoreUnknownCharacters) else {
            preconditionFailure("embedded model \(name) is not valid base64 (the EmbedModels plugin wrote it)")
        }
        return data
    }
}
