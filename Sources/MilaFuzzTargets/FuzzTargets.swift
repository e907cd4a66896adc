import Foundation
import MilaImage
import MilaModel
@_spi(Fuzzing) import MilaWeights

/// One fuzz target per parser of untrusted input. Each runs the parser on the bytes and
/// swallows its typed errors: what must never happen is a crash, a sanitizer report, a hang or
/// an allocation out of proportion to the input. Used by `mila-fuzz` (libFuzzer) and by the
/// corpus replay test, so CI keeps every input that was ever found fixed.
public enum FuzzTargets {
    /// The images' pixel limit under fuzzing: large enough for every seed, small enough that a
    /// decode never dominates the run.
    static let maxPixels = 4_000_000

    public static let all: [String: @Sendable (Data) -> Void] = [
        "safetensors": { data in _ = try? ParserEntryPoints.safetensors(data) },
        "zip": { data in _ = try? ParserEntryPoints.zip(data) },
        "pickle": { data in _ = try? ParserEntryPoints.pickle(data) },
        "legacy": { data in _ = try? ParserEntryPoints.legacy(data) },
        "npy": { data in _ = try? NPY.read(data, name: "fuzz.npy") },
        "png": { data in _ = try? ImageDecoder.decode(data, name: "fuzz.png", maxPixels: maxPixels) },
        "jpeg": { data in _ = try? ImageDecoder.decode(data, name: "fuzz.jpg", maxPixels: maxPixels) },
        "config": { data in _ = try? ModelConfig.parse(json: String(decoding: data, as: UTF8.self), source: "fuzz.json") },
        "mmconfig": { data in
            if let json = ParserEntryPoints.mmsegConfig(String(decoding: data, as: UTF8.self)) { _ = try? ModelConfig.parse(json: json, source: "fuzz.py") }
        },
    ]

    public static var names: [String] { all.keys.sorted() }
}
