import Backprop
import BackpropData
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The order in which training batches walk through the training split.
///
/// Batch `t` (from 1) holds the examples at positions `(t − 1)·B ..< t·B` of an endless stream
/// that passes over the split's n examples again and again: position `p` is slot `p mod n` of
/// epoch `⌊p / n⌋`. The order says which example each slot of an epoch holds.
public enum BatchOrder: String, Codable, Sendable, CaseIterable {
    /// The course's: every epoch walks the split in its given order (`PreparedData`'s one
    /// shuffle), so batches are consecutive and wrap around.
    case fixed
    /// `reshuffleEachEpoch` as the trainer has always done it: epoch 0 walks the given order;
    /// epoch `e ≥ 1` walks the `e`-th permutation drawn, one after another, from one
    /// `SeededGenerator(seed: seed ^ "EPOCHS!!")`. Reaching epoch e from scratch replays e
    /// permutations.
    case reshuffledInSequence = "reshuffled_in_sequence"
    /// Every epoch `e`, 0 included, walks a permutation drawn from a generator seeded by a hash of
    /// `(seed, e)`: any epoch's order costs one permutation.
    case reshuffledByEpoch = "reshuffled_by_epoch"

    /// The order `TrainingOptions` ask for: `.reshuffledInSequence` when `reshuffleEachEpoch`,
    /// else `.fixed`.
    public init(_ options: TrainingOptions) {
        self = options.reshuffleEachEpoch ? .reshuffledInSequence : .fixed
    }
}

/// Training batches built on demand from the training images' bytes: preprocessed and augmented
/// per batch, optionally prepared one batch ahead on a background thread.
///
/// Batch `t` is a pure function of the source's settings and `t`: which examples it holds
/// (`BatchOrder`), their preprocessing, and their augmentation (hashed from seed, epoch and
/// example) never depend on earlier batches having been made, on prefetching, or on threads.
/// So `batch(at: t)` equals the `t`-th batch of `next(into:labels:)`, and a resumed run can
/// `seek(to:)` its next iteration.
///
/// ```
/// let source = BatchSource(images: dataset.train, indices: trainIndices, preprocessing: p,
///                          batchSize: 16, order: .fixed, seed: 42)
/// source.startPrefetching()
/// var inputs = Tensor<Float>(shape: [0]), labels: [Int] = []
/// for _ in 1...iterations { source.next(into: &inputs, labels: &labels); … }
/// ```
///
/// While prefetching, `next` hands batches over by swapping buffers: the caller's tensor and
/// label array become the source's next buffer to fill (without prefetching, they are filled in
/// place). In steady state the two buffers go back and forth and nothing is allocated, on either
/// thread, as long as the caller keeps no other reference to them (one would be copied on write).
/// The prefetch thread is joined by `stopPrefetching()` and by `deinit`.
///
/// `next`, `seek` and the prefetch switches are for one thread at a time; `batch(at:)` and
/// `imageIndices(at:)` may be called from any thread at any time.
public final class BatchSource {
    /// B, the examples per batch.
    public var batchSize: Int { plan.batchSize }
    /// n, the examples in the training split (one epoch).
    public var exampleCount: Int { plan.indices.count }
    /// How batches walk the split.
    public var order: BatchOrder { plan.order }
    /// What is done to each example after preprocessing.
    public var augmentation: Augmentation { plan.augmentation }
    /// The iteration (from 1) that the next call of `next(into:labels:)` returns.
    public private(set) var nextIteration = 1
    /// Whether a background thread prepares the next batch ahead.
    public var isPrefetching: Bool { prefetcher != nil }

    private let plan: BatchPlan
    /// The order state of `next` without prefetching.
    private var cursor: OrderCursor
    private var prefetcher: Prefetcher?

    /// Creates a batch source; it starts without prefetching.
    ///
    /// - Parameters:
    ///   - images: the training images as bytes (N x C x H x W, NCHW), e.g. `Dataset.train`; shared, not copied.
    ///   - indices: the training split: n indexes into `images`, in the order `.fixed` walks.
    ///   - preprocessing: `x = byte · scale − mean[c]`, applied per batch.
    ///   - batchSize: B.
    ///   - order: how batches walk the split.
    ///   - augmentation: applied per example after preprocessing; validate it against the image
    ///     size first (`Augmentation.validate(height:width:)`).
    ///   - seed: the run's seed (`TrainingOptions.seed`); the shuffles and the augmentation derive
    ///     their own streams from it.
    /// - Precondition: `indices` is non-empty and within `0..<images.count`; `batchSize > 0`;
    ///   the augmentation fits the images.
    public init(images: LabeledImages, indices: [Int], preprocessing: Preprocessing, batchSize: Int,
                order: BatchOrder, augmentation: Augmentation = Augmentation(), seed: UInt64) {
        precondition(!indices.isEmpty, "BatchSource: an empty training split")
        precondition(indices.allSatisfy { $0 >= 0 && $0 < images.count }, "BatchSource: an index outside 0..<\(images.count)")
        precondition(batchSize > 0, "BatchSource: batch size \(batchSize)")
        do { try augmentation.validate(height: images.height, width: images.width) } catch {
            preconditionFailure("BatchSource: \(error)")
        }
        plan = BatchPlan(images: images, indices: indices, preprocessing: preprocessing, batchSize: batchSize,
                         order: order, augmentation: augmentation, seed: seed)
        cursor = OrderCursor(plan)
    }

    /// A batch source with the batch size, order and seed of `options`.
    public convenience init(images: LabeledImages, indices: [Int], preprocessing: Preprocessing,
                            options: TrainingOptions, augmentation: Augmentation = Augmentation()) {
        self.init(images: images, indices: indices, preprocessing: preprocessing, batchSize: options.batchSize,
                  order: BatchOrder(options), augmentation: augmentation, seed: options.seed)
    }

    deinit { prefetcher?.stop() }

    /// Puts batch `nextIteration` into `inputs` and `labels`, then advances `nextIteration`.
    ///
    /// While prefetching the buffers are swapped, not copied: what `inputs` and `labels` held
    /// becomes the source's buffer for a later batch. An empty tensor is fine; it is sized once.
    /// - Parameters:
    ///   - inputs: receives `[B, C, H, W]`, NCHW, preprocessed and augmented.
    ///   - labels: receives B class labels.
    public func next(into inputs: inout Tensor<Float>, labels: inout [Int]) {
        if let prefetcher {
            prefetcher.take(nextIteration, inputs: &inputs, labels: &labels)
        } else {
            plan.fill(nextIteration, inputs: &inputs, labels: &labels, cursor: &cursor)
        }
        nextIteration += 1
    }

    /// Makes `iteration` the next batch `next` returns (e.g. to resume a run); a batch prepared
    /// ahead for another iteration is dropped.
    public func seek(to iteration: Int) {
        precondition(iteration >= 1, "BatchSource: iteration \(iteration) (iterations count from 1)")
        nextIteration = iteration
        prefetcher?.request(iteration)
    }

    /// Batch `iteration` (from 1), computed afresh: the same values `next` gives for it.
    /// Allocates; for resuming, checks and reports.
    ///
    /// - Returns: inputs `[B, C, H, W]` (NCHW) and B labels.
    public func batch(at iteration: Int) -> (inputs: Tensor<Float>, labels: [Int]) {
        var inputs = Tensor<Float>(shape: [0]), labels: [Int] = []
        var cursor = OrderCursor(plan)
        plan.fill(iteration, inputs: &inputs, labels: &labels, cursor: &cursor)
        return (inputs, labels)
    }

    /// The B indexes into `images` of batch `iteration`'s examples, in order.
    public func imageIndices(at iteration: Int) -> [Int] {
        var cursor = OrderCursor(plan)
        return (0..<plan.batchSize).map { row in
            let (epoch, slot) = plan.locate(iteration, row: row)
            return plan.image(epoch: epoch, slot: slot, cursor: &cursor)
        }
    }

    /// Starts preparing each next batch on a background thread while the caller trains on the
    /// current one (no effect when already started). Batches are the same either way.
    public func startPrefetching() {
        guard prefetcher == nil else { return }
        prefetcher = Prefetcher(plan, first: nextIteration)
    }

    /// Stops the background thread and waits for it to end (after the batch it is preparing).
    public func stopPrefetching() {
        prefetcher?.stop()
        prefetcher = nil
    }
}

// MARK: - Building batches

/// A batch source's settings and the pure function from iteration to batch.
struct BatchPlan: Sendable {
    let images: LabeledImages
    let indices: [Int]
    let batchSize: Int
    let order: BatchOrder
    let augmentation: Augmentation
    let seed: UInt64
    let renderer: ExampleRenderer

    init(images: LabeledImages, indices: [Int], preprocessing: Preprocessing, batchSize: Int,
         order: BatchOrder, augmentation: Augmentation, seed: UInt64) {
        self.images = images
        self.indices = indices
        self.batchSize = batchSize
        self.order = order
        self.augmentation = augmentation
        self.seed = seed
        renderer = ExampleRenderer(
            channels: images.channels, height: images.height, width: images.width, scale: preprocessing.scale,
            means: ExampleRenderer.channelMeans(preprocessing, channels: images.channels),
            fill: augmentation.shift?.fill ?? .zero)
    }

    /// The shuffler of `.reshuffledInSequence` (the trainer's historical seed).
    var sequenceSeed: UInt64 { seed ^ 0x4550_4F43_4853_2121 }  // "EPOCHS!!"

    /// The seed of epoch `epoch`'s permutation under `.reshuffledByEpoch`.
    func epochSeed(_ epoch: Int) -> UInt64 {
        // One SplitMix64 step of (sequence seed, epoch): distinct epochs give unrelated generators.
        var z = (sequenceSeed ^ (UInt64(bitPattern: Int64(epoch)) &* 0xD1B5_4A32_D192_ED03)) &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Epoch and slot of row `row` of batch `iteration`: position `(iteration − 1)·B + row`.
    @inline(__always)
    func locate(_ iteration: Int, row: Int) -> (epoch: Int, slot: Int) {
        let position = (iteration - 1) * batchSize + row
        return (position / indices.count, position % indices.count)
    }

    /// The index into `images` of the example in `slot` of `epoch`.
    @inline(__always)
    func image(epoch: Int, slot: Int, cursor: inout OrderCursor) -> Int {
        if order == .fixed { return indices[slot] }
        cursor.move(to: epoch, self)
        return indices[cursor.slots[slot]]
    }

    /// Writes batch `iteration` into `inputs` (`[B, C, H, W]`) and `labels` (B), reusing their
    /// storage when it is already that size.
    func fill(_ iteration: Int, inputs: inout Tensor<Float>, labels: inout [Int], cursor: inout OrderCursor) {
        precondition(iteration >= 1, "BatchSource: iteration \(iteration) (iterations count from 1)")
        let (b, c, h, w) = (batchSize, images.channels, images.height, images.width)
        let exampleSize = c * h * w
        inputs.resize(b, c, h, w)
        if labels.count != b { labels = [Int](repeating: 0, count: b) }
        let augmented = !augmentation.isIdentity
        images.pixels.withUnsafeBufferPointer { pixels in
            inputs.scalars.withUnsafeMutableBufferPointer { out in
                labels.withUnsafeMutableBufferPointer { labelsOut in
                    for row in 0..<b {
                        let (epoch, slot) = locate(iteration, row: row)
                        let index = image(epoch: epoch, slot: slot, cursor: &cursor)
                        labelsOut[row] = Int(images.labels[index])
                        let draw = augmented ? augmentation.draw(seed: seed, epoch: epoch, example: index) : Augmentation.Draw()
                        renderer.render(pixels.baseAddress! + index * exampleSize,
                                        into: out.baseAddress! + row * exampleSize, draw: draw)
                    }
                }
            }
        }
    }
}

/// The permutation of the epoch last visited, kept so consecutive batches of an epoch reuse it
/// (moving to another epoch allocates nothing).
struct OrderCursor {
    /// The epoch `slots` belongs to; −1 before the first.
    private(set) var epoch = -1
    /// Slot → position in the split's `indices`, a permutation of `0..<n`.
    private(set) var slots: [Int]
    /// `.reshuffledInSequence`: the shuffler, having drawn `epoch` permutations.
    private var generator: SeededGenerator

    init(_ plan: BatchPlan) {
        slots = plan.order == .fixed ? [] : Array(0..<plan.indices.count)
        generator = SeededGenerator(seed: plan.sequenceSeed)
    }

    /// Makes `slots` hold epoch `target`'s order.
    mutating func move(to target: Int, _ plan: BatchPlan) {
        guard target != epoch else { return }
        switch plan.order {
        case .fixed:
            epoch = target
        case .reshuffledInSequence:
            if target < epoch || epoch < 0 {
                generator = SeededGenerator(seed: plan.sequenceSeed)
                resetSlots()
                epoch = 0
            }
            while epoch < target {
                shuffleSlots()
                epoch += 1
            }
        case .reshuffledByEpoch:
            generator = SeededGenerator(seed: plan.epochSeed(target))
            shuffleSlots()
            epoch = target
        }
    }

    private mutating func resetSlots() {
        slots.withUnsafeMutableBufferPointer { s in for i in s.indices { s[i] = i } }
    }

    /// `slots = generator.permutation(n)`, in place: the identity shuffled by Fisher–Yates with
    /// exactly `SeededGenerator.permutation`'s draws.
    private mutating func shuffleSlots() {
        resetSlots()
        guard slots.count > 1 else { return }
        for i in stride(from: slots.count - 1, to: 0, by: -1) {
            slots.swapAt(i, generator.nextInt(below: i + 1))
        }
    }
}

// MARK: - Prefetching

/// One background thread that fills the batch after the one being trained on.
///
/// Shared state, guarded by `mutex`: `queued` (the iteration to prepare next, 0 for none),
/// `filling` (the iteration being prepared, 0 for none; while it is nonzero the thread owns
/// `inputs`/`labels`), `ready` (the iteration `inputs`/`labels` hold, 0 for none) and `stopping`.
/// The caller and the thread wait on `condition` for each other.
private final class Prefetcher: @unchecked Sendable {
    private let plan: BatchPlan
    private var cursor: OrderCursor
    /// The batch being prepared or ready: `[B, C, H, W]` and B labels.
    private var inputs: Tensor<Float>
    private var labels: [Int]
    private var queued: Int, filling = 0, ready = 0
    private var stopping = false, stopped = false
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    #if canImport(Glibc)
    private var thread = pthread_t()
    #else
    private var thread: pthread_t?
    #endif

    init(_ plan: BatchPlan, first: Int) {
        self.plan = plan
        cursor = OrderCursor(plan)
        queued = first
        inputs = Tensor(shape: [plan.batchSize, plan.images.channels, plan.images.height, plan.images.width])
        labels = [Int](repeating: 0, count: plan.batchSize)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        // The thread holds a reference until it returns; `stop` joins it.
        let context = Unmanaged.passRetained(self).toOpaque()
        let status = pthread_create(&thread, nil, { context in
            #if canImport(Glibc)
            let prefetcher = Unmanaged<Prefetcher>.fromOpaque(context!).takeRetainedValue()
            #else
            let prefetcher = Unmanaged<Prefetcher>.fromOpaque(context).takeRetainedValue()
            #endif
            Thread.current.name = "backprop-batch"  // how it shows in a debugger and /proc/self/task
            prefetcher.serve()
            return nil
        }, context)
        precondition(status == 0, "BatchSource: could not start the prefetch thread (error \(status))")
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// The thread's life: prepare each queued batch until asked to stop.
    private func serve() {
        pthread_mutex_lock(mutex)
        while true {
            while !stopping && queued == 0 { pthread_cond_wait(condition, mutex) }
            if stopping { break }
            let iteration = queued
            filling = iteration
            queued = 0
            pthread_mutex_unlock(mutex)
            plan.fill(iteration, inputs: &inputs, labels: &labels, cursor: &cursor)
            pthread_mutex_lock(mutex)
            ready = iteration
            filling = 0
            pthread_cond_broadcast(condition)
        }
        pthread_mutex_unlock(mutex)
    }

    /// Asks for `iteration` next, dropping a batch prepared for another one.
    func request(_ iteration: Int) {
        pthread_mutex_lock(mutex)
        if filling == 0 && ready != iteration {
            ready = 0
            queued = iteration
            pthread_cond_broadcast(condition)
        }
        pthread_mutex_unlock(mutex)
    }

    /// Waits for batch `iteration`, swaps it into the caller's buffers, and queues the next one.
    func take(_ iteration: Int, inputs callerInputs: inout Tensor<Float>, labels callerLabels: inout [Int]) {
        pthread_mutex_lock(mutex)
        while ready != iteration {
            // Nothing in flight will become this batch (after a seek): ask for it.
            if filling == 0 && queued != iteration {
                ready = 0
                queued = iteration
                pthread_cond_broadcast(condition)
            }
            pthread_cond_wait(condition, mutex)
        }
        swap(&callerInputs, &inputs)
        swap(&callerLabels, &labels)
        ready = 0
        queued = iteration + 1
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }

    /// Ends the thread and waits for it (idempotent).
    func stop() {
        pthread_mutex_lock(mutex)
        let alreadyStopped = stopped
        stopping = true
        stopped = true
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
        guard !alreadyStopped else { return }
        #if canImport(Glibc)
        pthread_join(thread, nil)
        #else
        pthread_join(thread!, nil)
        #endif
    }
}
