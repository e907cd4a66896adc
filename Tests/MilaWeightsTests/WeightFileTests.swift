import Foundation
import MilaCore
import MilaWeights
import Testing

@Suite("safetensors") struct SafeTensorsTests {
    @Test func readsFloat32Float16AndBFloat16() throws {
        let f32 = FileBuilders.floats([1.5, -2])
        let f16: [UInt8] = [0x00, 0x3C, 0x00, 0xC0]   // 1.0, -2.0
        let bf16: [UInt8] = [0x40, 0x40]              // 3.0
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[1,2],"data_offsets":[8,12]},"#
            + #""c":{"dtype":"BF16","shape":[1],"data_offsets":[12,14]},"__metadata__":{"mila.config":"{}"}}"#
        let path = try FileBuilders.write(FileBuilders.safetensors(header: header, data: f32 + f16 + bf16), "ok.safetensors")
        let file = try WeightFile.open(path)
        #expect(file.format == "safetensors")
        #expect(file.metadata["mila.config"] == "{}")
        #expect(try file.tensor("a").data == [1.5, -2])
        #expect(try file.tensor("b") == (try Tensor(shape: [1, 2], data: [1, -2])))
        #expect(try file.tensor("c").data == [3])
        #expect(throws: WeightFileError.self) { try file.tensor("missing") }
    }

    static let malformed: [(label: String, bytes: [UInt8], message: String)] = [
        ("truncated", [1, 2, 3], "not a safetensors, PyTorch zip, legacy PyTorch or .npy file"),
        ("header over 100 MB", FileBuilders.le64(200_000_000) + Array("{}".utf8), "over the 100 MB limit"),
        ("shape product overflows", FileBuilders.safetensors(header: #"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#,
                                                             data: [UInt8](repeating: 0, count: 8)), "more than can be addressed"),
        ("header length past the end", FileBuilders.le64(1000) + Array("{}".utf8), "runs past the end"),
        ("not JSON", FileBuilders.safetensors(header: "{not json", data: []), "not valid JSON"),
        ("offsets out of range", FileBuilders.safetensors(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: [0, 0, 0, 0]),
         "outside the 4 data bytes"),
        ("overlapping tensors", FileBuilders.safetensors(
            header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            data: [UInt8](repeating: 0, count: 8)), "overlap"),
        ("wrong dtype", FileBuilders.safetensors(header: #"{"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}"#,
                                                 data: [UInt8](repeating: 0, count: 8)), "unsupported dtype C64"),
        ("size does not match shape", FileBuilders.safetensors(header: #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                                                               data: [UInt8](repeating: 0, count: 8)), "expected 12"),
        ("negative offset", FileBuilders.safetensors(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}"#,
                                                     data: [UInt8](repeating: 0, count: 8)), "outside"),
    ]

    @Test(arguments: malformed.indices)
    func malformedFilesAreClearErrors(_ index: Int) throws {
        let c = Self.malformed[index]
        let path = try FileBuilders.write(c.bytes, "bad.safetensors")
        do {
            _ = try WeightFile.open(path)
            Issue.record("\(c.label): opened without error")
        } catch let error as WeightFileError {
            #expect(error.file == path)
            #expect(error.message.contains(c.message), "\(c.label): \(error)")
        }
    }
}

@Suite("PyTorch checkpoints") struct PyTorchCheckpointTests {
    typealias P = FileBuilders.Pickle

    @Test func readsAStateDictUnderModelWithAStridedView() throws {
        // w: (2, 2) contiguous; t: the transpose of storage "1" (a view saved as-is).
        let pickle = P.dict([("w", P.tensor(key: "0", count: 4, shape: [2, 2], strides: [2, 1])),
                             ("t", P.tensor(key: "1", count: 6, offset: 0, shape: [3, 2], strides: [1, 3]))], underModel: true)
        let path = try FileBuilders.write(FileBuilders.checkpoint(pickle: pickle, storages: ["0": [1, 2, 3, 4], "1": [1, 2, 3, 4, 5, 6]]),
                                          "ok.pth")
        let file = try WeightFile.open(path)
        #expect(file.format == "pytorch")
        #expect(try file.tensor("w") == (try Tensor(shape: [2, 2], data: [1, 2, 3, 4])))
        #expect(try file.tensor("t") == (try Tensor(shape: [3, 2], data: [1, 4, 2, 5, 3, 6])))
    }

    @Test func theStateDictKeyCanBeChosen() throws {
        let pickle = P.dict([("w", P.tensor(key: "0", count: 1, shape: [1], strides: [1]))], underModel: true)
        let path = try FileBuilders.write(FileBuilders.checkpoint(pickle: pickle, storages: ["0": [7]]), "key.pth")
        #expect(try WeightFile.open(path, stateDictKey: "model").tensor("w").data == [7])
        #expect(throws: WeightFileError.self) { try WeightFile.open(path, stateDictKey: "state_dict_ema") }
    }

    static let malformed: [(label: String, bytes: () -> [UInt8], message: String)] = [
        ("a state-dict tensor built by a callable outside the allow-list", {
            FileBuilders.checkpoint(pickle: P.dict([("w", P.tensor(key: "0", count: 1, shape: [1], strides: [1], rebuild: ("os", "system")))]),
                                    storages: ["0": [1]])
        }, "entry w is a object of class os.system (never constructed), not a tensor"),
        ("truncated archive", {
            Array(FileBuilders.checkpoint(pickle: P.dict([("w", P.tensor(key: "0", count: 1, shape: [1], strides: [1]))]),
                                          storages: ["0": [1]]).prefix(60))
        }, "end-of-central-directory"),
        ("storage missing from the archive", {
            FileBuilders.checkpoint(pickle: P.dict([("w", P.tensor(key: "9", count: 1, shape: [1], strides: [1]))]), storages: ["0": [1]])
        }, "storage 9 is missing"),
        ("strides reaching outside the storage", {
            FileBuilders.checkpoint(pickle: P.dict([("w", P.tensor(key: "0", count: 4, shape: [3, 3], strides: [3, 1]))]),
                                    storages: ["0": [1, 2, 3, 4]])
        }, "outside its storage"),
        ("storage shorter than declared", {
            FileBuilders.checkpoint(pickle: P.dict([("w", P.tensor(key: "0", count: 8, shape: [8], strides: [1]))]), storages: ["0": [1, 2]])
        }, "holds 8 bytes"),
        ("unknown opcode", {
            FileBuilders.checkpoint(pickle: [0x80, 0x02, 0xFE, 0x2E], storages: [:])
        }, "unknown pickle opcode 0xFE"),
        ("truncated pickle", {
            FileBuilders.checkpoint(pickle: [0x80, 0x02, 0x58, 0xFF, 0, 0, 0], storages: [:])
        }, "truncated pickle"),
        ("compressed entry", {
            FileBuilders.zip([("ckpt/data.pkl", [0x80, 0x02, 0x7D, 0x2E])], method: 8)
        }, "compressed"),
        ("no data.pkl", { FileBuilders.zip([("ckpt/version", [0x33])]) }, "no data.pkl"),
        ("a huge entry count", { patchEOCD(small(), at: 8, [0xFF, 0xFF]) + [] }, "65535 entries declared"),
        ("a central directory past the end", { patchEOCD(small(), at: 16, [0xF0, 0xFF, 0xFF, 0x7F]) }, "is outside the file"),
        ("two entries sharing their bytes", { overlapping() }, "overlap"),
        ("a name appearing twice", {
            FileBuilders.zip([("ckpt/data.pkl", [0x80, 0x02, 0x7D, 0x2E]), ("ckpt/data.pkl", [0x80, 0x02, 0x7D, 0x2E])])
        }, "appears twice"),
        ("a broadcast view", {
            FileBuilders.checkpoint(pickle: P.dict([("w", P.tensor(key: "0", count: 1, shape: [1_000_000], strides: [0]))]), storages: ["0": [1]])
        }, "a broadcast view"),
        ("an offset and stride product that overflows", {
            FileBuilders.checkpoint(pickle: P.dict([("w", P.tensor(key: "0", count: 4, shape: [2, 2], strides: [Int(Int32.max), Int(Int32.max)]))]),
                                    storages: ["0": [1, 2, 3, 4]])
        }, "outside its storage"),
        ("not a dict", { FileBuilders.checkpoint(pickle: [0x80, 0x02, 0x4A, 1, 0, 0, 0, 0x2E], storages: [:]) }, "not a dict"),
    ]

    static func small() -> [UInt8] {
        FileBuilders.checkpoint(pickle: P.dict([("w", P.tensor(key: "0", count: 1, shape: [1], strides: [1]))]), storages: ["0": [1]])
    }

    /// `bytes` with the end-of-central-directory record's field at `offset` replaced.
    static func patchEOCD(_ bytes: [UInt8], at offset: Int, _ field: [UInt8]) -> [UInt8] {
        var out = bytes
        let eocd = out.count - 22
        out.replaceSubrange((eocd + offset)..<(eocd + offset + field.count), with: field)
        if offset == 8 { out.replaceSubrange((eocd + 10)..<(eocd + 12), with: field) }
        return out
    }

    /// Two central-directory entries pointing at the same local header.
    static func overlapping() -> [UInt8] {
        var bytes = FileBuilders.zip([("ckpt/data.pkl", [0x80, 0x02, 0x7D, 0x2E]), ("ckpt/zzzz.pkl", [0x80, 0x02, 0x7D, 0x2E])])
        let eocd = bytes.count - 22
        let directory = Int(bytes[eocd + 16]) | Int(bytes[eocd + 17]) << 8
        let second = directory + 46 + "ckpt/data.pkl".utf8.count
        bytes.replaceSubrange((second + 42)..<(second + 46), with: [0, 0, 0, 0])
        return bytes
    }

    @Test(arguments: malformed.indices)
    func malformedCheckpointsAreClearErrors(_ index: Int) throws {
        let c = Self.malformed[index]
        let path = try FileBuilders.write(c.bytes(), "bad.pth")
        do {
            let file = try WeightFile.open(path)
            for name in file.tensors.keys { _ = try file.tensor(name) }
            Issue.record("\(c.label): opened without error")
        } catch let error as WeightFileError {
            #expect(error.message.contains(c.message), "\(c.label): \(error)")
        }
    }
}

@Suite("npy") struct NPYTests {
    @Test func roundTrip() throws {
        let t = try Tensor(randomUniform: [2, 3, 5, 7], seed: 3)
        let path = FileBuilders.temporaryPath("t.npy")
        try NPY.write(t, to: path)
        #expect(try NPY.read(path) == t)
        let v = try Tensor(shape: [4], data: [1, 2, 3, 4])
        try NPY.write(v, to: path)
        #expect(try NPY.read(path) == v)
    }

    @Test func aShapeWhoseProductOverflowsIsRefused() throws {
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }"
        let bytes: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0] + FileBuilders.le16(header.utf8.count) + Array(header.utf8)
        do {
            _ = try NPY.read(try FileBuilders.write(bytes, "huge.npy"))
            Issue.record("read an .npy of 2^80 elements")
        } catch let error as WeightFileError {
            #expect(error.message.contains("shape [1099511627776, 1099511627776] of float32 does not fit"), "\(error)")
        }
    }

    static func npy(_ descr: String, shape: String, payload: [UInt8]) -> [UInt8] {
        let header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shape), }"
        return [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0] + FileBuilders.le16(header.utf8.count) + Array(header.utf8) + payload
    }

    @Test func readsIntegerAndDoubleArraysAsFloats() throws {
        // Label maps (int32, uint8) and float64 arrays, as numpy writes them.
        let i4 = Self.npy("<i4", shape: "(2,)", payload: [7, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF])
        #expect(try NPY.read(try FileBuilders.write(i4, "i4.npy")).data == [7, -1])
        let u1 = Self.npy("|u1", shape: "(3,)", payload: [0, 200, 255])
        #expect(try NPY.read(try FileBuilders.write(u1, "u1.npy")).data == [0, 200, 255])
        let f8 = Self.npy("<f8", shape: "(1,)", payload: [0, 0, 0, 0, 0, 0, 0xF8, 0x3F])
        #expect(try NPY.read(try FileBuilders.write(f8, "f8.npy")).data == [1.5])
    }

    @Test func rejectsOtherDtypesAndBadFiles() throws {
        for descr in [">f4", "<c8", "<f2", "|b1"] {
            let bytes = Self.npy(descr, shape: "(1,)", payload: [UInt8](repeating: 0, count: 8))
            #expect(throws: WeightFileError.self) { try NPY.read(try FileBuilders.write(bytes, "other.npy")) }
        }
        #expect(throws: WeightFileError.self) { try NPY.read(try FileBuilders.write([1, 2, 3], "junk.npy")) }
        #expect(throws: WeightFileError.self) { try NPY.read("/nonexistent/x.npy") }
    }
}

@Suite("Format detection") struct FormatDetectionTests {
    @Test func formatsAreToldByContentNotByExtension() throws {
        let safetensors = FileBuilders.safetensors(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: FileBuilders.floats([2]))
        #expect(try WeightFile.open(try FileBuilders.write(safetensors, "weights.pth")).format == "safetensors")
        let checkpoint = PyTorchCheckpointTests.small()
        #expect(try WeightFile.open(try FileBuilders.write(checkpoint, "model.safetensors")).format == "pytorch")
    }

    @Test func anUnknownFileSaysWhatWasExpected() throws {
        for (bytes, detail) in [([UInt8](), "the file is empty"), (Array("GIF89a....".utf8), "starts with bytes 47 49 46 38 39 61 2e 2e")] {
            do {
                _ = try WeightFile.open(try FileBuilders.write(bytes, "model.pth"))
                Issue.record("opened \(bytes)")
            } catch let error as WeightFileError {
                #expect(error.message.contains("not a safetensors, PyTorch zip, legacy PyTorch or .npy file"), "\(error)")
                #expect(error.message.contains(detail), "\(error)")
            }
        }
        let npy = FileBuilders.temporaryPath("input.npy")
        try NPY.write(try Tensor(shape: [2], data: [1, 2]), to: npy)
        #expect(throws: WeightFileError(file: npy, "an .npy array, not a weight file (weights are safetensors or a PyTorch checkpoint)")) {
            try WeightFile.open(npy)
        }
    }
}
