/// A seedable pseudo-random generator (xoshiro256**) whose state is a value: copy it to save it,
/// assign it to restore it. Checkpoint replay relies on that (docs/checkpointing.md, rule 4).
public struct RandomGenerator: RandomNumberGenerator, Sendable, Equatable {
  /// The generator's whole state.
  public var state: (UInt64, UInt64, UInt64, UInt64)

  /// A generator seeded with `seed` (expanded with SplitMix64, so nearby seeds give unrelated streams).
  public init(seed: UInt64) {
    var x = seed
    func splitMix() -> UInt64 {
      x &+= 0x9E37_79B9_7F4A_7C15
      var z = x
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      return z ^ (z >> 31)
    }
    state = (splitMix(), splitMix(), splitMix(), splitMix())
  }

  /// The next 64 random bits.
  public mutating func next() -> UInt64 {
    let result = rotate(state.1 &* 5, 7) &* 9
    let t = state.1 << 17
    state.2 ^= state.0
    state.3 ^= state.1
    state.1 ^= state.2
    state.0 ^= state.3
    state.2 ^= t
    state.3 = rotate(state.3, 45)
    return result
  }

  /// A uniform value in [0, 1) with the full precision of `T`.
  public mutating func nextUnit<T: TensorScalar>(_: T.Type = T.self) -> T {
    if T.self == Float.self { return T(Float(next() >> 40) * 0x1p-24) }
    return T(Double(next() >> 11) * 0x1p-53)
  }

  /// Two independent standard normal values (Box-Muller).
  public mutating func nextNormalPair() -> (Double, Double) {
    let u1 = 1 - nextUnit(Double.self)  // in (0, 1]
    let u2 = nextUnit(Double.self)
    let r = (-2 * Double.log(u1)).squareRoot()
    return (r * Double.cos(2 * .pi * u2), r * Double.sin(2 * .pi * u2))
  }

  /// Equal when the states are equal.
  public static func == (a: RandomGenerator, b: RandomGenerator) -> Bool {
    a.state == b.state
  }

  private func rotate(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

  /// The process-wide default generator, used when no generator is passed.
  ///
  /// Seed it with `RandomGenerator.global = RandomGenerator(seed: 42)`; read and assign it to save
  /// and restore the stream.
  nonisolated(unsafe) public static var global = RandomGenerator(seed: 0x5EED)
}
