import Foundation
import MilaCore
@testable import MilaModel
@_spi(Fuzzing) import MilaWeights
import Testing

/// A checkpoint's tensor names and shapes only (no data), from the model layout.
struct ShapesOnly: TensorSource, LayoutVisitor {
    var path = "<shapes>"
    var shapes: [String: [Int]] = [:]
    func isFloatingPoint(_ name: String) -> Bool { true }
    func tensor(_ name: String) throws -> Tensor { throw WeightFileError(file: path, "shapes only") }

    mutating func linear(_ scope: String, out: Int, in k: Int, kernel1x1: Bool) throws {
        shapes["\(scope).weight"] = kernel1x1 ? [out, k, 1, 1] : [out, k]
        shapes["\(scope).bias"] = [out]
    }
    mutating func depthwise(_ scope: String, channels: Int) throws {
        shapes["\(scope).weight"] = [channels, 1, 3, 3]
        shapes["\(scope).bias"] = [channels]
    }
    mutating func norm(_ scope: String, channels: Int) throws { for p in ["weight", "bias"] { shapes["\(scope).\(p)"] = [channels] } }
    mutating func convBN(_ scope: String, out: Int, in k: Int, kernel: Int, convBias: Bool, normName: String) throws {
        shapes["\(scope).conv.weight"] = [out, k, kernel, kernel]
        if convBias { shapes["\(scope).conv.bias"] = [out] }
        for p in ["weight", "bias", "running_mean", "running_var"] { shapes["\(scope).\(normName).\(p)"] = [out] }
        shapes["\(scope).\(normName).num_batches_tracked"] = []
    }
    mutating func vector(_ name: String, count: Int) throws { shapes[name] = [count] }

    static func of(_ config: ModelConfig) throws -> ShapesOnly {
        var s = ShapesOnly()
        try ModelLayout.visit(config, &s)
        return s
    }
}

@Suite("Segmentation presets from checkpoint shapes") struct SegmentationConfigTests {
    @Test(arguments: ["mlla_t_upernet", "mlla_s_upernet", "mlla_b_upernet"])
    func presetIsRecognisedWithItsClassCount(_ name: String) throws {
        var config = try ModelConfig.preset(name)
        config.numClasses = 19  // e.g. a Cityscapes fine-tune: classes come from conv_seg
        var file = try ShapesOnly.of(config)
        // What the released file carries besides: the auxiliary head and RoPE tables, ignored by rule.
        file.shapes["auxiliary_head.conv_seg.weight"] = [19, 256, 1, 1]
        file.shapes["backbone.layers.0.blocks.0.attn.rope.rotations"] = [56, 56, 48, 2]
        let resolved = try ModelConfig.resolveSegmentation(for: file, metadata: [:], arch: nil, convSeg: file.shapes["decode_head.conv_seg.weight"]!)
        #expect(resolved.name == name && resolved.numClasses == 19 && resolved.segmentation?.channels == 512)
        try WeightBinding.check(file: file, config: resolved)
    }

    @Test func mllaBUperNetHasTheSpecsInventory() throws {
        // ../shared/spec/upernet-segmentation.md section 5: 1053 entries, of which the aux head's 8
        // and 36 rope tables are not in our layout; 127.637 M parameters with the aux head.
        let file = try ShapesOnly.of(try ModelConfig.preset("mlla_b_upernet"))
        #expect(file.shapes.count == 1053 - 8 - 36)
        let parameters = file.shapes.filter { !$0.key.contains("running_") && !$0.key.hasSuffix("num_batches_tracked") }
            .values.map { $0.reduce(1, *) }.reduce(0, +)
        let auxiliary = 256 * 384 * 9 + 2 * 256 + 150 * 256 + 150
        let rope = 36  // tables are buffers, not parameters
        _ = rope
        #expect(parameters + auxiliary == 127_637_000 || abs(parameters + auxiliary - 127_637_000) < 1_000, "\(parameters + auxiliary) parameters")
    }

    @Test func unknownAndMissingTensorsAreNamed() throws {
        let config = try ModelConfig.preset("mlla_t_upernet")
        var extra = try ShapesOnly.of(config)
        extra.shapes["decode_head.extra_conv.weight"] = [4, 4]
        #expect(throws: ModelError.self) { try WeightBinding.check(file: extra, config: config) }
        do { try WeightBinding.check(file: extra, config: config) } catch { #expect("\(error)".contains("decode_head.extra_conv.weight")) }
        var missing = try ShapesOnly.of(config)
        missing.shapes["decode_head.fpn_bottleneck.bn.running_var"] = nil
        do {
            try WeightBinding.check(file: missing, config: config)
            Issue.record("a missing tensor was accepted")
        } catch {
            #expect("\(error)".contains("missing tensor decode_head.fpn_bottleneck.bn.running_var, expected shape (512)"))
        }
        var wrong = try ShapesOnly.of(config)
        wrong.shapes["decode_head.bottleneck.conv.weight"] = [512, 2048, 3, 3]
        do {
            try WeightBinding.check(file: wrong, config: config)
            Issue.record("a wrong shape was accepted")
        } catch {
            #expect("\(error)".contains("decode_head.bottleneck.conv.weight has shape (512, 2048, 3, 3), expected (512, 2560, 3, 3)"))
        }
    }

    @Test func configTextOfAnMmsegRunIsRead() throws {
        let text = """
            norm_cfg = dict(type='SyncBN', requires_grad=True)
            model = dict(
                type='EncoderDecoder',
                backbone=dict(
                    type='MLLA', embed_dims=96, depths=[2, 4, 8, 4],
                    num_heads=[2, 4, 8, 16], mlp_ratio=4.0, embed_dim=64, norm_cfg=dict(type='LN', requires_grad=True)),
                decode_head=dict(type='UPerHead', in_channels=[64, 128, 256, 512], pool_scales=(1, 2, 3, 6), channels=256,
                                 num_classes=21, norm_cfg=norm_cfg),
                auxiliary_head=dict(type='FCNHead', in_channels=256, channels=128, num_classes=21))
            img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
            test_pipeline = [dict(type='LoadImageFromFile'), dict(type='MultiScaleFlipAug', img_scale=(1024, 512), flip=False)]
            """
        let json = try #require(ParserEntryPoints.mmsegConfig(text))
        let config = try ModelConfig.parse(json: json, source: "test")
        #expect(config.embedDim == 64 && config.depths == [2, 4, 8, 4] && config.numHeads == [2, 4, 8, 16] && config.numClasses == 21)
        #expect(config.segmentation == ModelConfig.SegmentationHead(channels: 256, poolScales: [1, 2, 3, 6], scale: [1024, 512]))
        #expect(config.name == "mlla_t_upernet")
        #expect(ParserEntryPoints.mmsegConfig("model = dict(backbone=dict(type='ResNet', depth=50), decode_head=dict(type='UPerHead'))") == nil)
        #expect(ParserEntryPoints.mmsegConfig(String(repeating: "backbone=dict(", count: 10_000)) == nil)
    }
}
