import Foundation
import Reprise
import TestSupport
import XCTest

/// The modules of sequence models and MLPs: normalisations, linear layers over any batch shape,
/// attention, the Transformer block and recurrent layers, with gradient checks in Float64 and
/// checkpointed-equals-plain gradients; cross-entropy over positions with ignored labels.
final class SequenceModuleTests: XCTestCase {
  var random = RandomGenerator(seed: 2031)

  func input(_ shape: [Int]) -> Variable { randomLeaf(shape, using: &random) }

  /// Gradients of `module`'s parameters and of `x` for the loss `f`, plain and inside a checkpoint
  /// region, bit for bit.
  func assertCheckpointedEqualsPlain(_ module: any Module, _ x: Variable, _ f: @escaping (Variable) -> Variable, file: StaticString = #filePath, line: UInt = #line) {
    func gradients(_ checkpointed: Bool) -> [Tensor?] {
      module.zeroGradients()
      x.grad = nil
      let state = RandomGenerator.global
      sum(checkpointed ? checkpoint(x, f) : f(x)).backward()
      RandomGenerator.global = state
      return [x.grad] + module.parameters.map(\.grad)
    }
    for (a, b) in zip(gradients(false), gradients(true)) { assertBitIdentical(a, b, file: file, line: line) }
  }

  func testLayerNormAgainstItsFormula() {
    let norm = LayerNorm([5])
    norm.convert(to: .float64)
    let x = input([2, 3, 5])
    let y = norm(x).value
    let values = x.value.scalars(as: Double.self)
    for row in 0..<6 {
      let slice = Array(values[row * 5..<(row + 1) * 5]), m = slice.reduce(0, +) / 5
      let v = slice.map { ($0 - m) * ($0 - m) }.reduce(0, +) / 5
      for i in 0..<5 { XCTAssertEqual(y.scalars(as: Double.self)[row * 5 + i], (slice[i] - m) / (v + 1e-5).squareRoot(), accuracy: 1e-12) }
    }
    assertGradientsCorrect(at: [x] + norm.parameters, "LayerNorm") { norm(x) * x }
  }

  func testGroupNormAndBatchNorm1d() {
    let group = GroupNorm(groups: 2, channels: 4)
    group.convert(to: .float64)
    let x = input([3, 4, 5])
    assertGradientsCorrect(at: [x] + group.parameters, "GroupNorm") { group(x) * x }
    // One group per channel over [N, C, L] normalises like batch norm of one image.
    let norm1d = BatchNorm1d(channels: 4), norm2d = BatchNorm2d(channels: 4)
    let y1 = norm1d(Variable(x.value.converted(to: .float32))).value
    let y2 = reshape(norm2d(Variable(reshape(x.value.converted(to: .float32), to: [3, 4, 5, 1]))).value, to: [3, 4, 5])
    assertBitIdentical(y1, y2)
    assertBitIdentical(norm1d.runningVariance.value, norm2d.runningVariance.value)
    XCTAssertEqual(norm1d.namedBuffers.map(\.name), ["running_mean", "running_var"])
    XCTAssertEqual(Set(norm1d.stateEntries.map(\.0)), ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"])
  }

  func testLinearOverAnyBatchShape() {
    let linear = Linear(inputFeatures: 3, outputFeatures: 2)
    let x = Variable(Tensor(randomNormal: [2, 4, 3], using: &random))
    let rows = linear(reshape(x, to: [8, 3])).value
    assertBitIdentical(linear(x).value, reshape(rows, to: [2, 4, 2]))
  }

  func testAttentionIsCausalAndDifferentiable() {
    let attention = MultiheadAttention(embeddingDimension: 6, headCount: 2, causal: true)
    attention.convert(to: .float64)
    let x = input([2, 4, 6])
    var changed = x.value.scalars(as: Double.self)
    for i in 0..<6 { changed[3 * 6 + i] += 1 }  // the last position of the first sequence
    let y = attention(x).value, z = attention(Variable(Tensor(changed, shape: [2, 4, 6]))).value
    for t in 0..<3 { for i in 0..<6 { XCTAssertEqual(y[0, t, i], z[0, t, i], "position \(t) saw a later one") } }
    XCTAssertNotEqual(y[0, 3, 0], z[0, 3, 0])
    XCTAssertEqual(Set(attention.namedParameters.map(\.name)), ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"])
    assertGradientsCorrect(at: [x] + attention.parameters, "MultiheadAttention") { attention(x) }
    let memory = input([2, 3, 6]), plain = MultiheadAttention(embeddingDimension: 6, headCount: 3)
    plain.convert(to: .float64)
    assertGradientsCorrect(at: [x, memory] + plain.parameters, "cross-attention") { plain(x, key: memory, value: memory, causal: false) }
  }

  func testTransformerBlock() {
    let block = TransformerBlock(embeddingDimension: 8, headCount: 2, feedForwardDimension: 12, causal: true)
    block.convert(to: .float64)
    let x = input([2, 3, 8])
    assertGradientsCorrect(at: [x] + block.parameters, "TransformerBlock") { block(x) }
    // With dropout the attention is composed; without, it is the fused primitive. Both replay
    // bit-identically in a checkpoint region.
    for p in [0.2, 0] {
      let trained = TransformerBlock(embeddingDimension: 8, headCount: 2, dropout: p, causal: true)
      withLearningPhase(.training) {
        assertCheckpointedEqualsPlain(trained, Variable(Tensor(randomNormal: [2, 5, 8], using: &random), requiresGrad: true)) { trained($0) }
      }
    }
  }

  func testRecurrentLayers() {
    let gru = GRU(inputSize: 3, hiddenSize: 4), cell = GRUCell(inputSize: 3, hiddenSize: 4)
    for (a, b) in zip(cell.parameters, gru.parameters) { a.value = b.value }
    let x = Variable(Tensor(randomNormal: [2, 5, 3], using: &random))
    let (output, state) = gru(x)
    var h: Variable? = nil
    for t in 0..<5 { h = cell(reshape(slice(x, t..<(t + 1), alongAxis: 1), to: [2, 3]), h) }
    assertBitIdentical(state.value, h!.value)
    XCTAssertEqual(output.shape, [2, 5, 4])
    XCTAssertEqual(gru.namedParameters.map(\.name), ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"])
    for module in [gru as any Module, LSTM(inputSize: 3, hiddenSize: 4)] { module.convert(to: .float64) }
    let small = input([2, 3, 3])
    assertGradientsCorrect(at: [small] + gru.parameters, "GRU") { gru(small).output }
    let lstm = LSTM(inputSize: 3, hiddenSize: 2)
    lstm.convert(to: .float64)
    assertGradientsCorrect(at: [small] + lstm.parameters, "LSTM") { let (o, s) = lstm(small); return o + reshape(s.c, to: [2, 1, 2]) }
    let lstmCell = LSTMCell(inputSize: 3, hiddenSize: 2)
    lstmCell.convert(to: .float64)
    let step = input([2, 3])
    assertGradientsCorrect(at: [step] + lstmCell.parameters, "LSTMCell") { lstmCell(step).h }
    let float = GRU(inputSize: 3, hiddenSize: 4)
    assertCheckpointedEqualsPlain(float, Variable(Tensor(randomNormal: [2, 6, 3], using: &random), requiresGrad: true)) { float($0).output }
  }

  func testCrossEntropyOverPositionsWithIgnoredLabels() {
    let logits = input([2, 3, 4])
    let labels = [0, 2, -100, 1, 2, -100, -100, 0]
    let lp = logits.value.scalars(as: Double.self)
    var total = 0.0, counted = 0.0
    for (i, label) in labels.enumerated() where label != -100 {
      let (n, p) = i.quotientAndRemainder(dividingBy: 4)
      let row = (0..<3).map { lp[(n * 3 + $0) * 4 + p] }
      let m = row.max()!, logSum = m + Foundation.log(row.map { Foundation.exp($0 - m) }.reduce(0, +))
      total += logSum - row[label]
      counted += 1
    }
    XCTAssertEqual(crossEntropy(logits, labels: labels, ignoreIndex: -100).value.scalar, total / counted, accuracy: 1e-12)
    assertGradientsCorrect(at: [logits], "crossEntropy over positions") { crossEntropy(logits, labels: labels, ignoreIndex: -100, labelSmoothing: 0.1) }
    let logProbabilities = logSoftmax(logits, alongAxis: 1)
    XCTAssertEqual(nllLoss(logProbabilities, labels: labels, ignoreIndex: -100).value.scalar, total / counted, accuracy: 1e-12)
  }
}

/// A module that forgets to list a sub-module is reported, not silently left untrained.
final class UnlistedSubmoduleTests: XCTestCase {
  final class Forgetful: Layer {
    let listed = Linear(inputFeatures: 2, outputFeatures: 2)
    let forgotten = Linear(inputFeatures: 2, outputFeatures: 2)
    let activation = ReLU()  // no parameters: need not be listed
    var children: [(name: String, module: any Module)] { [("listed", listed)] }
    func callAsFunction(_ input: Variable) -> Variable { forgotten(activation(listed(input))) }
  }

  final class Careful: Layer {
    let blocks = [Linear(inputFeatures: 2, outputFeatures: 2), Linear(inputFeatures: 2, outputFeatures: 2)]
    var children: [(name: String, module: any Module)] { blocks.enumerated().map { ("\($0.offset)", $0.element) } }
    func callAsFunction(_ input: Variable) -> Variable { blocks.reduce(input) { $1($0) } }
  }

  func testAForgottenModuleIsFoundAndStops() {
    XCTAssertEqual(Forgetful().unlistedSubmodules, ["Forgetful.forgotten"])
    XCTAssertEqual(Careful().unlistedSubmodules, [])
    XCTAssertEqual(Careful().namedParameters.map(\.name), ["0.weight", "0.bias", "1.weight", "1.bias"])
    assertStops(withMessageContaining: ["Forgetful: Forgetful.forgotten holds a module with parameters that no `children` list reaches"], in: self) {
      _ = Forgetful().parameters
    }
  }
}
