import Foundation
import MilaCore
import MilaEngine
import MilaOpenCL

/// One row of `mila-infer bench`: a backend at one input size.
struct BenchRow {
    let backend: String
    let device: String
    let arch: String
    let height: Int
    let width: Int
    let batch: Int
    /// How the weights were stored (`--precision`).
    var precision = "fp32"
    var msMedian: Double?
    var msMin: Double?
    var msMax: Double?
    var peakMB: Double?
    var gflops: Double?
    var logits: Tensor?
    /// Why there are no figures (does not fit, skipped, failed).
    var note: String?
    /// With --compare-reference, on the OpenCL row: reference time / OpenCL time, logits' rel L2.
    var speedup: Double?
    var logitsRelativeL2: Double?

    init(backend: String, device: String, arch: String, height: Int, width: Int, batch: Int) {
        (self.backend, self.device, self.arch, self.height, self.width, self.batch) = (backend, device, arch, height, width, batch)
    }

    mutating func fill(_ m: Measured) {
        let sorted = m.times.sorted()
        msMedian = (sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2) * 1e3
        msMin = sorted.first! * 1e3
        msMax = sorted.last! * 1e3
        peakMB = Double(m.peakBytes) / 1_048_576
        gflops = m.flops / (msMedian! * 1e-3) * 1e-9
        logits = m.logits
    }

    var imagesPerSecond: Double? { msMedian.map { Double(batch) / ($0 * 1e-3) } }
    var megapixelsPerSecond: Double? { msMedian.map { Double(batch * height * width) * 1e-6 / ($0 * 1e-3) } }
}

/// The run's context: device, driver, engine version and build.
struct BenchHeader {
    let deviceName: String
    let driver: String
    let engineVersion: String
    let build: String

    init(engine: Engine) {
        if let cl = engine.backend as? CLBackend {
            let d = cl.context.device
            deviceName = d.name
            driver = "\(d.platformName), driver \(d.driverVersion), \(d.openCLCVersion)"
            build = "\(buildConfiguration) build, kernels \(CLContext.baseOptions) variant \(cl.context.variant)"
                + (ProcessInfo.processInfo.environment["MILA_GEMM"].map { ", MILA_GEMM=\($0)" } ?? "") + ", \(engine.precision) weights"
        } else {
            deviceName = "CPU (Swift reference)"
            driver = "none"
            build = "\(buildConfiguration) build, Float64 accumulation"
        }
        engineVersion = "mila \(MilaVersion.string) (commit \(MilaVersion.commit()))"
    }

    var line: String { "device: \(deviceName) (\(driver)); \(engineVersion); \(build)" }
}

#if DEBUG
let buildConfiguration = "debug"
#else
let buildConfiguration = "release"
#endif

/// Device time of one forward pass per op kind and per stage, from OpenCL profiling events,
/// against its wall time.
struct ForwardProfile {
    var byKind: [(name: String, seconds: Double, launches: Int)]
    var byStage: [(name: String, seconds: Double)]
    var byKernel: [(name: String, seconds: Double, launches: Int)]
    var kernelSeconds: Double
    var deviceSpanSeconds: Double
    var wallSeconds: Double

    static func measure(engine: Engine, backend: CLBackend, input: Tensor) throws -> ForwardProfile {
        let graph = try engine.graph(batch: input.shape[0], height: input.shape[2], width: input.shape[3])
        // The wall ends when the forward has returned its outputs (read back after the last
        // kernel), before the profiling events are queried.
        let start = DispatchTime.now().uptimeNanoseconds
        var end = start
        let events = try backend.context.taggedDeviceTimes {
            _ = try engine.run(nchw: input)
            end = DispatchTime.now().uptimeNanoseconds
        }
        let wall = Double(end - start) * 1e-9
        var kinds: [String: (Double, Int)] = [:], kernels: [String: (Double, Int)] = [:], stages: [String: Double] = [:]
        var total = 0.0
        for e in events {
            let seconds = Double(e.end &- e.start) * 1e-9
            total += seconds
            let node = e.tag >= 0 && e.tag < graph.nodes.count ? graph.nodes[e.tag] : nil
            let kind = node.map { kindName($0) } ?? e.name
            kinds[kind, default: (0, 0)].0 += seconds
            kinds[kind, default: (0, 0)].1 += 1
            kernels[e.name, default: (0, 0)].0 += seconds
            kernels[e.name, default: (0, 0)].1 += 1
            stages[node.map { stageName($0.name) } ?? "other", default: 0] += seconds
        }
        let span = events.isEmpty ? 0 : Double(events.map(\.end).max()! &- events.map(\.start).min()!) * 1e-9
        return ForwardProfile(byKind: kinds.map { ($0.key, $0.value.0, $0.value.1) }.sorted { $0.seconds > $1.seconds },
                              byStage: stages.map { ($0.key, $0.value) }.sorted { stageOrder($0.name) < stageOrder($1.name) },
                              byKernel: kernels.map { ($0.key, $0.value.0, $0.value.1) }.sorted { $0.seconds > $1.seconds },
                              kernelSeconds: total, deviceSpanSeconds: span, wallSeconds: wall)
    }

    /// The op kind, with what the fusion pass folded into a GEMM or convolution.
    static func kindName(_ node: Node) -> String {
        switch node.op {
        case let .linear(_, _, activation) where activation != .none: return "linear+\(activation)"
        case let .conv3x3(_, _, _, activation, depthwise) where activation != .none:
            return (depthwise ? "dwconv3x3+" : "conv3x3+") + "\(activation)"
        default: return node.op.kind
        }
    }

    /// patch_embed -> stem, layers.N.* -> stage N (downsample included), norm / head -> head;
    /// a backbone's norm{N} -> stage N; in a segmentation model `backbone.` is dropped first and
    /// decode_head.* / the final resizes are the head.
    static func stageName(_ scope: String) -> String {
        var parts = scope.split(separator: ".")
        if parts.first == "backbone" { parts.removeFirst() }
        if ["decode_head", "resize_argmax", "resize"].contains(parts.first ?? "") { return "head" }
        if let first = parts.first, first.hasPrefix("norm"), let n = Int(first.dropFirst(4)) { return "stage \(n)" }
        if parts.first == "patch_embed" { return "stem" }
        if parts.first == "layers", parts.count > 1, let n = Int(parts[1]) { return "stage \(n)" }
        if ["norm", "head", "avgpool"].contains(parts.first ?? "") { return "head" }
        return scope.isEmpty ? "other" : String(parts.first!)
    }

    static func stageOrder(_ name: String) -> Int {
        if name == "stem" { return -1 }
        if name.hasPrefix("stage "), let n = Int(name.dropFirst(6)) { return n }
        return name == "head" ? 1000 : 1001
    }

    func table(_ size: String) -> String {
        var out = String(format: "\nprofile at %@: wall %.2f ms, kernels %.2f ms (%.1f%%), device span %.2f ms; outside kernels %.2f ms (%.1f%%: host overhead, transfers and launch gaps)\n",
                         size, wallSeconds * 1e3, kernelSeconds * 1e3, 100 * kernelSeconds / wallSeconds, deviceSpanSeconds * 1e3,
                         (wallSeconds - kernelSeconds) * 1e3, 100 * (wallSeconds - kernelSeconds) / wallSeconds)
        out += "  " + column("op kind", 28) + column("ms", 10, right: true) + column("share", 8, right: true) + column("launches", 10, right: true) + "\n"
        for k in byKind {
            out += "  " + column(k.name, 28) + column(String(format: "%.2f", k.seconds * 1e3), 10, right: true)
                + column(String(format: "%.1f%%", 100 * k.seconds / kernelSeconds), 8, right: true) + column("\(k.launches)", 10, right: true) + "\n"
        }
        out += "  " + column("kernel", 28) + column("ms", 10, right: true) + column("share", 8, right: true) + column("launches", 10, right: true) + "\n"
        for k in byKernel {
            out += "  " + column(k.name, 28) + column(String(format: "%.2f", k.seconds * 1e3), 10, right: true)
                + column(String(format: "%.1f%%", 100 * k.seconds / kernelSeconds), 8, right: true) + column("\(k.launches)", 10, right: true) + "\n"
        }
        out += "  " + column("stage", 28) + column("ms", 10, right: true) + column("share", 8, right: true) + "\n"
        for s in byStage {
            out += "  " + column(s.name, 28) + column(String(format: "%.2f", s.seconds * 1e3), 10, right: true)
                + column(String(format: "%.1f%%", 100 * s.seconds / kernelSeconds), 8, right: true) + "\n"
        }
        return out
    }

    var jsonObject: [String: Any] {
        ["wall_ms": wallSeconds * 1e3, "kernel_ms": kernelSeconds * 1e3, "device_span_ms": deviceSpanSeconds * 1e3,
         "outside_kernels_ms": (wallSeconds - kernelSeconds) * 1e3,
         "by_kind": byKind.map { ["kind": $0.name, "ms": $0.seconds * 1e3, "launches": $0.launches] as [String: Any] },
         "by_kernel": byKernel.map { ["kernel": $0.name, "ms": $0.seconds * 1e3, "launches": $0.launches] as [String: Any] },
         "by_stage": byStage.map { ["stage": $0.name, "ms": $0.seconds * 1e3] as [String: Any] }]
    }
}

struct BenchReport {
    let header: BenchHeader
    let rows: [BenchRow]
    let profiles: [(size: String, profile: ForwardProfile)]
    let compare: Bool

    static let csvHeader = "backend,device,arch,height,width,batch,precision,ms_median,ms_min,ms_max,images_per_s,megapixels_per_s,gflops_per_s,peak_mem_mb"

    func csv() -> String {
        var out = Self.csvHeader + (compare ? ",speedup_vs_reference,logits_rel_l2" : "") + ",note\n"
        for r in rows {
            var fields = [r.backend, r.device, r.arch, "\(r.height)", "\(r.width)", "\(r.batch)", r.precision,
                          f(r.msMedian, "%.3f"), f(r.msMin, "%.3f"), f(r.msMax, "%.3f"), f(r.imagesPerSecond, "%.3f"),
                          f(r.megapixelsPerSecond, "%.4f"), f(r.gflops, "%.2f"), f(r.peakMB, "%.1f")]
            if compare { fields += [f(r.speedup, "%.1f"), f(r.logitsRelativeL2, "%.2e")] }
            fields.append(r.note ?? "")
            out += fields.map(csvField).joined(separator: ",") + "\n"
        }
        return out
    }

    func table() -> String {
        var out = header.line + "\n\n"
        var columns = ["backend", "size", "batch", "ms median", "min", "max", "images/s", "MP/s", "GFLOP/s", "peak MiB"]
        if compare { columns += ["speedup", "logits rel L2"] }
        let widths = [10, 11, 6, 11, 10, 10, 10, 8, 9, 10, 9, 14]
        out += zip(columns, widths).enumerated().map { column($1.0, $1.1, right: $0 >= 2) }.joined() + "\n"
        for r in rows {
            var cells = [r.backend, "\(r.height)x\(r.width)", "\(r.batch)"]
            if r.msMedian == nil {
                out += column(cells[0], widths[0]) + column(cells[1], widths[1]) + column(cells[2], widths[2], right: true) + "  " + (r.note ?? "") + "\n"
                continue
            }
            cells += [f(r.msMedian, "%.2f"), f(r.msMin, "%.2f"), f(r.msMax, "%.2f"), f(r.imagesPerSecond, "%.2f"),
                      f(r.megapixelsPerSecond, "%.3f"), f(r.gflops, "%.1f"), f(r.peakMB, "%.1f")]
            if compare { cells += [f(r.speedup, "%.1fx"), f(r.logitsRelativeL2, "%.2e")] }
            out += zip(cells, widths).enumerated().map { column($1.0, $1.1, right: $0 >= 2) }.joined()
                + (r.note.map { "  \($0)" } ?? "") + "\n"
        }
        let measured = rows.filter { $0.backend != "reference" && $0.megapixelsPerSecond != nil }
        if let first = measured.first, let last = measured.last, measured.count > 1 {
            out += String(format: "\nmegapixels/s at %dx%d relative to %dx%d: %.2f\n", last.height, last.width, first.height, first.width,
                          last.megapixelsPerSecond! / first.megapixelsPerSecond!)
        }
        return out + profileTables()
    }

    func profileTables() -> String { profiles.map { $0.profile.table($0.size) }.joined() }

    func json() -> String {
        let object: [String: Any] = [
            "device": header.deviceName, "driver": header.driver, "engine": header.engineVersion, "build": header.build,
            "rows": rows.map { r -> [String: Any] in
                var o: [String: Any] = ["backend": r.backend, "device": r.device, "arch": r.arch, "height": r.height, "width": r.width, "batch": r.batch,
                                          "precision": r.precision]
                if let v = r.msMedian { o["ms_median"] = v }
                if let v = r.msMin { o["ms_min"] = v }
                if let v = r.msMax { o["ms_max"] = v }
                if let v = r.imagesPerSecond { o["images_per_s"] = v }
                if let v = r.megapixelsPerSecond { o["megapixels_per_s"] = v }
                if let v = r.gflops { o["gflops_per_s"] = v }
                if let v = r.peakMB { o["peak_mem_mb"] = v }
                if let v = r.speedup { o["speedup_vs_reference"] = v }
                if let v = r.logitsRelativeL2 { o["logits_rel_l2"] = v }
                if let v = r.note { o["note"] = v }
                return o
            },
            "profiles": profiles.map { ["size": $0.size, "profile": $0.profile.jsonObject] as [String: Any] },
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    private func f(_ value: Double?, _ format: String) -> String { value.map { String(format: format, $0) } ?? "" }

    private func csvField(_ s: String) -> String {
        s.contains(",") || s.contains("\"") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }
}


/// An SVG of images/s and megapixels/s against resolution (log-scale x), one line per backend.
enum BenchPlot {
    static func svg(rows: [BenchRow], title: String) -> String {
        var backends: [String] = []
        for r in rows where !backends.contains(r.backend) { backends.append(r.backend) }
        let colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
        let measured = rows.filter { $0.msMedian != nil }
        let xs = measured.map { (Double($0.height) * Double($0.width)).squareRoot() }
        let (xMin, xMax) = (max(1, (xs.min() ?? 100) / 1.15), max(2, (xs.max() ?? 1000) * 1.15))
        let (panelW, panelH, left, top, gap) = (380.0, 300.0, 70.0, 60.0, 90.0)
        var out = """
            <?xml version="1.0" encoding="UTF-8"?>
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(left * 2 + panelW * 2 + gap))" height="\(Int(top + panelH + 90))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(Int(left + panelW + gap / 2))" y="24" text-anchor="middle" font-size="15">\(escape(title))</text>

            """
        let panels: [(name: String, value: (BenchRow) -> Double?)] = [("images/s", { $0.imagesPerSecond }), ("megapixels/s", { $0.megapixelsPerSecond })]
        for (p, panel) in panels.enumerated() {
            let x0 = left + Double(p) * (panelW + gap)
            let values = measured.compactMap(panel.value).filter { $0 > 0 }
            // Linear y unless the lines span more than 20x (a CPU reference beside a device): then log.
            let logY = (values.max() ?? 1) / (values.min() ?? 1) > 20
            let yLow = logY ? pow(10, floor(log10(values.min()!))) : 0
            let yMax = logY ? pow(10, ceil(log10(values.max()!))) : niceCeiling((values.max() ?? 1) * 1.1)
            func px(_ x: Double) -> Double { x0 + (log(x) - log(xMin)) / (log(xMax) - log(xMin)) * panelW }
            func py(_ y: Double) -> Double {
                logY ? top + panelH - (log(y) - log(yLow)) / (log(yMax) - log(yLow)) * panelH : top + panelH - y / yMax * panelH
            }
            let yTicks = logY ? (0...Int(log10(yMax / yLow).rounded())).map { yLow * pow(10, Double($0)) } : (0...5).map { yMax * Double($0) / 5 }
            out += "<g class=\"panel\" id=\"\(p == 0 ? "images" : "megapixels")\">\n"
            out += "<rect x=\"\(fmt(x0))\" y=\"\(fmt(top))\" width=\"\(fmt(panelW))\" height=\"\(fmt(panelH))\" fill=\"none\" stroke=\"#444\"/>\n"
            for y in yTicks {
                out += "<line x1=\"\(fmt(x0))\" x2=\"\(fmt(x0 + panelW))\" y1=\"\(fmt(py(y)))\" y2=\"\(fmt(py(y)))\" stroke=\"#ddd\"/>"
                out += "<text x=\"\(fmt(x0 - 6))\" y=\"\(fmt(py(y) + 4))\" text-anchor=\"end\">\(tick(y))</text>\n"
            }
            for x in Array(Set(xs)).sorted() {
                out += "<line x1=\"\(fmt(px(x)))\" x2=\"\(fmt(px(x)))\" y1=\"\(fmt(top + panelH))\" y2=\"\(fmt(top + panelH + 5))\" stroke=\"#444\"/>"
                out += "<text x=\"\(fmt(px(x)))\" y=\"\(fmt(top + panelH + 18))\" text-anchor=\"middle\">\(Int(x.rounded()))</text>\n"
            }
            out += "<text class=\"xlabel\" x=\"\(fmt(x0 + panelW / 2))\" y=\"\(fmt(top + panelH + 40))\" text-anchor=\"middle\">input resolution (sqrt(H x W), pixels; log scale)</text>\n"
            out += "<text class=\"ylabel\" transform=\"translate(\(fmt(x0 - 52)),\(fmt(top + panelH / 2))) rotate(-90)\" text-anchor=\"middle\">\(panel.name)\(logY ? " (log scale)" : "")</text>\n"
            for (b, backend) in backends.enumerated() {
                let points = measured.filter { $0.backend == backend }.compactMap { r -> (Double, Double)? in
                    panel.value(r).map { ((Double(r.height) * Double(r.width)).squareRoot(), $0) }
                }
                guard !points.isEmpty else { continue }
                let colour = colours[b % colours.count]
                out += "<polyline class=\"series\" data-backend=\"\(escape(backend))\" fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\" points=\""
                    + points.map { "\(fmt(px($0.0))),\(fmt(py($0.1)))" }.joined(separator: " ") + "\"/>\n"
                for point in points {
                    out += "<circle cx=\"\(fmt(px(point.0)))\" cy=\"\(fmt(py(point.1)))\" r=\"3.5\" fill=\"\(colour)\"><title>\(Int(point.0.rounded())): \(tick(point.1)) \(panel.name)</title></circle>\n"
                }
            }
            out += "</g>\n"
        }
        for (b, backend) in backends.enumerated() {
            let y = top + panelH + 62, x = left + Double(b) * 160
            out += "<line x1=\"\(fmt(x))\" x2=\"\(fmt(x + 24))\" y1=\"\(fmt(y - 4))\" y2=\"\(fmt(y - 4))\" stroke=\"\(colours[b % colours.count])\" stroke-width=\"2\"/>"
            out += "<text class=\"legend\" x=\"\(fmt(x + 30))\" y=\"\(fmt(y))\">\(escape(backend))</text>\n"
        }
        return out + "</svg>\n"
    }

    static func fmt(_ v: Double) -> String { String(format: "%.1f", v) }

    static func tick(_ v: Double) -> String {
        v >= 100 ? String(format: "%.0f", v) : v >= 1 ? String(format: "%.1f", v) : String(format: "%.3g", v)
    }

    static func niceCeiling(_ v: Double) -> Double {
        guard v > 0 else { return 1 }
        let magnitude = pow(10, floor(log10(v)))
        return ([1, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= v }) ?? 10 * magnitude
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }
}
