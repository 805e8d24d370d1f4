import Reprise
import TestSupport
import XCTest

/// One test per rule of the checkpoint contract (docs/checkpointing.md; the numbered rules in Checkpoint.swift).
final class CheckpointTests: XCTestCase {
  var random = RandomGenerator(seed: 77)

  /// A toy batch-norm-like layer whose running mean is a side effect (rule 5).
  final class RunningMean {
    var value = Tensor(zeros: [4], dtype: .float64)
    var updates = 0
    func callAsFunction(_ x: Variable) -> Variable {
      let m = mean(x, alongAxes: [0], keepingDimensions: true)
      onFirstPass {
        value = value * 0.9 + reshape(m, to: [4]).value * 0.1
        updates += 1
      }
      return x - m
    }
  }

  /// Runs `body` and backward, returning the gradients of `leaves` and clearing them.
  func gradients(_ leaves: [Variable], seed: Tensor? = nil, _ body: () -> Variable) -> [Tensor?] {
    for l in leaves { l.grad = nil }
    let y = body()
    y.backward(seed: seed ?? Tensor(ones: y.shape, dtype: y.dtype))
    defer { for l in leaves { l.grad = nil } }
    return leaves.map(\.grad)
  }

  // Rule 1: after the forward pass a region holds nothing computed inside it.
  func testRule1RegionKeepsNothingInside() {
    Allocator.releaseCache()  // charges then equal requests: no cached larger buffer serves them
    let x = Variable(Tensor(randomNormal: [256, 256]), requiresGrad: true)
    let w = Variable(Tensor(randomNormal: [256, 256]), requiresGrad: true)
    let body: (Variable) -> Variable = { relu(matmul(exp($0 * 0.1) * $0, w)) + 1 }
    let before = Allocator.liveBytes
    let plain = body(x)
    let plainBytes = Allocator.liveBytes - before
    withExtendedLifetime(plain) {}
    let beforeCheckpoint = Allocator.liveBytes
    let y = checkpoint(x, body)
    let checkpointBytes = Allocator.liveBytes - beforeCheckpoint
    XCTAssertEqual(checkpointBytes, 256 * 256 * 4, "only the output is new")
    XCTAssertGreaterThanOrEqual(plainBytes, 4 * 256 * 256 * 4, "the plain pass keeps its intermediates")
    withExtendedLifetime(y) {}
  }

  // Rule 2: backward replays the body once, and the replay's tape is freed with the gradients out.
  func testRule2ReplayRunsOnceAndIsFreed() {
    Allocator.releaseCache()  // charges then equal requests: no cached larger buffer serves them
    let x = Variable(Tensor(randomNormal: [128, 128]), requiresGrad: true)
    var calls = 0
    let before = Allocator.liveBytes
    let y = checkpoint(x) { v in
      calls += 1
      return exp(v) * v
    }
    XCTAssertEqual(calls, 1)
    sum(y).backward()
    XCTAssertEqual(calls, 2)
    // Left: y's value and x's gradient, plus the scalar loss.
    XCTAssertLessThanOrEqual(Allocator.liveBytes - before, 2 * 128 * 128 * 4 + 128)
    withExtendedLifetime(y) {}
  }

  // Rule 3: gradients reach inputs and the parameters the closure captures.
  func testRule3CapturedParametersGetGradients() {
    let x = randomLeaf([3, 4], using: &random), w = randomLeaf([4, 5], using: &random), b = randomLeaf([5], using: &random)
    let body: (Variable) -> Variable = { relu(matmul($0, w) + b) }
    let plain = gradients([x, w, b]) { sum(body(x)) }
    let checked = gradients([x, w, b]) { sum(checkpoint(x, body)) }
    for (p, c) in zip(plain, checked) { assertBitIdentical(p, c) }
    XCTAssertNotNil(checked[1])
    XCTAssertNotNil(checked[2])
  }

  // Rule 4: the replay sees the generator state and learning phase of the first pass, and the
  // state around the backward pass is put back afterwards.
  func testRule4ReplaySeesTheSameWorld() {
    let x = randomLeaf([6, 7], using: &random)
    RandomGenerator.global = RandomGenerator(seed: 1)
    let plain = gradients([x]) { sum(dropout(exp(x)) * x) }
    RandomGenerator.global = RandomGenerator(seed: 1)
    let checked = gradients([x]) {
      let y = checkpoint(x) { dropout(exp($0)) * $0 }
      RandomGenerator.global = RandomGenerator(seed: 999)  // the world moves on before backward
      return sum(y)
    }
    assertBitIdentical(plain[0], checked[0])
    XCTAssertEqual(RandomGenerator.global, RandomGenerator(seed: 999), "the surrounding generator is restored")

    // Entered in inference: the replay runs in inference although backward runs in training.
    var phases: [LearningPhase] = []
    let y = withLearningPhase(.inference) {
      checkpoint(x) { v in
        phases.append(LearningPhase.current)
        return dropout(v) * v
      }
    }
    sum(y).backward()
    XCTAssertEqual(phases, [.inference, .inference])
    XCTAssertEqual(LearningPhase.current, .training)
  }

  // Rule 5: side effects happen once per step.
  func testRule5SideEffectsHappenOnce() {
    let x = randomLeaf([5, 4], using: &random)
    let plainLayer = RunningMean(), checkedLayer = RunningMean()
    let plain = gradients([x]) { sum(exp(plainLayer(x))) }
    let checked = gradients([x]) { sum(checkpoint(x) { exp(checkedLayer($0)) }) }
    XCTAssertEqual(checkedLayer.updates, 1)
    assertBitIdentical(plainLayer.value, checkedLayer.value)
    assertBitIdentical(plain[0], checked[0])
  }

  // Rule 6: a replay that differs in shape stops with a message naming the region.
  func testRule6NondeterministicShapesStop() {
    assertStops(withMessageContaining: ["checkpoint 'flaky': the replay produced 1 outputs of shapes [[2]], the first pass 1 of shapes [[3]]"], in: self) {
      let x = Variable(Tensor(ones: [3]), requiresGrad: true)
      var calls = 0
      let y = checkpoint(x, name: "flaky") { v in
        calls += 1
        return calls == 1 ? v * 2 : slice(v, 0..<2, alongAxis: 0)
      }
      sum(y).backward()
    }
  }

  /// A value recorded outside a region and captured instead of passed is a clear error.
  func testCapturedRecordedValueStops() {
    assertStops(withMessageContaining: ["checkpoint 'leaky': the body uses a value computed outside the region", "pass it as an input"], in: self) {
      let x = Variable(Tensor(ones: [3]), requiresGrad: true)
      let outside = exp(x)
      let y = checkpoint(x, name: "leaky") { $0 * outside }
      sum(y).backward()
    }
  }

  // Rule 7: nesting, inputs without gradients, unused and reused outputs, bodies without parameters.
  func testRule7NestingAndEdgeCases() {
    let x = randomLeaf([4, 3], using: &random), w = randomLeaf([3, 3], using: &random)
    let inner: (Variable) -> Variable = { tanh(matmul($0, w)) }
    let outer: (Variable) -> Variable = { v in exp(checkpoint(inner(v) * 0.5, inner)) + checkpoint(v) { $0 * $0 } }
    let plainOuter: (Variable) -> Variable = { v in exp(inner(inner(v) * 0.5)) + v * v }
    let plain = gradients([x, w]) { sum(plainOuter(x)) }
    let nested = gradients([x, w]) { sum(checkpoint(x, outer)) }
    for (p, n) in zip(plain, nested) { assertClose(p!, n!, relativeTolerance: 1e-14) }

    // An input that needs no gradient, with a captured parameter: only the parameter gets one.
    let constant = Variable(Tensor(randomNormal: [4, 3], dtype: .float64, using: &random))
    let viaConstant = gradients([w]) { sum(checkpoint(constant, inner)) }
    let directly = gradients([w]) { sum(inner(constant)) }
    assertBitIdentical(viaConstant[0], directly[0])

    // Several outputs: one unused, one used twice; and a body that returns its input unchanged.
    let multi = gradients([x]) {
      let outs = checkpoint([x], name: "multi") { v in [exp(v[0]), v[0] * 3, v[0]] }
      return sum(outs[1] * outs[1] + outs[1] + outs[2])
    }
    let multiPlain = gradients([x]) { sum((x * 3) * (x * 3) + x * 3 + x) }
    assertClose(multi[0]!, multiPlain[0]!, relativeTolerance: 1e-14)

    // Nothing needs a gradient: nothing is recorded.
    let result = checkpoint(constant) { $0 * 2 }
    XCTAssertTrue(result.isLeaf)
  }

  // Rule 8: bit-identical gradients, even when an input is used several times inside the region and
  // also outside it (the accumulation order is kept).
  func testRule8GradientsAreBitIdentical() {
    let x = randomLeaf([7, 5], using: &random), w = randomLeaf([5], using: &random)
    let body: (Variable) -> Variable = { v in sin1(v) * w + v * v + exp(v) }
    let plain = gradients([x, w]) {
      let h = x * 1.5
      return sum(body(h) * h + h)
    }
    let checked = gradients([x, w]) {
      let h = x * 1.5
      return sum(checkpoint(h, body) * h + h)
    }
    for (p, c) in zip(plain, checked) { assertBitIdentical(p, c) }
  }

  // Rule 9: a sequence split into segments: n - 1 regions, the last segment unchecked, equal gradients.
  func testRule9CheckpointedSegments() {
    let x = randomLeaf([3, 3], using: &random)
    var calls = [Int](repeating: 0, count: 9)
    let steps: [(Variable) -> Variable] = (0..<9).map { i in { v in calls[i] += 1; return tanh(v) * 1.1 + v } }
    let plain = gradients([x]) { sum(steps.reduce(x) { $1($0) }) }
    calls = Array(repeating: 0, count: 9)
    let checked = gradients([x]) { sum(checkpointed(steps, segments: 3, x)) }
    assertBitIdentical(plain[0], checked[0])
    XCTAssertEqual(calls, [2, 2, 2, 2, 2, 2, 1, 1, 1])
    calls = Array(repeating: 0, count: 9)
    _ = checkpointed(steps, x)  // default: about sqrt(9) = 3 segments
    XCTAssertEqual(calls.reduce(0, +), 9)
  }

  // Rule 10: a policy keeps what it names from the first pass and the replay uses it. Keeping the
  // first convolution's output (by name, or by operation) saves its recomputation; the gradients
  // are those of the unchecked graph, and a replay that tags a different value stops (rule 6).
  func testRule10PolicyKeepsNamedValues() {
    let x = randomLeaf([2, 3, 5, 5], using: &random)
    let w1 = randomLeaf([4, 3, 3, 3], using: &random), w2 = randomLeaf([2, 4, 1, 1], using: &random)
    let body: (Variable) -> Variable = { v in conv2d(relu(checkpointName(conv2d(v, w1, padding: 1), "first")), w2) }
    let plain = gradients([x, w1, w2]) {
      let y = body(x)
      return sum(y * y)
    }
    for policy in [CheckpointPolicy.saving(names: ["first"]), .saving(operations: ["conv2d"]), .dotsSaveable] {
      let y = checkpoint(x, policy: policy, name: "convs", body)
      let loss = sum(y * y)
      let backwardMACs = countingMultiplyAccumulates { loss.backward() }.multiplyAccumulates
      XCTAssertEqual(backwardMACs, 0, "\(policy): the replay recomputed a kept convolution")
      for (p, c) in zip(plain, [x, w1, w2].map(\.grad)) { assertBitIdentical(p, c, "\(policy)") }
      for leaf in [x, w1, w2] { leaf.grad = nil }
    }
    // The kept value costs its bytes after the forward pass; keeping nothing costs none. (Sizes
    // the allocator charges exactly: a mebibyte kept, a power of two out.)
    let big = randomLeaf([4, 8, 32, 32], using: &random)
    let v1 = randomLeaf([32, 8, 3, 3], using: &random), v2 = randomLeaf([2, 32, 1, 1], using: &random)
    func bytesKept(_ policy: CheckpointPolicy) -> Int {
      Allocator.releaseCache()
      let before = Allocator.liveBytes
      let y = checkpoint(big, policy: policy, name: "convs") { v in conv2d(relu(checkpointName(conv2d(v, v1, padding: 1), "first")), v2) }
      defer { withExtendedLifetime(y) {} }
      return Allocator.liveBytes - before
    }
    XCTAssertEqual(bytesKept(.saving(names: ["first"])) - bytesKept(.nothing), 4 * 32 * 32 * 32 * 8, "the first convolution's output, Float64")
    var calls = 0
    let flaky = checkpoint(x, policy: .saving(names: ["a", "b"]), name: "flaky") { v in
      calls += 1
      return checkpointName(v * 2, calls == 1 ? "a" : "b")
    }
    assertStops(withMessageContaining: ["checkpoint 'flaky': the replay asks for the value named 'b'", "the first pass kept the value named 'a'"], in: self) {
      sum(flaky).backward()
    }
  }

  // Rule 10 for matrix products: `.dotsSaveable` keeps the outputs of `linear` and `matmul`, so a
  // region linear -> relu -> matmul recomputes neither (relu reads the first); the gradients are
  // those of the unchecked graph.
  func testRule10DotsSaveableKeepsProducts() {
    let x = randomLeaf([3, 5], using: &random)
    let w = randomLeaf([4, 5], using: &random), b = randomLeaf([4], using: &random), m = randomLeaf([4, 2], using: &random)
    let body: (Variable) -> Variable = { v in matmul(relu(linear(v, weight: w, bias: b)), m) }
    let plain = gradients([x, w, b, m]) {
      let y = body(x)
      return sum(y * y)
    }
    let y = checkpoint(x, policy: .dotsSaveable, name: "products", body)
    let loss = sum(y * y)
    XCTAssertEqual(countingMultiplyAccumulates { loss.backward() }.multiplyAccumulates, 0, "the replay recomputed a kept product")
    for (p, c) in zip(plain, [x, w, b, m].map(\.grad)) { assertBitIdentical(p, c) }
  }

  // Optimisation A: the replay computes a convolution's value only when something reads it. A
  // region conv -> relu -> conv recomputes the first convolution (relu reads it) but not the last,
  // whose output only leaves the region; the gradients are those of the unchecked graph.
  func testOptimisationAReplaySkipsValuesNothingReads() {
    let x = randomLeaf([2, 3, 5, 5], using: &random)
    let w1 = randomLeaf([4, 3, 3, 3], using: &random), w2 = randomLeaf([2, 4, 1, 1], using: &random)
    let body: (Variable) -> Variable = { v in conv2d(relu(conv2d(v, w1, padding: 1)), w2) }
    let plain = gradients([x, w1, w2]) {
      let y = body(x)
      return sum(y * y)
    }
    let firstMACs = 2 * 4 * 5 * 5 * 27, secondMACs = 2 * 2 * 5 * 5 * 4
    let (y, forwardMACs, _) = countingMultiplyAccumulates { checkpoint(x, name: "convs", body) }
    XCTAssertEqual(forwardMACs, firstMACs + secondMACs)
    let loss = sum(y * y)
    let backwardMACs = countingMultiplyAccumulates { loss.backward() }.multiplyAccumulates
    let checked = [x, w1, w2].map(\.grad)
    XCTAssertEqual(backwardMACs, firstMACs, "the replay recomputed the region's last convolution")
    for (p, c) in zip(plain, checked) { assertBitIdentical(p, c) }
  }

  // Optimisation A for a sum: `add`'s pullback reads nothing, so a region relu -> conv -> + input,
  // whose sum only leaves the region, computes neither the sum nor the convolution only the sum
  // reads; the first convolution, which relu reads, is the replay's only product.
  func testOptimisationAReplaySkipsASumNothingReads() {
    let x = randomLeaf([2, 3, 5, 5], using: &random)
    let w1 = randomLeaf([4, 3, 3, 3], using: &random), w2 = randomLeaf([3, 4, 1, 1], using: &random)
    let body: (Variable) -> Variable = { v in conv2d(relu(conv2d(v, w1, padding: 1)), w2) + v }
    let plain = gradients([x, w1, w2]) {
      let y = body(x)
      return sum(y * y)
    }
    let y = checkpoint(x, name: "residual", body)
    let loss = sum(y * y)
    let backwardMACs = countingMultiplyAccumulates { loss.backward() }.multiplyAccumulates
    XCTAssertEqual(backwardMACs, 2 * 4 * 5 * 5 * 27, "the replay computed the sum and the convolution only it reads")
    for (p, c) in zip(plain, [x, w1, w2].map(\.grad)) { assertBitIdentical(p, c) }
  }

  // Optimisation B: the replay reads back what the first pass memoised, in order. BatchNorm2d's
  // batch statistics use the memo; this body reads a scale that changes between the passes (which
  // the contract forbids), so that statistics recomputed in the replay would differ and the test
  // can tell. A replay that asks for a different value stops (rule 6).
  func testOptimisationBReplayReadsTheFirstPassMemo() {
    let norm = BatchNorm2d(channels: 3)
    norm.convert(to: .float64)
    let x = randomLeaf([4, 3, 5, 5], using: &random)
    var scale = 1.0
    let y = checkpoint(x, name: "norm") { v in norm(v * scale) }
    let (mean, variance) = batchNormStatistics(x.value)
    scale = 2
    let seed = Tensor(randomNormal: y.shape, dtype: y.dtype, using: &random)
    y.backward(seed: seed)
    let expected = batchNormBackward(seed, x.value * 2, mean: mean, variance: variance, weight: norm.weight.value, epsilon: 1e-5)
    assertBitIdentical(x.grad!, expected.input * 2)
    assertBitIdentical(norm.weight.grad!, expected.weight)
    assertBitIdentical(norm.bias.grad!, expected.bias)
    var calls = 0
    let computed = checkpoint(x, name: "memo") { v in
      calls += 1
      let kept = firstPassMemo(calls == 1 ? "one tensor" : "another") { [Tensor(ones: [2], dtype: .float64) * Double(calls)] }
      return v * Variable(sum(kept[0]))
    }
    assertStops(withMessageContaining: ["checkpoint 'memo': the replay asks for another where the first pass kept one tensor"], in: self) {
      sum(computed).backward()
    }
  }

  // Optimisation B with nested regions: each region keeps only its own normalisations' statistics,
  // so the outer replay, which runs the inner region as a region, reads back exactly what it kept.
  func testOptimisationBNestedRegionsKeepTheirOwnMemo() {
    let x = randomLeaf([4, 3, 5, 5], using: &random)
    let norms = (0..<3).map { _ in BatchNorm2d(channels: 3) }
    for n in norms { n.convert(to: .float64) }
    let inner: (Variable) -> Variable = { v in norms[1](v * 1.5) }
    let outer: (Variable, Bool) -> Variable = { v, checked in
      let a = norms[0](v, applyingReLU: true)
      let h = checked ? checkpoint(a, name: "inner", inner) : inner(a)
      return norms[2](h + a)
    }
    let leaves = [x] + norms.flatMap(\.parameters)
    let seed = Tensor(randomNormal: x.shape, dtype: .float64, using: &random)
    let plain = gradients(leaves, seed: seed) { outer(x, false) }
    let checked = gradients(leaves, seed: seed) { checkpoint(x, name: "outer") { outer($0, true) } }
    for (i, (p, c)) in zip(plain, checked).enumerated() { assertBitIdentical(p, c, "leaf \(i)") }
  }
}

/// Dropout-like masking from the global generator, in training only (rule 4).
private func dropout(_ x: Variable) -> Variable {
  guard LearningPhase.current == .training else { return x }
  return x * Variable(Tensor(randomBernoulli: x.shape, probability: 0.5, dtype: x.dtype) * 2)
}

/// A composite used by the rule 8 test: a saturating function with several uses of its input.
private func sin1(_ v: Variable) -> Variable { tanh(v) * v - sigmoid(v) }
