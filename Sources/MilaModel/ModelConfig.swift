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
        var config = try resolveShapes(for: file, arch: arch)
        if config.labels == nil, let classes = try checkpointClasses(file), classes.count == config.numClasses { config.labels = classes }
        return config
    }

    static func resolveShapes(for file: WeightFile, arch: String?) throws -> ModelConfig {
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
        try fromJSON(json, source: file.path, headShape: file.tensors["head.weight"]?.shape)
    }

    /// Limits a configuration must keep, checked before anything is sized from it.
    static let maxStages = 8, maxDepth = 64, maxEmbedDim = 4096, maxClasses = 100_000, maxImageSide = 65_536

    /// Parses and checks `mila.config` JSON (`source` names the file in errors).
    public static func parse(json: String, source: String) throws -> ModelConfig { try fromJSON(json, source: source) }

    static func fromJSON(_ json: String, source: String, headShape: [Int]? = nil) throws -> ModelConfig {
        func fail(_ message: String) -> ModelError { ModelError.config("\(source): mila.config \(message)") }
        guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else {
            throw ModelError.config("\(source): mila.config metadata is not a JSON object")
        }
        /// An integral JSON number in `range` (not 1.5, not 1e300, not a string).
        func integer(_ value: Any?, _ key: String, _ range: ClosedRange<Int>) throws -> Int {
            guard let n = value as? NSNumber, !(value is String) else { throw fail("needs \(key) as an integer") }
            let d = n.doubleValue
            guard d.rounded() == d, d >= Double(range.lowerBound), d <= Double(range.upperBound) else {
                throw fail("\(key) must be an integer in \(range.lowerBound)...\(range.upperBound), not \(n)")
            }
            return Int(d)
        }
        func ints(_ key: String, _ range: ClosedRange<Int>, count: ClosedRange<Int>) throws -> [Int] {
            guard let values = object[key] as? [Any], count.contains(values.count) else {
                throw fail("needs \(key) as a list of \(count.lowerBound)...\(count.upperBound) integers")
            }
            return try values.map { try integer($0, key, range) }
        }
        func number(_ key: String, _ valid: (Double) -> Bool, _ what: String) throws -> Double? {
            guard let value = object[key] else { return nil }
            guard let n = value as? NSNumber, n.doubleValue.isFinite, valid(n.doubleValue) else { throw fail("\(key) must be \(what)") }
            return n.doubleValue
        }
        func floats(_ key: String) throws -> [Float]? {
            guard let value = object[key] else { return nil }
            guard let list = value as? [NSNumber], list.count == 3, list.allSatisfy({ $0.doubleValue.isFinite && abs($0.doubleValue) < 1e6 }) else {
                throw fail("\(key) must be a list of 3 numbers")
            }
            return list.map { $0.floatValue }
        }
        let embed = try integer(object["embed_dim"], "embed_dim", 1...maxEmbedDim)
        var config = ModelConfig(name: "custom", embedDim: embed, depths: try ints("depths", 1...maxDepth, count: 1...maxStages),
                                 numHeads: try ints("num_heads", 1...maxEmbedDim, count: 1...maxStages))
        guard config.depths.count == config.numHeads.count else { throw fail("depths and num_heads must have the same length") }
        for s in 0..<config.stages where config.channels(stage: s) % config.numHeads[s] != 0 {
            throw fail("stage \(s): \(config.numHeads[s]) heads do not divide its \(config.channels(stage: s)) channels")
        }
        if object["num_classes"] != nil {
            config.numClasses = try integer(object["num_classes"], "num_classes", 1...maxClasses)
        } else if let head = headShape, let n = head.first, n >= 1 {
            config.numClasses = n
        }
        if let r = try number("mlp_ratio", { $0 > 0 && $0 <= 64 }, "a number in (0, 64]") { config.mlpRatio = r }
        if let a = object["attention"] {
            guard let name = a as? String, let attention = Attention(rawValue: name) else { throw fail("attention must be \"mlla\" or \"forget_gate\"") }
            config.attention = attention
        }
        if let scan = object["scan"] {
            guard let name = scan as? String, name == "bidirectional" || name == "causal" else {
                throw fail("scan must be \"bidirectional\" or \"causal\"")
            }
            config.bidirectional = name == "bidirectional"
        }
        if let normalize = object["normalize"] {
            guard let b = normalize as? Bool else { throw fail("normalize must be true or false") }
            config.normalize = b
        }
        if object["image_size"] != nil { config.imageSize = try ints("image_size", 1...maxImageSide, count: 2...2) }
        if let m = try floats("mean") { config.mean = m }
        if let s = try floats("std") {
            guard s.allSatisfy({ $0 != 0 }) else { throw fail("std must not be 0") }
            config.std = s
        }
        if let c = try number("crop_fraction", { $0 > 0 && $0 <= 1 }, "a number in (0, 1]") { config.cropFraction = c }
        if let l = object["labels"] {
            guard let labels = l as? [String] else { throw fail("labels must be a list of strings") }
            config.labels = labels
        }
        // A configuration with a preset's shapes (an official training run's) takes its name.
        if let preset = presets.values.first(where: { $0.embedDim == config.embedDim && $0.depths == config.depths
                                                      && $0.numHeads == config.numHeads && $0.attention == config.attention }) {
            config.name = preset.name
        }
        return config
    }

    /// The class names an mmcv-style checkpoint records in `meta.CLASSES`, if any.
    public static func checkpointClasses(_ file: WeightFile) throws -> [String]? {
        guard let json = file.metadata["pytorch.classes"] else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String]
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
