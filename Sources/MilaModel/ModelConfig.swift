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
    /// A segmentation model: the backbone (`backbone.*`) with an UPerHead (`decode_head.*`).
    /// Its `mean` / `std` are on the 0..255 scale (mmseg's img_norm_cfg, RGB order).
    public var segmentation: SegmentationHead? = nil

    /// The UPerHead of ../shared/spec/upernet-segmentation.md and the test pipeline's scale.
    public struct SegmentationHead: Equatable, Sendable {
        public var channels = 512
        public var poolScales = [1, 2, 3, 6]
        /// The keep-ratio resize's (long, short) target: mmseg's img_scale (2048, 512) for ADE20K.
        public var scale = [2048, 512]
        /// (r, g, b) per class; ADE20K's when the model has 150 classes and no palette of its own.
        public var palette: [[Int]]? = nil

        public init(channels: Int = 512, poolScales: [Int] = [1, 2, 3, 6], scale: [Int] = [2048, 512], palette: [[Int]]? = nil) {
            (self.channels, self.poolScales, self.scale, self.palette) = (channels, poolScales, scale, palette)
        }
    }

    /// A segmentation model's colours per class: its palette, ADE20K's for 150 classes, else a
    /// fixed spread of hues.
    public var classPalette: [[Int]] {
        if let p = segmentation?.palette, p.count == numClasses { return p }
        if numClasses == ADE20K.classes.count { return ADE20K.palette }
        return (0..<numClasses).map { i in
            // Golden-angle hues at full saturation, so neighbouring indices differ.
            let h = Double(i) * 137.508 / 360, f = (h - h.rounded(.down)) * 6
            let x = Int((1 - abs(f.truncatingRemainder(dividingBy: 2) - 1)) * 255)
            switch Int(f) { case 0: return [255, x, 0]; case 1: return [x, 255, 0]; case 2: return [0, 255, x]
            case 3: return [0, x, 255]; case 4: return [x, 0, 255]; default: return [255, 0, x] }
        }
    }

    public var stages: Int { depths.count }

    /// Class names: the configured labels, else ImageNet-1K's for 1000 classes (ADE20K's for a
    /// 150-class segmentation model), else "0".."N-1".
    public var classLabels: [String] {
        if let labels, labels.count == numClasses { return labels }
        if segmentation != nil, numClasses == ADE20K.classes.count { return ADE20K.classes }
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

    /// `<backbone>_upernet`: the backbone preset with mmseg's UPerHead (512 channels, pool scales
    /// 1, 2, 3, 6) for ADE20K's 150 classes, and mmseg's normalisation on the 0..255 scale.
    static func upernet(_ backbone: String) -> ModelConfig {
        var c = presets[backbone]!
        c.name = "\(backbone)_upernet"
        c.numClasses = 150
        c.backbone = true
        c.segmentation = SegmentationHead()
        c.mean = [123.675, 116.28, 103.53]
        c.std = [58.395, 57.12, 57.375]
        c.imageSize = [512, 512]
        return c
    }

    public static let segmentationPresets: [String: ModelConfig] =
        Dictionary(uniqueKeysWithValues: ["mlla_t", "mlla_s", "mlla_b"].map { ("\($0)_upernet", upernet($0)) })

    /// Every architecture name `--arch` takes.
    public static var allPresets: [String: ModelConfig] { presets.merging(segmentationPresets) { a, _ in a } }

    public static func preset(_ name: String) throws -> ModelConfig {
        guard let config = allPresets[name.lowercased()] else {
            throw ModelError.config("unknown architecture '\(name)'; known: \(allPresets.keys.sorted().joined(separator: ", "))")
        }
        return config
    }

    /// The configuration of a weight file: its `mila.config` metadata, else `arch`, else the one
    /// preset whose tensor shapes match.
    public static func resolve(for file: WeightFile, arch: String?) throws -> ModelConfig {
        var config = try resolveShapes(for: file, arch: arch)
        if config.labels == nil, let classes = try checkpointClasses(file), classes.count == config.numClasses { config.labels = classes }
        if config.segmentation != nil, config.segmentation?.palette == nil, let json = file.metadata["pytorch.palette"],
           let rows = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[Int]], rows.count == config.numClasses,
           rows.allSatisfy({ $0.count == 3 && $0.allSatisfy { (0...255).contains($0) } }) {
            config.segmentation?.palette = rows
        }
        return config
    }

    static func resolveShapes(for file: WeightFile, arch: String?) throws -> ModelConfig {
        if let head = file.shapes["decode_head.conv_seg.weight"] {
            return try resolveSegmentation(for: file, metadata: file.metadata, arch: arch, convSeg: head)
        }
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

    /// A segmentation checkpoint (`decode_head.conv_seg.weight` present): `arch`, else its
    /// `mila.config`, else the `_upernet` preset whose shapes match, with the number of classes
    /// and head channels from conv_seg.
    static func resolveSegmentation(for file: any TensorSource, metadata: [String: String], arch: String?, convSeg: [Int]) throws -> ModelConfig {
        guard convSeg.count == 4, convSeg[0] >= 1, convSeg[1] >= 1 else {
            throw ModelError.weights("\(file.path): tensor decode_head.conv_seg.weight has shape \(Shape.describe(convSeg)), expected (classes, channels, 1, 1)")
        }
        func adapt(_ preset: ModelConfig) -> ModelConfig {
            var c = preset
            c.numClasses = convSeg[0]
            c.segmentation?.channels = convSeg[1]
            return c
        }
        if let arch {
            let c = try preset(arch)
            guard c.segmentation != nil else {
                throw ModelError.config("\(file.path) is a segmentation checkpoint (decode_head.*); --arch \(arch) is a classifier; give one of \(segmentationPresets.keys.sorted().joined(separator: ", "))")
            }
            return adapt(c)
        }
        if let json = metadata["mila.config"] {
            var c = try fromJSON(json, source: file.path)
            guard c.segmentation != nil else {
                throw ModelError.config("\(file.path): mila.config has no \"segmentation\" entry but the file holds decode_head.* tensors")
            }
            c.numClasses = convSeg[0]
            return c
        }
        let matches = segmentationPresets.values.map(adapt).filter { (try? WeightBinding.check(file: file, config: $0)) != nil }
        guard matches.count == 1 else {
            throw ModelError.config("\(file.path): cannot tell the segmentation architecture from the tensor shapes"
                                    + (matches.isEmpty ? " (no preset matches)" : " (\(matches.map(\.name).sorted()) match)")
                                    + "; give --arch \(segmentationPresets.keys.sorted().joined(separator: "|"))")
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
        if let seg = object["segmentation"] {
            guard let head = seg as? [String: Any] else { throw fail("segmentation must be an object") }
            if let kind = head["head"], kind as? String != "upernet" { throw fail("segmentation.head must be \"upernet\"") }
            var h = SegmentationHead()
            if head["channels"] != nil { h.channels = try integer(head["channels"], "segmentation.channels", 1...maxEmbedDim) }
            if let scales = head["pool_scales"] {
                guard let list = scales as? [Any], (1...8).contains(list.count) else { throw fail("segmentation.pool_scales must be a list of 1...8 integers") }
                h.poolScales = try list.map { try integer($0, "segmentation.pool_scales", 1...64) }
            }
            if let scale = head["scale"] {
                guard let list = scale as? [Any], list.count == 2 else { throw fail("segmentation.scale must be [long, short]") }
                h.scale = try list.map { try integer($0, "segmentation.scale", 1...maxImageSide) }
            }
            if let palette = head["palette"] {
                guard let rows = palette as? [[Any]], rows.count <= maxClasses else { throw fail("segmentation.palette must be a list of [r, g, b]") }
                h.palette = try rows.map { row in
                    guard row.count == 3 else { throw fail("segmentation.palette entries must be [r, g, b]") }
                    return try row.map { try integer($0, "segmentation.palette", 0...255) }
                }
            }
            config.segmentation = h
            config.backbone = true
            if object["mean"] == nil { config.mean = [123.675, 116.28, 103.53] }
            if object["std"] == nil { config.std = [58.395, 57.12, 57.375] }
        }
        // A configuration with a preset's shapes (an official training run's) takes its name.
        if let preset = presets.values.first(where: { $0.embedDim == config.embedDim && $0.depths == config.depths
                                                      && $0.numHeads == config.numHeads && $0.attention == config.attention }) {
            config.name = preset.name + (config.segmentation != nil ? "_upernet" : "")
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
