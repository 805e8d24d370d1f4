import Foundation
import Reprise
import TestSupport
import XCTest

/// Element-wise functions against Swift's scalar functions, broadcasting against index arithmetic.
final class ElementwiseTests: XCTestCase {
  func testUnaryFunctionsMatchScalarDefinitions() {
    var random = RandomGenerator(seed: 1)
    let x = Tensor(randomNormal: [3, 17], dtype: .float64, using: &random)
    let positive = abs(x) + 0.1
    let v = x.scalars(as: Double.self), p = positive.scalars(as: Double.self)
    let cases: [(String, Tensor, [Double])] = [
      ("exp", exp(x), v.map { Foundation.exp($0) }),
      ("log", log(positive), p.map { Foundation.log($0) }),
      ("sqrt", sqrt(positive), p.map { $0.squareRoot() }),
      ("abs", abs(x), v.map { Swift.abs($0) }),
      ("negate", -x, v.map { -$0 }),
      ("reciprocal", reciprocal(positive), p.map { 1 / $0 }),
      ("relu", relu(x), v.map { Swift.max($0, 0) }),
      ("relu6", relu6(x * 4), v.map { Swift.min(Swift.max(4 * $0, 0), 6) }),
      ("sigmoid", sigmoid(x), v.map { 1 / (1 + Foundation.exp(-$0)) }),
      ("tanh", tanh(x), v.map { Foundation.tanh($0) }),
      ("pow", pow(positive, 1.5), p.map { Foundation.pow($0, 1.5) }),
      ("clamp", clamp(x, min: -0.5, max: 0.25), v.map { Swift.min(Swift.max($0, -0.5), 0.25) }),
      ("sign", sign(x), v.map { $0 > 0 ? 1 : ($0 < 0 ? -1 : 0) }),
      ("step", step(x, threshold: 0.25), v.map { $0 > 0.25 ? 1 : 0 }),
      ("affine", affine(x, scale: -2, shift: 0.5), v.map { -2 * $0 + 0.5 }),
      ("scalar add", x + 2, v.map { $0 + 2 }),
      ("scalar multiply", x * 3, v.map { $0 * 3 }),
    ]
    for (name, actual, expected) in cases {
      assertClose(actual, Tensor(expected, shape: [3, 17]), relativeTolerance: 1e-12, absoluteTolerance: 1e-12, name)
    }
  }

  func testBinaryBroadcastingMatchesIndexArithmetic() {
    var random = RandomGenerator(seed: 2)
    let a = Tensor(randomNormal: [2, 1, 4], dtype: .float64, using: &random)
    let b = Tensor(randomNormal: [3, 1], dtype: .float64, using: &random)
    let av = a.scalars(as: Double.self), bv = b.scalars(as: Double.self)
    func expected(_ f: (Double, Double) -> Double) -> Tensor {
      var out: [Double] = []
      for i in 0..<2 { for j in 0..<3 { for k in 0..<4 { out.append(f(av[i * 4 + k], bv[j])) } } }
      return Tensor(out, shape: [2, 3, 4])
    }
    assertClose(a + b, expected(+), "add")
    assertClose(a - b, expected(-), "subtract")
    assertClose(a * b, expected(*), "multiply")
    assertClose(a / b, expected(/), "divide")
    assertClose(maximum(a, b), expected { Swift.max($0, $1) }, "maximum")
    assertClose(minimum(a, b), expected { Swift.min($0, $1) }, "minimum")
    assertClose(a .< b, expected { $0 < $1 ? 1 : 0 }, "less")
    assertClose(a .>= b, expected { $0 >= $1 ? 1 : 0 }, "greaterEqual")
    assertClose(a .== a, Tensor(ones: [2, 1, 4], dtype: .float64), "equal")
    assertClose(select(a .> b, a, b), expected { $0 > $1 ? $0 : $1 }, "select")
  }

  /// Views (transposed, sliced, broadcast) are read through their strides, not their storage order.
  func testStridedOperands() {
    let m = Tensor((0..<12).map(Double.init), shape: [3, 4])
    let t = transpose(m)  // [4, 3]
    XCTAssertFalse(t.isContiguous)
    assertClose(t + Tensor(zeros: [4, 3], dtype: .float64), t.contiguous())
    XCTAssertEqual((t * 2).scalars(as: Double.self), [0, 8, 16, 2, 10, 18, 4, 12, 20, 6, 14, 22])
    let column = slice(m, 1..<2, alongAxis: 1)
    XCTAssertEqual((column + 0.5).scalars(as: Double.self), [1.5, 5.5, 9.5])
  }

  /// Large broadcast products (a per-image, per-channel scale of a permuted map) are split across
  /// threads by rows; every row, wherever a thread's share starts, matches index arithmetic.
  func testLargeStridedBroadcastMatchesIndexArithmetic() {
    var random = RandomGenerator(seed: 3)
    let x = permute(Tensor(randomNormal: [5, 7, 65, 67], dtype: .float64, using: &random), [1, 0, 2, 3])  // [7, 5, 65, 67]
    let scale = Tensor(randomNormal: [7, 5, 1, 1], dtype: .float64, using: &random)
    let xv = x.contiguous().scalars(as: Double.self), sv = scale.scalars(as: Double.self)
    let expected = Tensor(xv.indices.map { xv[$0] * sv[$0 / (65 * 67)] }, shape: [7, 5, 65, 67])
    assertBitIdentical(x * scale, expected)
    assertBitIdentical((x + scale).contiguous(), Tensor(xv.indices.map { xv[$0] + sv[$0 / (65 * 67)] }, shape: [7, 5, 65, 67]))
  }

  /// Element-wise results keep a dense operand's memory order (channel-major stays channel-major).
  func testLayoutIsPreserved() {
    var random = RandomGenerator(seed: 4)
    let x = conv2d(Tensor(randomNormal: [2, 3, 4, 4], using: &random), Tensor(randomNormal: [5, 3, 1, 1], using: &random))
    let y = relu(x) + Tensor(ones: [1, 5, 1, 1])
    XCTAssertEqual(y.strides, x.strides)
    assertClose(y, relu(x.contiguous()) + Tensor(ones: [1, 5, 1, 1]))
  }

  /// `+=` adds over a tensor that alone owns its buffer (no new buffer: the allocator's peak does
  /// not move) and otherwise leaves the tensors that shared the buffer as they were.
  /// `addReLU(a, b)` is `relu(a + b)` bit for bit: on a channel-major map with a channel-major or an
  /// image-major second operand, and broadcast; the result keeps the map's layout.
  func testAddReLUEqualsReLUOfSum() {
    var random = RandomGenerator(seed: 12)
    let x = conv2d(Tensor(randomNormal: [3, 4, 5, 6], using: &random), Tensor(randomNormal: [5, 4, 1, 1], using: &random))
    for b in [x * 0.5 - 0.25, Tensor(randomNormal: x.shape, using: &random), Tensor(randomNormal: [1, 5, 1, 1], using: &random)] {
      let y = addReLU(x, b)
      assertBitIdentical(y, relu(x + b))
      XCTAssertEqual(y.strides, x.strides)
    }
  }

  func testAddAssignIsInPlaceOnlyForUnsharedBuffers() {
    var random = RandomGenerator(seed: 5)
    let b = Tensor(randomNormal: [64, 1024], dtype: .float64, using: &random)
    var a = Tensor(randomNormal: [64, 1024], dtype: .float64, using: &random)
    let once = a + b, twice = once + b
    Allocator.resetPeak()
    let live = Allocator.liveBytes
    a += b
    XCTAssertEqual(Allocator.peakBytes, live, "an unshared tensor is added to in place")
    assertBitIdentical(a, once)
    let copy = a
    a += b
    assertBitIdentical(copy, once, "a copy sharing the buffer keeps its values")
    assertBitIdentical(a, twice)
    let whole = twice.copied()
    var view = slice(whole, 0..<8, alongAxis: 0)
    view += slice(b, 0..<8, alongAxis: 0)
    assertBitIdentical(whole, twice, "the buffer a view looks into is not written")
    assertBitIdentical(view, slice(twice + b, 0..<8, alongAxis: 0))
    var rows = Tensor(zeros: [2, 3], dtype: .float32)
    rows += Tensor([Float(1), 2, 3], shape: [3])
    XCTAssertEqual(rows.scalars(as: Float.self), [1, 2, 3, 1, 2, 3], "broadcast to the shape added to")
  }

  func testAddAssignNeedsOperandsThatBroadcastToItsShape() {
    assertStops(withMessageContaining: ["+=: [2, 3] does not broadcast to the shape [3] it is added to"], in: self) {
      var a = Tensor(zeros: [3])
      a += Tensor(zeros: [2, 3])
    }
  }

  func testMismatchedShapesNameBoth() {
    assertStops(withMessageContaining: ["+: shapes [2, 3] and [4] do not broadcast"], in: self) {
      _ = Tensor(zeros: [2, 3]) + Tensor(zeros: [4])
    }
  }

  /// clamp's gradient passes where lower < x < upper, and is 0 below, above, at the ends and at NaN;
  /// with a gradient in another memory order than the input.
  func testClampBackwardAgainstDefinition() {
    // 36 values: the Float32 kernel's 16-element blocks and its tail.
    let values = Array(repeating: [-2, -1, -0.5, 0, 1.5, 2, 2.5, .nan, -.infinity, .infinity, 1, -1] as [Double], count: 3).flatMap { $0 }
    let x = Tensor(values, shape: [9, 4])
    let g = permute(Tensor((1...36).map(Double.init), shape: [4, 9]), [1, 0])
    let gs = g.scalars(as: Double.self)
    for dtype in DType.allCases {
      let dx = clampBackward(g.converted(to: dtype), input: x.converted(to: dtype), min: -1, max: 2)
      let expected = zip(values, gs).map { v, d in v > -1 && v < 2 ? d : 0 }
      XCTAssertEqual(dx.scalars(as: Double.self), expected, "\(dtype)")
    }
  }

  /// `select` agrees with its definition for channel-major operands, a broadcast condition and
  /// mixed layouts, and its result keeps the channel-major order of a dense operand.
  func testSelectWithChannelMajorAndBroadcastOperands() {
    var random = RandomGenerator(seed: 12)
    let shape = [2, 3, 4, 5]
    let channelMajor = [20, 40, 5, 1]
    let a = Tensor(randomNormal: shape, using: &random).copied(strides: channelMajor)
    let b = Tensor(randomNormal: shape, using: &random)
    let condition = Tensor(randomNormal: [1, 3, 1, 5], using: &random) .> Tensor(0)
    let out = select(condition, a, b)
    XCTAssertEqual(out.strides, channelMajor)
    let (av, bv, cv) = (a.scalars(as: Double.self), b.scalars(as: Double.self), condition.scalars(as: Double.self))
    var expected: [Double] = []
    for i in 0..<av.count {
      let c = i / 20 % 3, w = i % 5
      expected.append(cv[c * 5 + w] != 0 ? av[i] : bv[i])
    }
    XCTAssertEqual(out.scalars(as: Double.self), expected)
  }
}
