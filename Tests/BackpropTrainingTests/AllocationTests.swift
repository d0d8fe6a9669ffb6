import BackpropTestSupport
import BackpropTraining
import Foundation
import Testing

/// Steady-state training allocates nothing: every buffer (activations, gradients, patch and
/// packing scratch, optimizer state) is sized on the first steps and reused. The probe runs
/// the real training loop of every preset in its own process (so other tests' allocations do
/// not count) and counts every heap allocation of any thread over 10 iterations, at batch 16
/// and at batch 128 (which nets without BatchNorm train in slices of 16).
///
/// Only in optimized builds (README's test command): the unoptimized training loop of a debug
/// build allocates (6–8 times per step, measured), which the optimizer removes.
@Suite struct AllocationTests {
    #if DEBUG
    static let optimized = false
    #else
    static let optimized = true
    #endif

    @Test(.enabled(if: optimized, "allocation-free steps are a property of optimized (-c release) builds"),
          arguments: [1, 2])
    func trainingStepsAllocateNothing(threads: Int) throws {
        let probe = try #require(allocationProbeExecutable, "backprop-allocation-probe was not built beside the tests")
        let result = try runProcess(probe, [String(threads)])
        #expect(result.status == 0, "\(result.summary)")
        let lines = result.stdout.split(separator: "\n")
        if lines == ["unsupported"] { return }  // not glibc: nothing to count with
        #expect(lines.count == 2 * Experiment.presetNames.count, "\(result.stdout)")
        for line in lines {
            let fields = line.split(separator: " ")
            #expect(fields.count == 4 && fields[2] == "10" && fields[3] == "0", "allocations in 10 training steps: \(line)")
        }
    }
}
