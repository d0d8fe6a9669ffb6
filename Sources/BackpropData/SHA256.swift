import Foundation

/// The SHA-256 hash (FIPS 180-4), fed in pieces, used to check downloaded files.
///
/// ```swift
/// var hasher = SHA256()
/// hasher.update(firstChunk)
/// hasher.update(secondChunk)
/// let hex = SHA256.hexString(hasher.finalize())
/// ```
public struct SHA256: Sendable {
    /// The eight working words H0...H7, starting at the standard initial values.
    private var state: [UInt32] = [
        0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19,
    ]
    /// Bytes given but not yet hashed: fewer than one 64-byte block.
    private var pending: [UInt8] = []
    /// The number of bytes given so far.
    private var byteCount: UInt64 = 0

    /// Creates a hasher that has seen no bytes yet.
    public init() {}

    /// Adds `bytes` to the message.
    public mutating func update(_ bytes: some ContiguousBytes) {
        bytes.withUnsafeBytes { update(buffer: $0) }
    }

    /// The 32-byte digest of all bytes given so far. The hasher itself is left as it was.
    public func finalize() -> [UInt8] {
        var copy = self
        // Padding: a 1 bit, zeros up to 56 bytes mod 64, then the message length in bits (big-endian UInt64).
        let zeroCount = (55 - Int(byteCount % 64) + 64) % 64
        let bitLength = byteCount &* 8
        copy.update([0x80] + [UInt8](repeating: 0, count: zeroCount) + (0 ..< 8).map { UInt8(truncatingIfNeeded: bitLength >> (56 - 8 * $0)) })
        precondition(copy.pending.isEmpty)
        return copy.state.flatMap { word in (0 ..< 4).map { UInt8(truncatingIfNeeded: word >> (24 - 8 * $0)) } }
    }

    /// The digest of `bytes`.
    public static func hash(_ bytes: some ContiguousBytes) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(bytes)
        return hasher.finalize()
    }

    /// `digest` as lowercase hexadecimal, the form `sha256sum` prints.
    public static func hexString(_ digest: [UInt8]) -> String {
        digest.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    private mutating func update(buffer: UnsafeRawBufferPointer) {
        byteCount += UInt64(buffer.count)
        var rest = buffer
        if !pending.isEmpty {
            let taken = min(64 - pending.count, rest.count)
            pending += rest.prefix(taken)
            rest = UnsafeRawBufferPointer(rebasing: rest.dropFirst(taken))
            guard pending.count == 64 else { return }
            pending.withUnsafeBytes { Self.compress(&state, blocks: $0) }
            pending.removeAll(keepingCapacity: true)
        }
        let wholeBlocks = rest.count / 64 * 64
        if wholeBlocks > 0 { Self.compress(&state, blocks: UnsafeRawBufferPointer(rebasing: rest.prefix(wholeBlocks))) }
        pending += rest.dropFirst(wholeBlocks)
    }

    /// Runs the compression function over each 64-byte block of `blocks`.
    private static func compress(_ state: inout [UInt32], blocks: UnsafeRawBufferPointer) {
        state.withUnsafeMutableBufferPointer { state in
            roundConstants.withUnsafeBufferPointer { constants in
                withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { schedule in
                    compress(state.baseAddress!, constants.baseAddress!, schedule.baseAddress!, blocks)
                }
            }
        }
    }

    /// The compression function on raw pointers: `h` the 8 state words, `k` the 64 round constants,
    /// `w` room for the 64-word message schedule. Optimized even in debug builds, where it would
    /// otherwise hash only a few MB/s.
    @_optimize(speed)
    private static func compress(_ h: UnsafeMutablePointer<UInt32>, _ k: UnsafePointer<UInt32>,
                                 _ w: UnsafeMutablePointer<UInt32>, _ blocks: UnsafeRawBufferPointer) {
        for blockStart in stride(from: 0, to: blocks.count, by: 64) {
            // Message schedule: the block's 16 big-endian words, then 48 mixed from earlier ones.
            for t in 0 ..< 16 {
                w[t] = UInt32(bigEndian: blocks.loadUnaligned(fromByteOffset: blockStart + 4 * t, as: UInt32.self))
            }
            for t in 16 ..< 64 {
                let s0 = rotateRight(w[t - 15], 7) ^ rotateRight(w[t - 15], 18) ^ (w[t - 15] >> 3)
                let s1 = rotateRight(w[t - 2], 17) ^ rotateRight(w[t - 2], 19) ^ (w[t - 2] >> 10)
                w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
            }
            var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
            for t in 0 ..< 64 {
                let sum1 = rotateRight(e, 6) ^ rotateRight(e, 11) ^ rotateRight(e, 25)
                let choice = (e & f) ^ (~e & g)
                let temp1 = hh &+ sum1 &+ choice &+ k[t] &+ w[t]
                let sum0 = rotateRight(a, 2) ^ rotateRight(a, 13) ^ rotateRight(a, 22)
                let majority = (a & b) ^ (a & c) ^ (b & c)
                (hh, g, f, e, d, c, b, a) = (g, f, e, d &+ temp1, c, b, a, temp1 &+ sum0 &+ majority)
            }
            h[0] &+= a; h[1] &+= b; h[2] &+= c; h[3] &+= d
            h[4] &+= e; h[5] &+= f; h[6] &+= g; h[7] &+= hh
        }
    }

    @_transparent
    private static func rotateRight(_ x: UInt32, _ n: UInt32) -> UInt32 { x >> n | x << (32 - n) }

    /// The 64 round constants: the first 32 bits of the fractional parts of the cube roots of the first 64 primes.
    private static let roundConstants: [UInt32] = [
        0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
        0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
        0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
        0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
        0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
        0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
        0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
        0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
    ]
}
