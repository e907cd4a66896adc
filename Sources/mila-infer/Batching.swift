import ArgumentParser
import Foundation
import MilaCore
import MilaEngine
import MilaOpenCL

/// --batch: images per device batch; the default by device type.
struct BatchOptions: ParsableArguments {
    @Option(name: .long, help: "Images per device batch (default: \(BatchOptions.gpuDefault) on GPUs, \(BatchOptions.cpuDefault) on CPUs and the reference backend).")
    var batch: Int?

    static let gpuDefault = 16
    static let cpuDefault = 4

    func validate() throws {
        if let batch { guard (1...1024).contains(batch) else { throw ValidationError("--batch must be 1 to 1024") } }
    }

    func size(for engine: Engine) -> Int {
        if let batch { return batch }
        return (engine.backend as? CLBackend)?.context.device.isGPU == true ? Self.gpuDefault : Self.cpuDefault
    }
}

/// Items 0..<count made into network inputs by `prepare` on a second thread, a few batches
/// ahead of the consumer (decoding overlaps device work), and handed out in input order as
/// batches of up to `batchSize` items of one `key` (the input shape, and for label maps the
/// output size): an item of another key starts a new batch. Items whose `prepare` throws come
/// back as failures, in order with the rest.
struct PrefetchingBatches<Item>: Sequence {
    struct Batch {
        var items: [(index: Int, tensor: Item)] = []
        var failures: [(index: Int, error: Error)] = []
    }

    let count: Int
    let batchSize: Int
    let key: (Item) -> [Int]
    let prepare: @Sendable (Int) throws -> Item

    init(count: Int, batchSize: Int, key: @escaping (Item) -> [Int], prepare: @escaping @Sendable (Int) throws -> Item) {
        (self.count, self.batchSize, self.key, self.prepare) = (count, batchSize, key, prepare)
    }

    func makeIterator() -> Iterator { Iterator(self) }

    final class Iterator: IteratorProtocol {
        private let source: PrefetchingBatches
        private let condition = NSCondition()
        private var ready: [Int: Result<Item, Error>] = [:]
        private var position = 0

        init(_ source: PrefetchingBatches) {
            self.source = source
            // The decode thread runs through the whole list, at most two batches ahead of the
            // consumer (the commands consume it all, or exit).
            let capacity = 2 * source.batchSize
            let thread = Thread { [self] in
                for i in 0..<source.count {
                    condition.lock()
                    while ready.count >= capacity { condition.wait() }
                    condition.unlock()
                    let result = Result { try source.prepare(i) }
                    condition.lock()
                    ready[i] = result
                    condition.broadcast()
                    condition.unlock()
                }
            }
            thread.name = "mila-decode"
            thread.start()
        }

        private func take(_ i: Int) -> Result<Item, Error> {
            condition.lock()
            while ready[i] == nil { condition.wait() }
            let result = ready.removeValue(forKey: i)!
            condition.broadcast()
            condition.unlock()
            return result
        }

        private func peekShape(_ i: Int) -> [Int]? {
            condition.lock()
            while ready[i] == nil { condition.wait() }
            defer { condition.unlock() }
            if case let .success(t) = ready[i]! { return source.key(t) }
            return nil
        }

        func next() -> Batch? {
            guard position < source.count else { return nil }
            var batch = Batch()
            while position < source.count && batch.items.count < source.batchSize {
                if let shape = batch.items.first.map({ source.key($0.tensor) }), let upcoming = peekShape(position), upcoming != shape { break }
                switch take(position) {
                case let .success(tensor): batch.items.append((position, tensor))
                case let .failure(error): batch.failures.append((position, error))
                }
                position += 1
            }
            return batch
        }
    }
}

/// A one-line progress bar on stderr (only when stderr is a terminal, else silent).
final class ProgressBar {
    let total: Int
    let enabled = isatty(2) != 0
    init(total: Int) { self.total = total }

    func update(_ done: Int, suffix: String) {
        guard enabled else { return }
        let width = 30, filled = width * done / max(total, 1)
        let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
        FileHandle.standardError.write(Data("\r[\(bar)] \(done)/\(total) \(suffix)".utf8))
    }

    func clear() { if enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) } }
    func finish() { if enabled { FileHandle.standardError.write(Data("\n".utf8)) } }
}

extension PrefetchingBatches where Item == Tensor {
    /// Batches of network inputs, keyed by their shape.
    init(count: Int, batchSize: Int, prepare: @escaping @Sendable (Int) throws -> Tensor) {
        self.init(count: count, batchSize: batchSize, key: { $0.shape }, prepare: prepare)
    }
}
