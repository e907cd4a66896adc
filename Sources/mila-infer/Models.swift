import ArgumentParser
import Foundation
import MilaEngine
import MilaModel
import MilaModelZoo

struct Models: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the models embedded in the engine (usable as --model NAME).",
        discussion: "The classifiers were trained by Tests/PyTorchReference/train_digits.py (the accuracy is top-1 on the held-out digits in PyTorch), digits-seg by train_digits_seg.py (mIoU on scenes of held-out digits).")

    @Flag(name: .long, help: "Print one JSON object per model: {name, config, about, bytes}.")
    var json = false

    func run() throws {
        try reportingErrors {
            for name in ModelZoo.names {
                let bytes = ModelZoo.data(named: name)!.count
                let file = try Engine.openModel(name)
                let config = try ModelConfig.resolve(for: file, arch: nil)
                let about = (file.metadata["mila.about"].flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) } as? [String: Any]) ?? [:]
                if json {
                    let configObject = (try? JSONSerialization.jsonObject(with: Data((file.metadata["mila.config"] ?? "{}").utf8))) ?? [:]
                    let object: [String: Any] = ["name": name, "config": configObject, "about": about, "bytes": bytes]
                    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
                    print(String(decoding: data, as: UTF8.self))
                    continue
                }
                let attention = config.attention == .mlla ? "mlla" : "forget_gate \(config.bidirectional ? "bidirectional" : "causal")"
                    + (config.normalize ? "" : " unnormalised")
                let parameters = file.shapes.values.map { $0.reduce(1, *) }.reduce(0, +)
                print(name + (name == ModelZoo.defaultName ? "  (default of classify)" : "")
                      + (name == ModelZoo.segmentationDefaultName ? "  (default of segment)" : ""))
                if let description = about["description"] as? String { print("  \(description)") }
                print("  attention \(attention), embed_dim \(config.embedDim), depths \(config.depths), heads \(config.numHeads), "
                      + "mlp_ratio \(config.mlpRatio)")
                if let head = config.segmentation {
                    print("  UPerHead \(head.channels) channels, pool scales \(head.poolScales); keep-ratio scale \(head.scale[0])x\(head.scale[1]), "
                          + "mean \(config.mean), std \(config.std) (0..255), \(config.numClasses) classes \(config.classLabels.prefix(11).joined(separator: " "))")
                } else {
                    print("  input \(config.imageSize[0])x\(config.imageSize[1]), mean \(config.mean), std \(config.std), "
                          + "crop_fraction \(config.cropFraction), \(config.numClasses) classes \(config.classLabels.prefix(10).joined(separator: " "))")
                }
                print("  \(parameters) parameters, \(bytes) bytes embedded")
                if let accuracy = about["heldout_top1"] as? Double {
                    print(String(format: "  held-out top-1 %.2f%% in PyTorch", 100 * accuracy) + ((about["dataset"] as? String).map { " (\($0))" } ?? ""))
                }
                if let miou = about["heldout_miou"] as? Double {
                    print(String(format: "  held-out mIoU %.3f in PyTorch", miou) + ((about["dataset"] as? String).map { " (\($0))" } ?? ""))
                }
                if let training = about["training"] as? String { print("  trained by \(training)") }
            }
        }
    }
}
