import Foundation

/// Reads the model settings out of an mmsegmentation config stored as Python source text
/// (`meta.config` of an mmcv checkpoint): the `backbone=dict(...)` and `decode_head=dict(...)`
/// blocks' integer and list values, and the test pipeline's `img_scale`. Nothing is evaluated:
/// values are matched as literals inside the block found by balancing parentheses.
enum MMConfigText {
    /// `mila.config` JSON for an MLLA + UPerHead config, or nil when the text does not describe one.
    static func segmentationConfig(_ text: String) -> String? {
        guard text.utf8.count <= 1 << 20, let backbone = block(text, "backbone"), let head = block(text, "decode_head"),
              string(backbone, "type") == "MLLA", string(head, "type") == "UPerHead",
              let embed = int(backbone, "embed_dim"), let depths = ints(backbone, "depths"), let heads = ints(backbone, "num_heads")
        else { return nil }
        var object: [String: Any] = ["embed_dim": embed, "depths": depths, "num_heads": heads]
        if let ratio = number(backbone, "mlp_ratio") { object["mlp_ratio"] = ratio }
        if let classes = int(head, "num_classes") { object["num_classes"] = classes }
        var seg: [String: Any] = ["head": "upernet"]
        if let channels = int(head, "channels") { seg["channels"] = channels }
        if let scales = ints(head, "pool_scales") { seg["pool_scales"] = scales }
        if let pipeline = block(text, "test_pipeline", opener: "["), let scale = ints(pipeline, "img_scale", anyDepth: true), scale.count == 2 {
            seg["scale"] = [max(scale[0], scale[1]), min(scale[0], scale[1])]
        }
        object["segmentation"] = seg
        if let norm = block(text, "img_norm_cfg"), let mean = numbers(norm, "mean"), let std = numbers(norm, "std"), mean.count == 3, std.count == 3 {
            object["mean"] = mean
            object["std"] = std
        }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    /// The text inside `name=dict(...)` (or `name = [ ... ]` with opener "["), parentheses balanced.
    static func block(_ text: String, _ name: String, opener: Character = "(") -> Substring? {
        let closer: Character = opener == "(" ? ")" : "]"
        var search = text[...]
        while let range = search.range(of: name) {
            defer { search = search[range.upperBound...] }
            // A whole word: not the tail of a longer name (auxiliary_head vs decode_head).
            if range.lowerBound > text.startIndex, let before = text[..<range.lowerBound].last, before.isLetter || before.isNumber || before == "_" { continue }
            var rest = text[range.upperBound...].drop { $0 == " " }
            guard rest.first == "=" else { continue }
            rest = rest.dropFirst().drop { $0 == " " || $0 == "\n" }
            if opener == "(" {
                guard rest.hasPrefix("dict(") else { continue }
                rest = rest.dropFirst(4)
            }
            guard rest.first == opener else { continue }
            var depth = 0
            for index in rest.indices {
                let c = rest[index]
                if c == "(" || c == "[" || c == "{" { depth += 1 }
                if c == ")" || c == "]" || c == "}" {
                    depth -= 1
                    if depth == 0 { return c == closer ? rest[rest.index(after: rest.startIndex)..<index] : nil }
                }
            }
            return nil
        }
        return nil
    }

    /// The literal after `key=` at nesting depth 0 of `block` (the first at any depth with `anyDepth`).
    static func literal(_ block: Substring, _ key: String, anyDepth: Bool = false) -> Substring? {
        var depth = 0
        var index = block.startIndex
        while index < block.endIndex {
            let c = block[index]
            if c == "(" || c == "[" || c == "{" { depth += 1 } else if c == ")" || c == "]" || c == "}" { depth -= 1 }
            if depth == 0 || anyDepth, block[index...].hasPrefix(key),
               index == block.startIndex || !(block[block.index(before: index)].isLetter || block[block.index(before: index)] == "_") {
                var rest = block[block.index(index, offsetBy: key.count)...].drop { $0 == " " }
                if rest.first == "=" {
                    rest = rest.dropFirst().drop { $0 == " " || $0 == "\n" }
                    var end = rest.startIndex, d = 0
                    while end < rest.endIndex {
                        let e = rest[end]
                        if e == "(" || e == "[" { d += 1 } else if e == ")" || e == "]" { if d == 0 { break }; d -= 1 }
                        if e == ",", d == 0 { break }
                        end = rest.index(after: end)
                    }
                    return rest[rest.startIndex..<end]
                }
            }
            index = block.index(after: index)
        }
        return nil
    }

    static func string(_ block: Substring, _ key: String) -> String? {
        guard let v = literal(block, key)?.trimmingCharacters(in: .whitespacesAndNewlines), v.count >= 2,
              let q = v.first, q == "'" || q == "\"", v.last == q else { return nil }
        return String(v.dropFirst().dropLast())
    }

    static func number(_ block: Substring, _ key: String) -> Double? {
        literal(block, key).flatMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    static func int(_ block: Substring, _ key: String) -> Int? {
        literal(block, key).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    static func numbers(_ block: Substring, _ key: String, anyDepth: Bool = false) -> [Double]? {
        guard let v = literal(block, key, anyDepth: anyDepth)?.trimmingCharacters(in: .whitespacesAndNewlines), v.count >= 2,
              (v.first == "[" && v.last == "]") || (v.first == "(" && v.last == ")") else { return nil }
        let parts = v.dropFirst().dropLast().split(separator: ",").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
        let values = parts.compactMap(Double.init)
        return values.count == parts.count && !values.isEmpty && values.count <= 64 ? values : nil
    }

    static func ints(_ block: Substring, _ key: String, anyDepth: Bool = false) -> [Int]? {
        guard let values = numbers(block, key, anyDepth: anyDepth), values.allSatisfy({ $0.rounded() == $0 && abs($0) < 1e9 }) else { return nil }
        return values.map { Int($0) }
    }
}
