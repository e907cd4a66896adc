import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// The serving tests' Python clients (.ci/setup installs them; MILA_SERVE_CLIENTS_DIR moves them).
let serveClientsPython: String? = {
    let env = ProcessInfo.processInfo.environment
    let folder = env["MILA_SERVE_CLIENTS_DIR"]
        ?? ((env["XDG_CACHE_HOME"] ?? NSHomeDirectory() + "/.cache") + "/mila/serve-clients")
    let python = folder + "/bin/python"
    return FileManager.default.isExecutableFile(atPath: python) ? python : nil
}()

/// A `mila-infer serve` process on free ports, stopped with SIGTERM.
final class ServeProcess {
    let process = Process()
    let log: URL
    private(set) var port = 0, metricsPort = 0

    init(_ arguments: [String]) throws {
        log = try CLI.temporaryFolder().appendingPathComponent("serve.log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        process.executableURL = CLI.binary
        process.arguments = ["serve", "--http-port", "0", "--metrics-port", "0"] + arguments
        process.standardError = try FileHandle(forWritingTo: log)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(300)
        while (port == 0 || metricsPort == 0) && Date() < deadline && process.isRunning {
            for line in output.split(separator: "\n") {
                if let p = Self.port(in: line, after: "listening on http://127.0.0.1:") { port = p }
                if let p = Self.port(in: line, after: "metrics on http://127.0.0.1:") { metricsPort = p }
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
    }

    static func port(in line: Substring, after prefix: String) -> Int? {
        guard let range = line.range(of: prefix) else { return nil }
        return Int(line[range.upperBound...].prefix { $0.isNumber })
    }

    var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    func get(_ path: String, port: Int? = nil) -> (status: Int, body: String) {
        let url = URL(string: "http://127.0.0.1:\(port ?? self.port)\(path)")!
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result = (status: 0, body: "")
        URLSession.shared.dataTask(with: url) { data, response, _ in
            result = ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data ?? Data(), as: UTF8.self))
            done.signal()
        }.resume()
        done.wait()
        return result
    }

    func waitReady() -> Bool {
        for _ in 0..<3000 where process.isRunning {
            if get("/v2/health/ready").status == 200 { return true }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return false
    }

    /// SIGTERM, then the exit status.
    func stop() -> Int32 {
        process.terminate()
        process.waitUntilExit()
        return process.terminationStatus
    }
}

@Suite("mila-infer serve", .serialized) struct ServeCLITests {
    /// The stock Triton client (tritonclient[http] 2.73, its defaults) against the embedded
    /// digits model: metadata, health, binary and JSON infer, classification, images, errors
    /// (Tests/ServeClients/triton_compliance.py); then SIGTERM ends the server with status 0.
    @Test(.enabled(if: serveClientsPython != nil || ProcessInfo.processInfo.environment["CI"] != nil,
                   "tritonclient is not installed (bash .ci/setup installs it)"))
    func stockTritonClient() throws {
        let python = try #require(serveClientsPython, "CI must have the serving clients: .ci/setup installs them")
        let server = try ServeProcess(["--model", "digits", "--max-batch", "8"])
        #expect(server.port > 0 && server.metricsPort > 0, "\(server.output)")
        #expect(server.waitReady(), "\(server.output)")
        let client = Process()
        client.executableURL = URL(fileURLWithPath: python)
        client.arguments = [CLI.root.appendingPathComponent("Tests/ServeClients/triton_compliance.py").path, "127.0.0.1:\(server.port)", "digits"]
            + ["digit-3.png", "digit-7.jpg", "digit-9.png"].map { CLI.root.appendingPathComponent("Examples/\($0)").path }
        let out = Pipe()
        client.standardOutput = out
        client.standardError = out
        try client.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        client.waitUntilExit()
        #expect(client.terminationStatus == 0 && text.contains(" passed, 0 failed"), "\(text)")
        let metrics = server.get("/metrics", port: server.metricsPort)
        #expect(metrics.status == 200 && metrics.body.contains("mila_inference_request_success{model=\"digits\",version=\"1\"}"), "\(metrics.body.prefix(300))")
        #expect(server.stop() == 0, "\(server.output)")
        #expect(server.output.contains("mila-infer serve: stopped"))
    }

    @Test func badStartIsOneLineAndExitOne() throws {
        let result = try CLI.run(["serve", "--model", "no-such-model.pth", "--http-port", "0"])
        #expect(result.status == 1)
        #expect(result.err.contains("no-such-model.pth: no such file, and no embedded model of that name"), "\(result.err)")
        let invalid = try CLI.run(["serve", "--max-batch", "0"])
        #expect(invalid.status != 0 && invalid.err.contains("--max-batch must be 1 to 1024"), "\(invalid.err)")
        let segmentation = try ServeProcess(["--model", "digits-seg"])
        #expect(segmentation.waitReady(), "\(segmentation.output)")
        let meta = segmentation.get("/v2/models/digits-seg")
        #expect(meta.body.contains(#"{"name":"labels","datatype":"INT32","shape":[-1,-1,-1]}"#), "\(meta.body)")
        #expect(segmentation.stop() == 0)
    }
}
