import Foundation

/// The parsers one at a time, for the fuzz targets (`Sources/MilaFuzzTargets`) and their corpus
/// replay test: each reads untrusted bytes and must end in a value or a `WeightFileError`, never
/// a crash, a hang or unbounded memory.
@_spi(Fuzzing) public enum ParserEntryPoints {
    /// An mmseg config's Python text (`meta.config` of an mmcv checkpoint): the MLLA + UPerHead
    /// settings as `mila.config` JSON, or nil.
    public static func mmsegConfig(_ text: String) -> String? { MMConfigText.segmentationConfig(text) }

    /// A zip archive's central directory and entries.
    public static func zip(_ data: Data) throws {
        let archive = try ZipArchive(path: "fuzz.zip", data: data)
        _ = archive.entries.count
    }

    /// One pickle, then the checkpoint reading of its value: the state-dict search, every tensor's
    /// bounds against a pretend storage of 4096 bytes per key, the yacs config and mmcv classes.
    public static func pickle(_ data: Data) throws {
        var unpickler = Unpickler(file: "fuzz.pkl")
        let root = try data.withUnsafeBytes { try unpickler.load($0).value }
        _ = try PyTorchCheckpoint.stateDict(path: "fuzz.pkl", heap: unpickler.heap, root: root, stateDictKey: nil) { _ in (0, 4096) }
    }

    /// The legacy (pre-1.6) torch.save format, with every tensor read.
    public static func legacy(_ data: Data) throws {
        let file = try PyTorchCheckpoint.readLegacy(path: "fuzz.pth", data: data, stateDictKey: nil)
        for name in file.tensors.keys { _ = try file.tensor(name) }
    }

    /// A safetensors file, with every tensor read.
    public static func safetensors(_ data: Data) throws {
        let file = try SafeTensors.read(path: "fuzz.safetensors", data: data)
        for name in file.tensors.keys { _ = try file.tensor(name) }
    }
}
