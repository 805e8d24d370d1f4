import Reprise
import TestSupport
import XCTest

/// Batch normalisations of feature-buffer windows put their input gradients straight into the
/// gradients the pieces accumulate (`recordChannelView`): correct, the same bits as through a
/// separate window gradient, and actually taken.
final class FeatureBufferGradientTests: XCTestCase {
  var random = RandomGenerator(seed: 41)

  override func setUp() { RandomGenerator.global = RandomGenerator(seed: 6) }

  /// The units of the tests: BN-ReLU-conv 1x1, BN-ReLU, and BN-ReLU-conv 3x3 in a checkpoint region.
  struct Units {
    let fused = BatchNorm2d(channels: 5), conv = Conv2d(inputChannels: 5, outputChannels: 2, kernelSize: 1, bias: false)
    let norm = BatchNorm2d(channels: 5)
    let regionNorm = BatchNorm2d(channels: 7), regionConv = Conv2d(inputChannels: 7, outputChannels: 3, kernelSize: 3, padding: 1, bias: false)

    var modules: [any Module] { [fused, conv, norm, regionNorm, regionConv] }
    var parameters: [Variable] { modules.flatMap(\.parameters) }

    init() { for module in modules { module.convert(to: .float64) } }
  }

  /// First maps cut into pieces, two appended maps, and three windows: each normalised, one also
  /// read by another operation when `sharing`. `view` stands between the buffer and every window's
  /// consumers.
  func run(_ a: Variable, _ b: Variable, _ units: Units, sharing: Bool, view: (Variable) -> Variable = { $0 }) -> Variable {
    let buffer = FeatureBuffer(capacity: 7, first: a * 2, pieceSize: 2)
    buffer.append(tanh(b))
    buffer.append(batchNormReLUConv(view(buffer.window(0..<5)), norm: units.fused, conv: units.conv))
    let window = view(buffer.window(2..<7))
    let normalised = units.norm(window, applyingReLU: true)
    let region = checkpoint(view(buffer.features)) { batchNormReLUConv($0, norm: units.regionNorm, conv: units.regionConv) }
    let total = sum(normalised * normalised) + sum(region * region)
    return sharing ? total + sum(exp(window * 0.5)) : total
  }

  func testGradientsAreCorrect() {
    let a = randomLeaf([3, 4, 3, 3], using: &random), b = randomLeaf([3, 1, 3, 3], using: &random), units = Units()
    for sharing in [false, true] {
      assertGradientsCorrect(at: [a, b] + units.parameters, "a window also read elsewhere: \(sharing)") {
        run(a, b, units, sharing: sharing)
      }
    }
  }

  /// The same gradients, bit for bit, as when each window's gradient is a tensor of its own that
  /// the tape splits and adds to the pieces (a window behind `* 1` is a plain value, not a view).
  func testGradientsMatchSplittingTheWindowGradient() {
    let a = randomLeaf([3, 4, 3, 3], using: &random), b = randomLeaf([3, 1, 3, 3], using: &random), units = Units()
    let leaves = [a, b] + units.parameters
    func gradients(view: @escaping (Variable) -> Variable) -> [Tensor?] {
      for leaf in leaves { leaf.grad = nil }
      run(a, b, units, sharing: false, view: view).backward()
      return leaves.map(\.grad)
    }
    let direct = gradients(view: { $0 }), split = gradients(view: { $0 * 1 })
    for (i, (d, s)) in zip(direct, split).enumerated() { assertBitIdentical(d, s, "leaf \(i)") }
  }

  /// A window times a constant (a dropout mask per plane, or one per element) sends its gradient
  /// straight to the pieces too: correct, and the same bits as through a window gradient of its own
  /// (`+ 0` makes the window a plain value).
  func testProductsWithConstantsSendTheirGradientsToThePieces() {
    let a = randomLeaf([3, 4, 3, 3], using: &random), b = randomLeaf([3, 1, 3, 3], using: &random), units = Units()
    let leaves = [a, b] + units.parameters
    for perPlane in [true, false] {
      func masked(_ x: Variable) -> Variable {
        var masks = RandomGenerator(seed: UInt64(x.shape[1]))
        let shape = perPlane ? [x.shape[0], x.shape[1], 1, 1] : x.shape
        return x * Variable(Tensor(randomNormal: shape, dtype: .float64, using: &masks))
      }
      assertGradientsCorrect(at: leaves, "per plane: \(perPlane)") { run(a, b, units, sharing: true, view: masked) }
      func gradients(view: @escaping (Variable) -> Variable) -> [Tensor?] {
        for leaf in leaves { leaf.grad = nil }
        run(a, b, units, sharing: false, view: view).backward()
        return leaves.map(\.grad)
      }
      let direct = gradients(view: masked), split = gradients(view: { masked($0 + 0) })
      for (i, (d, s)) in zip(direct, split).enumerated() { assertBitIdentical(d, s, "leaf \(i), per plane: \(perPlane)") }
    }
  }

  /// Each piece receives a gradient that is a tensor of its own, not a view of its window's.
  func testPiecesReceiveGradientsOfTheirOwn() {
    let a = randomLeaf([2, 2, 3, 3], using: &random), b = randomLeaf([2, 3, 3, 3], using: &random)
    var received: [Tensor] = []
    func probe(_ x: Variable) -> Variable {
      recordOperation("probe", x.value, inputs: [x]) { g in
        received.append(g)
        return [nil]  // so that nothing else holds it
      }
    }
    let buffer = FeatureBuffer(capacity: 5, first: probe(a))
    buffer.append(probe(b))
    let norm = BatchNorm2d(channels: 5)
    norm.convert(to: .float64)
    sum(norm(buffer.features, applyingReLU: true)).backward()
    XCTAssertEqual(received.count, 2)
    for i in received.indices { XCTAssertTrue(received[i].ownsItsStorage(), "piece \(i) received a view of a larger gradient") }
  }
}
