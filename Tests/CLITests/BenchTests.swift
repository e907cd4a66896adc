import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing

/// Collects the SVG's elements for the plot test.
final class SVGCollector: NSObject, XMLParserDelegate {
    var elements: [(name: String, attributes: [String: String])] = []
    var texts: [String] = []
    private var text = ""

    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String] = [:]) {
        elements.append((name, attributes))
        text = ""
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }

    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        if name == "text" { texts.append(text) }
        text = ""
    }
}

@Suite("mila-infer bench", .serialized) struct BenchTests {
    static let header = "backend,device,arch,height,width,batch,precision,ms_median,ms_min,ms_max,images_per_s,megapixels_per_s,gflops_per_s,peak_mem_mb"

    /// The issue's command: the exact header, one row per resolution, numbers that agree with
    /// each other (images/s from the median, megapixels from the size, FLOPs per image growing
    /// with the size, memory growing with the size).
    @Test func csvHasTheHeaderAndOneRowPerResolution() throws {
        let result = try CLI.run(["bench", "--arch", "mlla_t", "--resolutions", "224,512", "--format", "csv", "--runs", "2"])
        #expect(result.status == 0, "\(result.err)")
        let lines = result.out.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix(Self.header + ",") == true, "\(lines.first ?? "")")
        #expect(lines.count == 3, "\(result.out)")
        var flopsPerImage: [Double] = [], memory: [Double] = []
        for (line, size) in zip(lines.dropFirst(), [224, 512]) {
            let f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            #expect(f[0] == "opencl" && f[2] == "mlla_t" && f[3] == "\(size)" && f[4] == "\(size)" && f[5] == "1" && f[6] == "fp32", "\(line)")
            let (median, low, high) = (Double(f[7])!, Double(f[8])!, Double(f[9])!)
            #expect(low <= median && median <= high && low > 0)
            #expect(abs(Double(f[10])! - 1000 / median) / (1000 / median) < 0.01)
            #expect(abs(Double(f[11])! - Double(size * size) * 1e-6 * 1000 / median) / Double(f[11])! < 0.01)
            flopsPerImage.append(Double(f[12])! * median / 1000)
            memory.append(Double(f[13])!)
        }
        // MLLA-T at 224 is 4.2 GMACs (the paper's "4.2G FLOPs"): 8.4 GFLOP at 2 per multiply-add.
        #expect(flopsPerImage[0] > 8.0 && flopsPerImage[0] < 8.8, "\(flopsPerImage)")
        #expect(flopsPerImage[1] > 4 * flopsPerImage[0] && memory[1] > memory[0] && memory[0] > 90, "\(flopsPerImage) \(memory)")
    }

    @Test func sizeThatDoesNotFitIsARowAndTheSweepGoesOn() throws {
        let result = try CLI.run(["bench", "--arch", "mlla_t", "--resolutions", "64,40000,72x80", "--format", "csv", "--runs", "1", "--warmup", "0"])
        #expect(result.status == 0, "\(result.err)")
        let lines = result.out.split(separator: "\n").map(String.init)
        #expect(lines.count == 4, "\(result.out)")
        #expect(lines[2].contains(",40000,40000,1,fp32,,,,") && lines[2].contains("does not fit"), "\(lines[2])")
        #expect(lines[3].hasPrefix("opencl,") && lines[3].contains(",72,80,1,"), "\(lines[3])")
    }

    /// The plot is valid SVG with both backends as lines in both panels, axis labels and the
    /// device in the title; the reference comparison adds speedup and logits' relative L2.
    @Test func plotAndReferenceComparison() throws {
        let folder = try CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let svg = folder.appendingPathComponent("bench.svg")
        let result = try CLI.run(["bench", "--model", "digits", "--resolutions", "48,64,96", "--runs", "1", "--compare-reference",
                                  "--format", "csv", "--plot", svg.path])
        #expect(result.status == 0, "\(result.err)")
        let rows = result.out.split(separator: "\n").dropFirst().map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        #expect(rows.count == 6 && rows.map { $0[0] } == ["opencl", "reference", "opencl", "reference", "opencl", "reference"], "\(result.out)")
        for row in rows where row[0] == "opencl" {
            #expect(Double(row[14])! > 0 && Double(row[15])! < 1e-4, "speedup and rel L2: \(row)")
        }
        let parser = XMLParser(data: try Data(contentsOf: svg))
        let collector = SVGCollector()
        parser.delegate = collector
        #expect(parser.parse(), "not well-formed: \(parser.parserError.map { "\($0)" } ?? "")")
        #expect(collector.elements.first?.name == "svg")
        let series = collector.elements.filter { $0.name == "polyline" }
        #expect(series.count == 4 && Set(series.compactMap { $0.attributes["data-backend"] }) == ["opencl", "reference"])
        for line in series { #expect(line.attributes["points"]!.split(separator: " ").count == 3) }
        let device = rows[0][1]
        #expect(collector.texts.contains { $0.contains("mila-infer bench") && $0.contains(device) }, "\(collector.texts)")
        #expect(collector.texts.contains { $0.hasPrefix("images/s") } && collector.texts.contains { $0.hasPrefix("megapixels/s") })
        #expect(collector.texts.filter { $0.contains("log scale") }.count >= 2)
    }

    /// Profile figures are consistent: per op kind and per stage they add up to the kernel
    /// time, which lies inside the forward's wall time.
    @Test func profileAddsUp() throws {
        let result = try CLI.run(["bench", "--model", "digits-fg", "--resolutions", "64", "--runs", "1", "--profile", "--format", "json"])
        #expect(result.status == 0, "\(result.err)")
        let object = try JSONSerialization.jsonObject(with: Data(result.out.utf8)) as! [String: Any]
        #expect((object["engine"] as! String).hasPrefix("mila "))
        let profile = ((object["profiles"] as! [[String: Any]])[0]["profile"]) as! [String: Any]
        let kernel = profile["kernel_ms"] as! Double, wall = profile["wall_ms"] as! Double
        let kinds = (profile["by_kind"] as! [[String: Any]]).map { $0["ms"] as! Double }.reduce(0, +)
        let stages = (profile["by_stage"] as! [[String: Any]]).map { $0["ms"] as! Double }.reduce(0, +)
        #expect(abs(kinds - kernel) < 1e-6 * kernel && abs(stages - kernel) < 1e-6 * kernel)
        #expect(kernel > 0 && kernel <= wall)
        #expect((profile["by_kind"] as! [[String: Any]]).contains { $0["kind"] as? String == "forget_gate_attention" })
    }

    @Test func badArgumentsAreNamed() throws {
        let result = try CLI.run(["bench", "--resolutions", "224,abc"])
        #expect(result.status != 0 && result.err.contains("'abc'"), "\(result.err)")
        let format = try CLI.run(["bench", "--format", "xml"])
        #expect(format.status != 0 && format.err.contains("--format"), "\(format.err)")
    }
}
