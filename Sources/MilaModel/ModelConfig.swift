import Foundation
import MilaCore
import MilaWeights

/// A MILA / MLLA network's configuration (../shared/spec/model-file.md).
public struct ModelConfig: Equatable, Sendable {
    public enum Attention: String, Sendable { case mlla, forgetGate = "forget_gate" }

    public var name: String
    public var embedDim: Int
    public var depths: [Int]
    public var numHeads: [Int]
    public var numClasses: Int = 1000
    public var mlpRatio: Double = 4
    public var attention: Attention = .mlla
    /// Forget-gate scan direction and normaliser (ignored for `mlla`).
    public var bidirectional = true
    public var normalize = true
    public var imageSize: [Int] = [224, 224]
    public var mean: [Float] = [0.485, 0.456, 0.406]
    public var std: [Float] = [0.229, 0.224, 0.225]
    public var cropFraction: Double = 0.875
    public var labels: [String]? = nil
    /// A dense-prediction backbone: no `norm` / `head`, one LayerNorm `norm{s}` per stage
    /// output instead, and no logits.
    public var backbone = false

    public var stages: Int { depths.count }

    /// Class names: the configured labels, else ImageNet-1K's for 1000 classes, else "0".."N-1".
    public var classLabels: [String] {
        if let labels, labels.count == numClasses { return labels }
        return numClasses == imageNetLabels.count ? imageNetLabels : (0..<numClasses).map(String.init)
    }
    public func channels(stage: Int) -> Int { embedDim << stage }
    public func hiddenDim(_ stage: Int) -> Int { Int(mlpRatio * Double(channels(stage: stage))) }

    public static let presets: [String: ModelConfig] = [
        "mlla_t": ModelConfig(name: "mlla_t", embedDim: 64, depths: [2, 4, 8, 4], numHeads: [2, 4, 8, 16]),
        "mlla_s": ModelConfig(name: "mlla_s", embedDim: 64, depths: [3, 6, 21, 6], numHeads: [2, 4, 8, 16]),
        "mlla_b": ModelConfig(name: "mlla_b", embedDim: 96, depths: [3, 6, 21, 6], numHeads: [3, 6, 12, 24]),
        "mila_fg_t": ModelConfig(name: "mila_fg_t", embedDim: 64, depths: [2, 4, 8, 4], numHeads: [2, 4, 8, 16], attention: .forgetGate),
        "mila_fg_s": ModelConfig(name: "mila_fg_s", embedDim: 64, depths: [3, 6, 21, 6], numHeads: [2, 4, 8, 16], attention: .forgetGate),
        "mila_fg_b": ModelConfig(name: "mila_fg_b", embedDim: 96, depths: [3, 6, 21, 6], numHeads: [3, 6, 12, 24], attention: .forgetGate),
    ]

    public static func preset(_ name: String) throws -> ModelConfig {
        guard let config = presets[name.lowercased()] else {
            throw ModelError.config("unknown architecture '\(name)'; known: \(presets.keys.sorted().joined(separator: ", "))")
        }
        return config
    }

    /// The configuration of a weight file: its `mila.config` metadata, else `arch`, else the one
    /// preset whose tensor shapes match.
    public static func resolve(for file: WeightFile, arch: String?) throws -> ModelConfig {
        let backbone = file.shapes["head.weight"] == nil && file.shapes["norm0.weight"] != nil
        if let arch { var c = try preset(arch); c.backbone = backbone; return c }
        if let json = file.metadata["mila.config"] { var c = try fromJSON(json, file: file); c.backbone = backbone; return c }
        let candidates = presets.values.map { preset -> ModelConfig in var c = preset; c.backbone = backbone; return c }
        let matches = candidates.filter { (try? WeightBinding.check(file: file, config: $0)) != nil }
        guard matches.count == 1 else {
            throw ModelError.config("\(file.path): cannot tell the architecture from the tensor shapes"
                                    + (matches.isEmpty ? " (no preset matches)" : " (\(matches.map(\.name).sorted()) match)")
                                    + "; give --arch \(presets.keys.sorted().joined(separator: "|"))")
        }
        return matches[0]
    }

    static func fromJSON(_ json: String, file: WeightFile) throws -> ModelConfig {
        guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else {
            throw ModelError.config("\(file.path): mila.config metadata is not a JSON object")
        }
        func ints(_ key: String) throws -> [Int] {
            guard let values = object[key] as? [Any], let ints = values.map({ ($0 as? NSNumber)?.intValue }) as? [Int] else {
                throw ModelError.config("\(file.path): mila.config needs \(key) as a list of integers")
            }
            return ints
        }
        guard let embed = (object["embed_dim"] as? NSNumber)?.intValue else {
            throw ModelError.config("\(file.path): mila.config needs embed_dim")
        }
        var config = ModelConfig(name: "custom", embedDim: embed, depths: try ints("depths"), numHeads: try ints("num_heads"))
        guard config.depths.count == config.numHeads.count, !config.depths.isEmpty else {
            throw ModelError.config("\(file.path): mila.config depths and num_heads must have the same, non-zero length")
        }
        if let n = (object["num_classes"] as? NSNumber)?.intValue {
            config.numClasses = n
        } else if let head = file.tensors["head.weight"] {
            config.numClasses = head.shape[0]
        }
        if let r = (object["mlp_ratio"] as? NSNumber)?.doubleValue { config.mlpRatio = r }
        if let a = object["attention"] as? String {
            guard let attention = Attention(rawValue: a) else { throw ModelError.config("\(file.path): unknown attention '\(a)'") }
            config.attention = attention
        }
        if let scan = object["scan"] as? String {
            guard scan == "bidirectional" || scan == "causal" else {
                throw ModelError.config("\(file.path): scan must be \"bidirectional\" or \"causal\", not '\(scan)'")
            }
            config.bidirectional = scan == "bidirectional"
        }
        if let normalize = object["normalize"] as? Bool { config.normalize = normalize }
        if object["image_size"] != nil { config.imageSize = try ints("image_size") }
        if let m = object["mean"] as? [NSNumber] { config.mean = m.map { $0.floatValue } }
        if let s = object["std"] as? [NSNumber] { config.std = s.map { $0.floatValue } }
        if let c = (object["crop_fraction"] as? NSNumber)?.doubleValue { config.cropFraction = c }
        if let l = object["labels"] as? [String] { config.labels = l }
        return config
    }
}

public enum ModelError: Error, CustomStringConvertible, Equatable {
    case config(String)
    /// A checkpoint tensor is missing, has the wrong shape, or is not used by the model.
    case weights(String)

    public var description: String {
        switch self {
        case let .config(message), let .weights(message): message
        }
    }
}
