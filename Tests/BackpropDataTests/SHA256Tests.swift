import Foundation
import BackpropTestSupport
import Testing
@testable import BackpropData

@Suite("SHA-256")
struct SHA256Tests {
    private func hex(_ bytes: [UInt8]) -> String { SHA256.hexString(SHA256.hash(bytes)) }

    // Test vectors from NIST FIPS 180-4 examples (SHA256.pdf, SHA2_Additional.pdf).
    @Test("NIST vectors: empty, abc, 448-bit, one million a's")
    func nistVectors() {
        #expect(hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(hex([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000))
            == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test("feeding in uneven pieces gives the same digest as all at once")
    func pieces() {
        let message = (0 ..< 1000).map { UInt8(truncatingIfNeeded: $0 * 7 + 3) }
        for split in [0, 1, 55, 56, 63, 64, 65, 127, 500, 999, 1000] {
            var hasher = SHA256()
            hasher.update(message[..<split])
            hasher.update(message[split...])
            #expect(hasher.finalize() == SHA256.hash(message), "split at \(split)")
        }
        var byByte = SHA256()
        for byte in message.prefix(130) { byByte.update([byte]) }
        #expect(byByte.finalize() == SHA256.hash(Array(message.prefix(130))))
    }

    @Test("agrees with Python's hashlib and with the hard-coded MNIST hash on a real file",
          .enabled(if: hasPython, "needs python3"))
    func agreesWithHashlib() throws {
        let file = TestData.mnist.appendingPathComponent("t10k-images-idx3-ubyte.gz")
        let python = try shell("python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],\"rb\").read()).hexdigest())' '\(file.path)'")
        let ours = try sha256Hex(ofFileAt: file)
        #expect(ours == python.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(ours == Downloader.mnistFiles.first { $0.key == "t10k-images-idx3-ubyte.gz" }?.value)
    }
}
