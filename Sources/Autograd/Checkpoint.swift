import TensorModule

// NOTE: The checkpoint contract (DESIGN.md). The code below cites these rules by number.
//
// Rule 1. `checkpoint` runs its body without recording. After the forward pass the region keeps
//         only its inputs (its outputs are held by whatever uses them). Nothing computed inside
//         is retained.
// Rule 2. In backward, the body is replayed on a tape of its own from the same inputs, then
//         differentiated; that tape is freed as soon as the region's gradients are out.
// Rule 3. Gradients reach the region's inputs and every parameter the body uses, including those
//         the closure captures instead of receiving them.
// Rule 4. Replay sees the same world: the global random generator and the learning phase are
//         restored to what they were on entry, and the surrounding state is put back after.
// Rule 5. Side effects happen once: code under `onFirstPass` does not run during a replay.
// Rule 6. A replay that produces a different number or shapes of outputs than the first pass
//         stops with a message naming the region.
// Rule 7. Regions nest. Inputs that need no gradient, outputs that are unused or used twice, and
//         bodies without parameters all work.
// Rule 8. With and without checkpointing, gradients and running statistics are identical: the
//         replay does the same arithmetic in the same order, and the region takes over its inputs'
//         accumulated gradients so that even sums of several contributions are added in the order
//         the unchecked graph adds them.
// Rule 9. `checkpointed(_:segments:)` splits a sequence of steps into segments, each one region.
// Rule 10. The replay computes only what the backward pass reads: an operation recorded with a
//         deferred value (convolutions, whose pullbacks do not need their outputs) computes it
//         only when something reads it, so a region's last convolution, whose output only leaves
//         the region, is not recomputed. Outside a replay every value is computed at once.
// Rule 11. Batch statistics are computed once: the first pass keeps the per-channel mean and
//         variance of every training-mode normalisation directly in the region (not in regions
//         nested in it), and the replay reads them back in the same order instead of going over
//         the feature maps again. They are the same bits the replay would compute (rule 8); a
//         replay that normalises a different number of channels stops with a message (rule 6).

/// Runs `body` on `inputs` as a checkpoint region: its intermediate values are dropped after the
/// forward pass and recomputed during the backward pass.
///
/// - Parameters:
///   - inputs: the values the body reads that come from outside it and may need gradients.
///     Parameters may be captured by the closure instead (rule 3); other recorded values must be
///     passed here.
///   - name: names the region in error messages.
///   - body: the computation; it must be deterministic given its inputs, the random generator and
///     the learning phase.
/// - Returns: the body's outputs.
public func checkpoint(
  _ inputs: [Variable], name: String = "checkpoint", _ body: @escaping ([Variable]) -> [Variable]
) -> [Variable] {
  let context = Context.current
  // Not recording (inside an enclosing region's first pass, say): no region of its own, and its
  // normalisations belong to no enclosing region's statistics either, since the enclosing region's
  // replay will run this one as a region (rule 11).
  guard context.isRecording else { return context.with(\.statistics, nil) { body(inputs) } }
  let entryState = context.ambient  // Rule 4
  let statistics = RegionStatistics(region: name)  // Rule 11
  // Rule 1: the first pass records nothing; it only notes whether anything inside needs gradients.
  let (outputs, needsGradient) = context.with(\.sawGradient, false) {
    let outputs = context.with(\.isRecording, false) { context.with(\.statistics, statistics) { body(inputs) } }
    return (outputs.map(\.value), context.sawGradient || inputs.contains(where: \.requiresGrad))
  }
  guard needsGradient else { return outputs.map { Variable($0) } }
  let shapes = outputs.map(\.shape)
  let entry = TapeEntry(
    name: "checkpoint '\(name)'", inputs: inputs, outputShapes: shapes,
    backward: .region { outputGradients, accumulated in
      replay(name, body, inputs, shapes, entryState, statistics, outputGradients, &accumulated)
    }, context: context)
  return outputs.enumerated().map { Variable($1, producer: (entry, $0)) }
}

/// Runs `body` on `input` as a checkpoint region with one input and one output.
public func checkpoint(_ input: Variable, name: String = "checkpoint", _ body: @escaping (Variable) -> Variable) -> Variable {
  checkpoint([input], name: name) { [body($0[0])] }[0]
}

/// The backward pass of one region (rule 2).
private func replay(
  _ name: String, _ body: ([Variable]) -> [Variable], _ inputs: [Variable], _ shapes: [[Int]],
  _ entryState: Context.Ambient, _ statistics: RegionStatistics, _ outputGradients: [Tensor?],
  _ accumulated: inout [Tensor?]
) {
  let context = Context.current
  // Leaves are used as they are, so their gradients accumulate where they always do (rule 3);
  // recorded inputs are replaced by leaves that start from the gradient accumulated so far (rule 8).
  let standIns = inputs.enumerated().map { i, input -> Variable in
    guard !input.isLeaf else { return input }
    let standIn = Variable(input.value, requiresGrad: true)
    standIn.grad = accumulated[i]
    standIn.gradientSink = input.gradientSink  // the same view: its gradient may go to the same place
    return standIn
  }
  let surrounding = context.ambient
  context.ambient = entryState  // Rule 4
  statistics.startReplay()  // Rule 11
  let outputs = context.with(\.tape, Tape()) {
    context.with(\.replaying, name) {
      context.with(\.statistics, statistics) {
        context.with(\.isRecording, true) { body(standIns) }
      }
    }
  }
  context.ambient = surrounding
  let replayed = outputs.map(\.shape)
  if replayed != shapes {  // Rule 6
    fatalError(
      "checkpoint '\(name)': the replay produced \(replayed.count) outputs of shapes \(replayed), "
        + "the first pass \(shapes.count) of shapes \(shapes); the body must be deterministic")
  }
  let roots = zip(outputs, outputGradients).compactMap { output, gradient in gradient.map { (output, $0) } }
  runBackward(from: roots)
  for (i, input) in inputs.enumerated() where !input.isLeaf { accumulated[i] = standIns[i].grad }
}

/// Applies `steps` in order, as `segments` checkpoint regions of consecutive steps (rule 9).
///
/// Like PyTorch's `checkpoint_sequential`, the last segment runs unchecked: its values are needed
/// first in the backward pass anyway.
/// - Parameter segments: how many pieces; by default about the square root of the step count
///   (Chen et al. 2016), which balances the memory of the kept boundaries against one segment's.
public func checkpointed(
  _ steps: [(Variable) -> Variable], segments: Int? = nil, name: String = "segment", _ input: Variable
) -> Variable {
  let count = steps.count
  let segments = min(max(1, segments ?? Int(Double(count).squareRoot().rounded())), max(count, 1))
  var x = input
  for s in 0..<segments {
    let piece = steps[count * s / segments..<count * (s + 1) / segments]
    let run: (Variable) -> Variable = { piece.reduce($0) { value, step in step(value) } }
    x = s == segments - 1 ? run(x) : checkpoint(x, name: "\(name) \(s + 1) of \(segments)", run)
  }
  return x
}

/// The batch statistics a checkpoint region's first pass computed, in order, for its replay
/// (rule 11).
final class RegionStatistics {
  private let region: String
  private var kept: [(mean: Tensor, variance: Tensor)] = []
  private var next: Int?

  init(region: String) { self.region = region }

  /// From now on ``statistics(of:)`` reads the kept values back from the first.
  func startReplay() { next = 0 }

  /// The per-channel batch mean and biased variance of `x`: computed and kept in the first pass,
  /// read back in the replay.
  func statistics(of x: Tensor) -> (mean: Tensor, variance: Tensor) {
    guard let i = next else {
      let computed = batchNormStatistics(x)
      kept.append(computed)
      return computed
    }
    if i >= kept.count || kept[i].mean.shape != [x.shape[1]] {
      fatalError(
        "checkpoint '\(region)': normalisation \(i + 1) of the replay has input \(x.shape), the first pass "
          + (i < kept.count ? "normalised \(kept[i].mean.shape[0]) channels there" : "only \(kept.count) normalisations")
          + "; the body must be deterministic")
    }
    next = i + 1
    return kept[i]
  }
}

/// The per-channel batch mean and biased variance of `x` for a training-mode normalisation: the
/// caller's when `given`, otherwise inside a checkpoint region computed once, in the first pass
/// (rule 11).
func batchStatistics(
  _ x: Tensor, given: (mean: Tensor, variance: Tensor)?, _ operation: String
) -> (mean: Tensor, variance: Tensor) {
  guard let given else { return Context.current.statistics?.statistics(of: x) ?? batchNormStatistics(x) }
  let channels = x.rank == 4 ? x.shape[1] : -1
  require(
    given.mean.shape == [channels] && given.variance.shape == [channels] && given.mean.dtype == x.dtype
      && given.variance.dtype == x.dtype,
    "\(operation): statistics \(given.mean.shape) and \(given.variance.shape) (\(given.mean.dtype)) do not fit input \(x.shape) (\(x.dtype))")
  return given
}
