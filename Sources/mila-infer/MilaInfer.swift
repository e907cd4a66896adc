import ArgumentParser
import Foundation
import MilaEngine
import MilaCore
import MilaOpenCL

extension Precision: ExpressibleByArgument {}

@main
struct MilaInfer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mila-infer",
        abstract: "Run MILA / MLLA vision models on OpenCL devices.",
        discussion: """
            Environment: MILA_DEVICE selects the device (index, platform:device or name part); \
            MILA_KERNEL_VARIANT=cpu|gpu and MILA_GEMM=register|tiled|clblast force kernel families; \
            MILA_KERNEL_DIR loads Kernels/*.cl from a folder instead of the embedded copies; \
            MILA_CACHE_DIR moves the program cache (MILA_KERNEL_CACHE=0 turns it off).
            """,
        subcommands: [Classify.self, Segment.self, Run.self, Check.self, Eval.self, Merge.self, Bench.self, Serve.self, Models.self, Devices.self],
        defaultSubcommand: Classify.self)
}

/// Runs `body`; any error becomes one line on stderr and exit status 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let exit as ExitCode {
        throw exit
    } catch let exit as CleanExit {
        throw exit
    } catch {
        FileHandle.standardError.write(Data("mila-infer: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

func note(_ text: String) {
    FileHandle.standardError.write(Data("\(text)\n".utf8))
}

/// The options every command that loads a model shares.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "Model file (safetensors, or a PyTorch checkpoint in the zip or legacy format), or the name of an embedded model (see `mila-infer models`).")
    var model: String?

    @Option(name: .long, help: "Architecture preset (mlla_t, mlla_s, mlla_b, mila_fg_t/s/b, mlla_t/s/b_upernet) when the file does not say; alone, runs random weights.")
    var arch: String?

    @Option(name: .customLong("state-dict"), help: "Entry of a PyTorch checkpoint holding the state dict, e.g. state_dict_ema or model_ema (default: 'model', else 'state_dict', else the top level).")
    var stateDict: String?

    @Option(name: .long, help: "opencl or reference.")
    var backend: String = "opencl"

    @Option(name: .long, help: "OpenCL device: index, platform:device, or part of a name (default: $MILA_DEVICE, else a GPU, else an accelerator, else a CPU; simulators only when named; see `mila-infer devices`).")
    var device: String?

    @Option(name: .long, help: "Weight storage: fp32, or fp16 (GEMM and 3x3 convolution weights as half floats on the device, float32 arithmetic; needs cl_khr_fp16, see `mila-infer devices`).")
    var precision: Precision = .fp32

    func backendKind() throws -> BackendKind {
        guard let kind = BackendKind(rawValue: backend) else {
            throw ValidationError("--backend must be opencl or reference, not '\(backend)'")
        }
        return kind
    }
}
