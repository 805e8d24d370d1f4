import Foundation
import Reprise
import XCTest

/// Seeded mutations of a valid file, for fuzz tests of readers: each case is the original with
/// one change that a damaged or hostile file could have.
public struct Mutations: Sequence, IteratorProtocol {
  let original: [UInt8]
  var random: RandomGenerator
  var remaining: Int
  /// A description of the latest case, for failure messages.
  public private(set) var last = ""

  /// `count` mutations of `original` drawn from `seed`.
  public init(of original: [UInt8], count: Int, seed: UInt64) {
    (self.original, random, remaining) = (original, RandomGenerator(seed: seed), count)
  }

  /// Values that break arithmetic and bounds when a reader trusts them.
  static let extremes: [UInt64] = [0, 1, 0x7F, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF, 1 << 40, UInt64(Int64.max), UInt64.max]

  public mutating func next() -> [UInt8]? {
    guard remaining > 0, !original.isEmpty else { return nil }
    remaining -= 1
    var bytes = original
    let at = Int(random.next() % UInt64(bytes.count))
    switch random.next() % 7 {
    case 0:
      last = "truncated to \(at) bytes"
      bytes = Array(bytes.prefix(at))
    case 1:
      let bit = UInt8(1) << UInt8(random.next() % 8)
      last = "bit \(bit) of byte \(at) flipped"
      bytes[at] ^= bit
    case 2:
      let value = Self.extremes[Int(random.next() % UInt64(Self.extremes.count))]
      let width = [1, 2, 4, 8][Int(random.next() % 4)]
      let bigEndian = random.next() & 1 == 0
      last = "\(width) bytes at \(at) set to \(value) (\(bigEndian ? "big" : "little")-endian)"
      for i in 0..<width where at + i < bytes.count {
        let shift = 8 * (bigEndian ? width - 1 - i : i)
        bytes[at + i] = UInt8(truncatingIfNeeded: value >> UInt64(shift))
      }
    case 3:
      let count = 1 + Int(random.next() % 16)
      last = "\(count) bytes removed at \(at)"
      bytes.removeSubrange(at..<Swift.min(bytes.count, at + count))
    case 4:
      let count = 1 + Int(random.next() % 16)
      last = "\(count) random bytes inserted at \(at)"
      bytes.insert(contentsOf: (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }, at: at)
    case 5:
      // A decimal number in a text header replaced by an extreme one.
      let digits = bytes.indices.filter { (0x30...0x39).contains(bytes[$0]) && ($0 == 0 || !(0x30...0x39).contains(bytes[$0 - 1])) }
      guard !digits.isEmpty else {
        last = "truncated to \(at) bytes"
        bytes = Array(bytes.prefix(at))
        break
      }
      let start = digits[Int(random.next() % UInt64(digits.count))]
      var end = start
      while end < bytes.count, (0x30...0x39).contains(bytes[end]) { end += 1 }
      let replacement = ["-1", "0", "9223372036854775807", "9223372036854775808", "1099511627776", "4294967296", "1e400", "3.5"][
        Int(random.next() % 8)]
      last = "number at \(start) replaced by \(replacement)"
      bytes.replaceSubrange(start..<end, with: Array(replacement.utf8))
    default:
      let count = 1 + Int(random.next() % 64)
      last = "\(count) bytes at \(at) zeroed"
      for i in at..<Swift.min(bytes.count, at + count) { bytes[i] = 0 }
    }
    return bytes
  }
}

/// Runs `read` on every mutation of `original` and counts how it ended: a value or an error. A trap
/// ends the test process, which fails the run. Returns the counts so that a test can check the
/// mutations reached the reader's checks.
public func fuzz(
  _ original: [UInt8], cases: Int, seed: UInt64, file: StaticString = #filePath, line: UInt = #line,
  _ read: ([UInt8]) throws -> Void
) -> (accepted: Int, rejected: Int) {
  var mutations = Mutations(of: original, count: cases, seed: seed)
  var accepted = 0, rejected = 0
  while let bytes = mutations.next() {
    do {
      try read(bytes)
      accepted += 1
    } catch is StateFileError {
      rejected += 1
    } catch {
      XCTFail("seed \(seed), \(mutations.last): an error of another kind: \(error)", file: file, line: line)
    }
  }
  print("fuzz seed \(seed): \(cases) cases, \(accepted) read, \(rejected) rejected with an error")
  return (accepted, rejected)
}
