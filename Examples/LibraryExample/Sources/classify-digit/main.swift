import Foundation
import MilaEngine
import MilaImage

// classify-digit [IMAGE...]: the top three classes of each image under the embedded digits model.
let images = CommandLine.arguments.count > 1 ? Array(CommandLine.arguments.dropFirst()) : ["../digit-3.png"]
do {
    let engine = try Engine(model: "digits")
    let decoded = try images.map { try ImageDecoder.decode($0) }
    for (path, classes) in zip(images, try engine.classify(decoded, top: 3)) {
        print(path + ": " + classes.map { String(format: "%@ %.3f", $0.label, $0.probability) }.joined(separator: ", "))
    }
} catch {
    FileHandle.standardError.write(Data("classify-digit: \(error)\n".utf8))
    exit(1)
}
