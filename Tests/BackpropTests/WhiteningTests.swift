import Foundation
import Testing
@testable import Backprop

@Suite("Whitening")
struct WhiteningTests {
    @Test("symmetricEigen: [[2, 1], [1, 2]] by hand — values 3 and 1, vectors (1, 1)/√2 and (1, −1)/√2")
    func twoByTwo() {
        let (values, vectors) = Whitening.symmetricEigen([2, 1, 1, 2], n: 2)
        #expect(abs(values[0] - 3) < 1e-12 && abs(values[1] - 1) < 1e-12)
        let r = 1 / 2.0.squareRoot()
        #expect(abs(abs(vectors[0]) - r) < 1e-12 && abs(vectors[0] - vectors[1]) < 1e-12)
        #expect(abs(abs(vectors[2]) - r) < 1e-12 && abs(vectors[2] + vectors[3]) < 1e-12)
    }

    @Test("symmetricEigen: a random 12x12 matrix is V^T diag(λ) V with orthonormal V, λ descending")
    func reconstruction() {
        var generator = SeededGenerator(seed: 3)
        let n = 12
        let b = Tensor<Double>.randomNormal(shape: [n, n], standardDeviation: 1, using: &generator).scalars
        var a = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { for k in 0..<n { a[i * n + j] += b[k * n + i] * b[k * n + j] } } }
        let (values, v) = Whitening.symmetricEigen(a, n: n)
        #expect(zip(values, values.dropFirst()).allSatisfy { $0 >= $1 })
        for i in 0..<n {
            for j in 0..<n {
                var dot = 0.0, rebuilt = 0.0
                for k in 0..<n {
                    dot += v[i * n + k] * v[j * n + k]
                    rebuilt += v[k * n + i] * values[k] * v[k * n + j]
                }
                #expect(abs(dot - (i == j ? 1 : 0)) < 1e-10)
                #expect(abs(rebuilt - a[i * n + j]) < 1e-9 * max(1, abs(a[i * n + j])))
            }
        }
    }

    /// The filters must make the patches' second moments the identity (up to ε's shrinkage):
    /// a transposed eigenvector matrix, a missing square root or the wrong patch order fails this.
    @Test("the filters whiten the inputs' 2x2 patches: output second moments ≈ identity")
    func whitens() throws {
        // Strongly correlated RGB images: smooth ramps plus shared noise, scaled like raw bytes.
        var generator = SeededGenerator(seed: 5)
        let (n, h, w) = (40, 9, 9)
        let noise = Tensor<Float>.randomNormal(shape: [n, 3, h, w], standardDeviation: 1, using: &generator).scalars
        var x = Tensor<Float>(shape: [n, 3, h, w])
        for i in 0..<n {
            for c in 0..<3 {
                for y in 0..<h {
                    for z in 0..<w {
                        let shared = noise[((i * 3) * h + y) * w + z]
                        x.scalars[((i * 3 + c) * h + y) * w + z] = 40 * (shared + 0.3 * noise[((i * 3 + c) * h + y) * w + z])
                            + Float(y + z + c)
                    }
                }
            }
        }
        let weight = Whitening.filters(for: x, kernelSize: 2, filters: 24, relativeEpsilon: 1e-9)
        #expect(weight.shape == [24, 3, 2, 2])
        // The negated half.
        for i in 0..<(12 * 12) { #expect(weight.scalars[12 * 12 + i] == -weight.scalars[i]) }
        let conv = Conv2D<Float>(inputChannels: 3, outputChannels: 12, kernelSize: 2, bias: false, using: &generator)
        for i in 0..<(12 * 12) { conv.weight.value.scalars[i] = weight.scalars[i] }
        let y = conv(x)
        let planes = (h - 1) * (w - 1)
        for a in 0..<12 {
            for b in a..<12 {
                var sum = 0.0
                for i in 0..<n { for p in 0..<planes { sum += Double(y.scalars[(i * 12 + a) * planes + p]) * Double(y.scalars[(i * 12 + b) * planes + p]) } }
                let moment = sum / Double(n * planes)
                #expect(abs(moment - (a == b ? 1 : 0)) < 2e-3, "moment \(a), \(b): \(moment)")
            }
        }
    }

    @Test("a spec's whitening conv: only first, with Cin·k² or 2·Cin·k² outputs; set by initializeFromData")
    func specRules() throws {
        func network(_ layers: String) throws -> Network<Float> {
            let object = try JSONSerialization.jsonObject(with: Data("{\"input\": [3, 8, 8], \"layers\": [\(layers)]}".utf8)) as! [String: Any]
            var generator = SeededGenerator(seed: 1)
            return try NetworkSpec(jsonObject: object).makeNetwork(Float.self, using: &generator)
        }
        let whiten = #"{"type": "conv2d", "out_channels": 24, "kernel_size": 2, "init": "whitening", "frozen": true, "bias": false}"#
        let net = try network(whiten + #", {"type": "gelu"}, {"type": "flatten"}, {"type": "dense", "out_features": 10}"#)
        #expect(net.awaitsData)
        var generator = SeededGenerator(seed: 9)
        let sample = Tensor<Float>.randomNormal(shape: [6, 3, 8, 8], standardDeviation: 1, using: &generator)
        net.initializeFromData(sample)
        #expect(!net.awaitsData)
        let expected = Whitening.filters(for: sample, kernelSize: 2, filters: 24)
        #expect(net.namedParameters.first { $0.name == "0.weight" }?.parameter.value.scalars == expected.scalars)

        // Loaded weights (`train --init`) are kept: a fresh net that loads them awaits no data,
        // so the trainer does not recompute its filters over them.
        let loaded = try network(whiten + #", {"type": "gelu"}, {"type": "flatten"}, {"type": "dense", "out_features": 10}"#)
        #expect(loaded.awaitsData)
        loaded.loadState(from: net)
        #expect(!loaded.awaitsData)
        #expect(loaded.namedParameters.first { $0.name == "0.weight" }?.parameter.value.scalars == expected.scalars)
        #expect(throws: ShapeError.self) {
            try network(#"{"type": "conv2d", "out_channels": 20, "kernel_size": 2, "init": "whitening"}"#)
        }
        #expect(throws: ShapeError.self) {
            try network(#"{"type": "conv2d", "out_channels": 3, "kernel_size": 1}, "# + whiten)
        }
    }
}
