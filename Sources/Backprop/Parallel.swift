import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How Backprop spreads work over cores.
///
/// Work is cut into a fixed number of items that does not depend on the thread count (e.g.
/// groups of images), every item writes only its own outputs, and anything summed across items
/// is summed afterwards in item order. So results are bit-identical for any `threadCount`.
///
/// The threads are a `WorkerPool` that lives for the process: a parallel call hands its body
/// to waiting workers without allocating or waking the scheduler, so the many short parallel
/// sections of a training step cost microseconds, and steady-state training allocates nothing.
public enum Parallel {
    /// Threads used by the kernels; set once at startup (the CLI's `--threads`). Defaults to the
    /// machine's active cores.
    nonisolated(unsafe) public static var threadCount = ProcessInfo.processInfo.activeProcessorCount

    /// Calls `work(item)` for every item in `0..<count`, spread over `threadCount` threads (the
    /// calling thread among them): each thread takes the next item not yet taken, so a thread
    /// that falls behind — a core the host lends elsewhere for a while — takes fewer. Which
    /// thread runs an item never changes what it computes.
    ///
    /// The worker threads call `work` through a pointer to the caller's value, so nothing is
    /// allocated: this is the form the training step's kernels use. A call made while the pool
    /// is busy — from inside another parallel body, or from a second thread at the same time —
    /// runs its items on the calling thread (same results).
    public static func forEach<Work: ParallelWork>(_ count: Int, _ work: Work) {
        let threads = min(max(threadCount, 1), count)
        if threads > 1, WorkerPool.shared.run(threads: threads, count: count, work) { return }
        for item in 0..<count { work(item) }
    }

    /// `forEach` with a closure. Handing a closure to other threads boxes it on the heap (one
    /// small allocation per call); hot loops use a `ParallelWork` value instead.
    public static func forEach(_ count: Int, _ body: (Int) -> Void) {
        let threads = min(max(threadCount, 1), count)
        if threads > 1 {
            let ran = withoutActuallyEscaping(body) { body in
                WorkerPool.shared.run(threads: threads, count: count, ClosureWork(body: body))
            }
            if ran { return }
        }
        for item in 0..<count { body(item) }
    }
}

/// The body of a parallel loop as a value: its stored properties are what a closure would
/// capture, `callAsFunction(item)` is one item's work. Items must write disjoint memory.
public protocol ParallelWork {
    func callAsFunction(_ item: Int)
}

private struct ClosureWork: ParallelWork {
    let body: (Int) -> Void
    func callAsFunction(_ item: Int) { body(item) }
}

/// Worker threads that wait for parallel sections: `threads − 1` of them join the calling
/// thread in `run`. Idle workers spin on a generation counter for a while (parallel sections of
/// a training step come every few hundred microseconds) and then sleep on a condition variable.
final class WorkerPool: @unchecked Sendable {
    static let shared = WorkerPool()

    /// Bumped to publish a section; workers run each generation once.
    private let generation = Atomic<Int>(0)
    /// Workers that have not finished the current section.
    private let pending = Atomic<Int>(0)
    /// The next item of the current section that no thread has taken.
    private let next = Atomic<Int>(0)
    /// Whether a caller owns the pool (one section at a time).
    private let owned = Atomic<Bool>(false)
    /// Sleeping workers wait here; guarded by `mutex`.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    // The current section, written by the owner before it bumps `generation` (release) and
    // read by workers after they see the bump (acquire): the caller's work value, by address,
    // and its type (an existential metatype is two words, no box).
    private var work: UnsafeRawPointer?
    private var workType: any ParallelWork.Type = ClosureWork.self
    private var threads = 0, count = 0
    /// How long idle threads spin before they yield or sleep: none when there are more threads
    /// than cores, where a spinning thread would take a core from one with work.
    private let spinLimit = Atomic<Int>(0)
    private let cores = ProcessInfo.processInfo.activeProcessorCount
    /// Started workers (thread indexes 1...workers); grows when more threads are asked for.
    private var workers = 0

    private init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    /// Runs `work` for items `0..<count` on `threads` threads, the caller as thread 0; returns
    /// false without running anything if another section holds the pool.
    func run<Work: ParallelWork>(threads: Int, count: Int, _ work: Work) -> Bool {
        guard owned.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        defer { owned.store(false, ordering: .releasing) }
        while workers < threads - 1 { startWorker() }
        withUnsafePointer(to: work) { pointer in
            self.work = UnsafeRawPointer(pointer)
            self.workType = Work.self
            self.threads = threads
            self.count = count
            spinLimit.store(threads <= cores ? 200_000 : 0, ordering: .relaxed)
            pending.store(workers, ordering: .relaxed)
            next.store(0, ordering: .relaxed)
            generation.add(1, ordering: .releasing)
            pthread_mutex_lock(mutex)
            pthread_cond_broadcast(condition)
            pthread_mutex_unlock(mutex)
            while true {
                let item = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard item < count else { break }
                pointer.pointee(item)
            }
            var spins = 0
            while pending.load(ordering: .acquiring) != 0 {
                spins += 1
                if spins > spinLimit.load(ordering: .relaxed) / 20 { sched_yield() }
            }
            self.work = nil
        }
        return true
    }

    private func startWorker() {
        workers += 1
        let (index, seen) = (workers, generation.load(ordering: .acquiring))
        let thread = Thread { [unowned self] in self.serve(index: index, seen: seen) }
        thread.name = "backprop-worker-\(index)"
        thread.start()
    }

    /// A worker's life: wait for the next generation, run this thread's items, report done.
    private func serve(index: Int, seen start: Int) {
        var seen = start
        while true {
            var spins = 0
            let limit = spinLimit.load(ordering: .relaxed)
            while generation.load(ordering: .acquiring) == seen {
                spins += 1
                if spins < limit { continue }
                pthread_mutex_lock(mutex)
                while generation.load(ordering: .acquiring) == seen { pthread_cond_wait(condition, mutex) }
                pthread_mutex_unlock(mutex)
            }
            seen = generation.load(ordering: .acquiring)
            if index < threads { runItems(workType) }
            pending.subtract(1, ordering: .releasing)
        }
    }

    /// Items of the current section until none is left (`Work` opened from `workType`).
    private func runItems<Work: ParallelWork>(_: Work.Type) {
        let work = self.work.unsafelyUnwrapped.assumingMemoryBound(to: Work.self)
        while true {
            let item = next.wrappingAdd(1, ordering: .relaxed).oldValue
            guard item < count else { return }
            work.pointee(item)
        }
    }
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

/// One growable `Float` buffer per thread, for kernels that run on whatever thread calls them
/// (GEMM's packed panels): sized by the first calls, then reused, so steady-state training
/// allocates nothing. Freed when its thread exits.
enum ThreadWorkspace {
    private final class Buffer {
        var pointer = UnsafeMutablePointer<Float>.allocate(capacity: 1)
        var capacity = 1
        deinit { pointer.deallocate() }
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        #if os(Linux)
        pthread_key_create(&key) { raw in
            if let raw { Unmanaged<AnyObject>.fromOpaque(raw).release() }
        }
        #else
        pthread_key_create(&key) { raw in Unmanaged<AnyObject>.fromOpaque(raw).release() }
        #endif
        return key
    }()

    /// At least `count` floats owned by the calling thread (contents unspecified), valid until
    /// this thread's next call.
    static func floats(_ count: Int) -> UnsafeMutablePointer<Float> {
        let buffer: Buffer
        if let raw = pthread_getspecific(key) {
            buffer = Unmanaged<Buffer>.fromOpaque(raw).takeUnretainedValue()
        } else {
            buffer = Buffer()
            pthread_setspecific(key, Unmanaged.passRetained(buffer).toOpaque())
        }
        if count > buffer.capacity {
            buffer.pointer.deallocate()
            buffer.pointer = .allocate(capacity: count)
            buffer.capacity = count
        }
        return buffer.pointer
    }
}
