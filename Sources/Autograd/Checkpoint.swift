import TensorModule

// NOTE: The checkpoint contract (docs/checkpointing.md). The code cites these rules by number;
// rules 1-10 define what checkpointing means, optimisations A and B only make it cheaper and never
// change a value.
//
// Rule 1. `checkpoint` runs its body without recording. After the forward pass the region keeps
//         only its inputs and what its policy names (rule 10); its outputs are held by whatever
//         uses them. Nothing else computed inside is retained.
// Rule 2. In backward, the body is replayed on a tape of its own from the same inputs, then
//         differentiated; that tape is freed as soon as the region's gradients are out.
// Rule 3. Gradients reach the region's inputs and every parameter the body uses, including those
//         the closure captures instead of receiving them.
// Rule 4. Replay sees the same world: the global random generator and the learning phase are
//         restored to what they were on entry, and the surrounding state is put back after.
// Rule 5. Side effects happen once: code under `onFirstPass` does not run during a replay.
// Rule 6. A replay that produces a different number or shapes of outputs than the first pass, or
//         asks for a kept value the first pass did not keep at that point, stops with a message
//         naming the region.
// Rule 7. Regions nest. Inputs that need no gradient, outputs that are unused or used twice, and
//         bodies without parameters all work.
// Rule 8. With and without checkpointing, under every policy and plan, gradients and running
//         statistics are identical: the replay does the same arithmetic in the same order, and
//         the region takes over its inputs' accumulated gradients so that even sums of several
//         contributions are added in the order the unchecked graph adds them.
// Rule 9. `checkpointed(_:segments:)` splits a sequence of steps into segments, each one region.
// Rule 10. A region's policy (`CheckpointPolicy`) names what its first pass keeps besides its
//         inputs: values tagged with `checkpointName` under a saved name, and outputs of saved
//         operations. The replay uses each kept value instead of computing it again.
//
// Optimisation A. The replay computes only what the backward pass reads: an operation recorded
//         with a deferred value (convolutions and sums, whose pullbacks do not need their
//         outputs) computes it only when something reads it, so a region's last convolution or
//         closing sum, whose output only leaves the region, is not recomputed. Outside a replay
//         every value is computed at once.
// Optimisation B. A first-pass memo (`firstPassMemo`) keeps values the first pass computed, in call
//         order, for the replay to read back instead of recomputing: batch statistics
//         (BatchNorm2d's use of it) and the values a policy keeps (rule 10). Each region has its
//         own; a region nested in another's first pass runs plainly there and keeps its values
//         when it runs as a region in the outer replay.

/// Runs `body` on `inputs` as a checkpoint region: its intermediate values are dropped after the
/// forward pass and recomputed during the backward pass, except what `policy` keeps.
///
/// - Parameters:
///   - inputs: the values the body reads that come from outside it and may need gradients.
///     Parameters may be captured by the closure instead (rule 3); other recorded values must be
///     passed here.
///   - policy: what the region keeps besides its inputs (rule 10); by default nothing.
///   - name: names the region in error messages.
///   - body: the computation; it must be deterministic given its inputs, the random generator and
///     the learning phase.
/// - Returns: the body's outputs.
public func checkpoint(
  _ inputs: [Variable], policy: CheckpointPolicy = .nothing, name: String = "checkpoint",
  _ body: @escaping ([Variable]) -> [Variable]
) -> [Variable] {
  checkpoint(inputs, policy: policy, name: name, observer: nil, body)
}

/// Runs `body` on `input` as a checkpoint region with one input and one output.
public func checkpoint(
  _ input: Variable, policy: CheckpointPolicy = .nothing, name: String = "checkpoint", _ body: @escaping (Variable) -> Variable
) -> Variable {
  checkpoint([input], policy: policy, name: name) { [body($0[0])] }[0]
}

/// A checkpoint region whose backward pass `observer` (the planner's profile) is told about.
func checkpoint(
  _ inputs: [Variable], policy: CheckpointPolicy, name: String, observer: RegionObserver?,
  _ body: @escaping ([Variable]) -> [Variable]
) -> [Variable] {
  let context = Context.current
  // Not recording (inside an enclosing region's first pass, say): no region of its own; it keeps
  // nothing for the enclosing region either, since the enclosing replay runs it as a region (B).
  guard context.isRecording else { return context.with(\.region, nil) { body(inputs) } }
  let entryState = context.ambient  // Rule 4
  let region = RegionState(name: name, policy: policy)  // Rule 10, optimisation B
  // Rule 1: the first pass records nothing; it only notes whether anything inside needs gradients.
  let leaves = LeafSet()  // What the replay will send gradients to, for readiness (Backward.swift).
  let (outputs, needsGradient) = context.with(\.sawGradient, false) {
    let outputs = context.with(\.isRecording, false) {
      context.with(\.region, region) { context.with(\.regionLeaves, leaves) { body(inputs) } }
    }
    return (outputs.map(\.value), context.sawGradient || inputs.contains(where: \.requiresGrad))
  }
  guard needsGradient else { return outputs.map { Variable($0) } }
  let shapes = outputs.map(\.shape)
  context.savedTensors?.note("checkpoint '\(name)'", outputs + region.memo.tensors)
  let entry = TapeEntry(
    name: "checkpoint '\(name)'", inputs: inputs, outputShapes: shapes,
    backward: .region { outputGradients, accumulated in
      observer?.willReplay()
      replay(region, body, inputs, shapes, entryState, &outputGradients, &accumulated, observer)
      observer?.didFinishBackward()
    }, context: context)
  entry.capturedLeaves = leaves.leaves
  return outputs.enumerated().map { Variable($1, producer: (entry, $0)) }
}

/// Told when a region's backward pass starts, when its replay has run, and when its gradients are out.
protocol RegionObserver: AnyObject {
  func willReplay()
  func didReplay()
  func didFinishBackward()
}

/// The backward pass of one region (rule 2).
private func replay(
  _ region: RegionState, _ body: ([Variable]) -> [Variable], _ inputs: [Variable], _ shapes: [[Int]],
  _ entryState: Context.Ambient, _ outputGradients: inout [Tensor?], _ accumulated: inout [Tensor?],
  _ observer: RegionObserver?
) {
  let context = Context.current, name = region.name
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
  region.startReplay()  // Rule 10, optimisation B
  var outputs = context.with(\.tape, Tape()) {
    context.with(\.replaying, name) {
      context.with(\.region, region) {
        context.with(\.isRecording, true) { body(standIns) }
      }
    }
  }
  context.ambient = surrounding
  observer?.didReplay()
  let replayed = outputs.map(\.shape)
  if replayed != shapes {  // Rule 6
    fatalError(
      "checkpoint '\(name)': the replay produced \(replayed.count) outputs of shapes \(replayed), "
        + "the first pass \(shapes.count) of shapes \(shapes); the body must be deterministic")
  }
  // The outputs and their gradients go with the seeding: an output nothing read keeps its
  // uncomputed value's operands (optimisation A), which would otherwise outlive their use.
  var roots = zip(outputs, outputGradients).compactMap { output, gradient in gradient.map { (output, $0) } }
  (outputs, outputGradients) = ([], [])
  runBackward(from: &roots)
  for (i, input) in inputs.enumerated() where !input.isLeaf { accumulated[i] = standIns[i].grad }
}

/// Applies `steps` in order, as `segments` checkpoint regions of consecutive steps (rule 9).
///
/// Like PyTorch's `checkpoint_sequential`, the last segment runs unchecked: its values are needed
/// first in the backward pass anyway.
/// - `segments`: how many pieces; by default about the square root of the step count
///   (Chen et al. 2016), which balances the memory of the kept boundaries against one segment's.
public func checkpointed(
  _ steps: [(Variable) -> Variable], segments: Int? = nil, policy: CheckpointPolicy = .nothing, name: String = "segment",
  _ input: Variable
) -> Variable {
  let count = steps.count
  let segments = min(max(1, segments ?? Int(Double(count).squareRoot().rounded())), max(count, 1))
  var x = input
  for s in 0..<segments {
    let piece = steps[count * s / segments..<count * (s + 1) / segments]
    let run: (Variable) -> Variable = { piece.reduce($0) { value, step in step(value) } }
    x = s == segments - 1 ? run(x) : checkpoint(x, policy: policy, name: "\(name) \(s + 1) of \(segments)", run)
  }
  return x
}
