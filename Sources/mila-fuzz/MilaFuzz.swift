import Foundation
import MilaFuzzTargets

// Replay (any build):  mila-fuzz TARGET FILE|DIR ...
// Fuzz (the build Tests/Fuzz/run.sh makes, -sanitize=fuzzer,address -D FUZZING, where libFuzzer
// owns main):          MILA_FUZZ_TARGET=TARGET mila-fuzz [libFuzzer options] CORPUS...

#if FUZZING
private let selected: (Data) -> Void = {
    let name = ProcessInfo.processInfo.environment["MILA_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTargets.all[name] else {
        FileHandle.standardError.write(Data("set MILA_FUZZ_TARGET to one of: \(FuzzTargets.names.joined(separator: ", "))\n".utf8))
        exit(2)
    }
    return target
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ bytes: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    selected(bytes.map { Data(bytes: $0, count: size) } ?? Data())
    return 0
}
#else
@main struct MilaFuzz {
    static func main() {
        let arguments = CommandLine.arguments
        guard arguments.count >= 2, let target = FuzzTargets.all[arguments[1]] else {
            FileHandle.standardError.write(Data("usage: mila-fuzz TARGET FILE|DIR ...; targets: \(FuzzTargets.names.joined(separator: ", "))\n".utf8))
            exit(2)
        }
        var replayed = 0
        for path in arguments.dropFirst(2) {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
                FileHandle.standardError.write(Data("mila-fuzz: \(path): no such file\n".utf8))
                exit(1)
            }
            let files = isFolder.boolValue
                ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { "\(path)/\($0)" } : [path]
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else { continue }
                target(data)
                replayed += 1
            }
        }
        print("replayed \(replayed) inputs through \(arguments[1])")
    }
}
#endif
