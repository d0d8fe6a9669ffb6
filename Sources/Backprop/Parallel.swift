import Dispatch
import Foundation

/// How Backprop spreads work over cores.
///
/// Work is cut into a fixed number of items that does not depend on the thread count (e.g.
/// groups of images), every item writes only its own outputs, and anything summed across items
/// is summed afterwards in item order. So results are bit-identical for any `threadCount`.
public enum Parallel {
    /// Threads used by the kernels; set once at startup (the CLI's `--threads`). Defaults to the
    /// machine's active cores.
    nonisolated(unsafe) public static var threadCount = ProcessInfo.processInfo.activeProcessorCount

    /// Calls `body(item)` for every item in `0..<count`, spread over `threadCount` threads
    /// (item `i` goes to thread `i % threadCount`).
    public static func forEach(_ count: Int, _ body: (Int) -> Void) {
        let threads = min(max(threadCount, 1), count)
        if threads <= 1 {
            for item in 0..<count { body(item) }
            return
        }
        withoutActuallyEscaping(body) { body in
            // The items write disjoint memory (the contract above), which the compiler cannot see.
            let work = UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: threads) { thread in
                for item in stride(from: thread, to: count, by: threads) { work.value(item) }
            }
        }
    }
}

/// Carries a value into a concurrent closure whose safety is argued by hand.
private struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// A growable scratch allocation, reused from call to call so that steady-state training
/// allocates nothing.
final class Scratch<Scalar: NetworkScalar> {
    private(set) var pointer = UnsafeMutablePointer<Scalar>.allocate(capacity: 1)
    private var capacity = 1

    /// At least `count` elements (contents unspecified).
    func reserve(_ count: Int) -> UnsafeMutablePointer<Scalar> {
        if count > capacity {
            pointer.deallocate()
            capacity = count
            pointer = .allocate(capacity: count)
        }
        return pointer
    }

    deinit { pointer.deallocate() }
}
