import TensorModule

/// One recorded operation: where its inputs came from, and how to send gradients back to them.
///
/// Entries are ordered by their sequence number, the position at which they were recorded: that
/// order is the tape, and backward walks it in reverse.
final class TapeEntry {
  /// Where an input's gradient goes.
  enum Source {
    /// A constant: no gradient.
    case none
    /// A leaf that accumulates its gradient in ``Variable/grad``.
    case leaf(Variable)
    /// Output `index` of an earlier entry.
    case entry(TapeEntry, Int)
  }

  /// How an entry sends gradients back.
  enum Backward {
    /// A pullback: output gradients in, one gradient (or `nil`) per input out; the tape adds them
    /// to what the inputs have accumulated so far.
    case pullback(([Tensor?]) -> [Tensor?])
    /// A checkpoint region: it takes over the inputs' accumulated gradients and returns them with
    /// its own contributions added, in the order the operations inside would have added them.
    /// It empties `outputGradients` once they are seeded into its replay.
    case region((_ outputGradients: inout [Tensor?], _ accumulated: inout [Tensor?]) -> Void)
  }

  let name: String
  let sequence: Int
  let tape: Tape
  /// Each input's source, shape and dtype, and the strides of its value where it was computed
  /// when recorded: the layout a gradient written out for it takes (see `accumulate`).
  private(set) var inputs: [(source: Source, shape: [Int], dtype: DType, strides: [Int]?)]
  let outputShapes: [[Int]]
  /// Released (set to `nil`) as soon as it has run, freeing what it saved.
  var backward: Backward?
  /// The gradients accumulated for the outputs during a backward pass.
  var gradients: [Tensor?]
  /// For a checkpoint region: the leaves its body reads besides its inputs (parameters the
  /// closure captures), whose gradients its replay adds to.
  var capturedLeaves: [Variable] = []

  init(name: String, inputs: [Variable], outputShapes: [[Int]], backward: Backward, context: Context) {
    self.name = name
    self.sequence = context.nextSequence
    context.nextSequence += 1
    self.tape = context.tape
    self.inputs = inputs.map { input in
      let source: Source
      if let (entry, index) = input.producer {
        if let region = context.replaying, entry.tape !== context.tape {
          fatalError(
            "checkpoint '\(region)': the body uses a value computed outside the region (output of \(entry.name), "
              + "shape \(input.shape)) that is not one of its inputs; pass it as an input")
        }
        source = .entry(entry, index)
      } else {
        source = input.requiresGrad ? .leaf(input) : .none
      }
      return (source, input.shape, input.dtype, input.storedStrides)
    }
    self.outputShapes = outputShapes
    self.backward = backward
    self.gradients = Array(repeating: nil, count: outputShapes.count)
  }

  /// Releases the chain of entries behind this one iteratively: a deep tape released entry by
  /// entry through nested deinits would overflow the stack.
  deinit {
    var pending = takeInputEntries()
    while var entry = pending.popLast() {
      if isKnownUniquelyReferenced(&entry) { pending += entry.takeInputEntries() }
    }
  }

  private func takeInputEntries() -> [TapeEntry] {
    defer { inputs = [] }
    return inputs.compactMap { if case .entry(let e, _) = $0.source { e } else { nil } }
  }
}

/// Records an operation and returns its output: the public way to define a differentiable
/// operation, and the one every built-in operation uses.
///
/// The pullback receives the gradient of the output and returns one gradient per input (or `nil`
/// for inputs that need none). A gradient may have the output's broadcast shape: the tape sums it
/// down to the input's shape. Capture in the pullback only what it needs; it is freed as soon as it
/// has run. When no input requires gradients, or recording is off, nothing is recorded.
/// - Parameters:
///   - name: the operation's name, used in error and anomaly messages.
///   - value: the output, already computed.
///   - inputs: the operands the output depends on.
///   - pullback: the local derivative.
public func recordOperation(
  _ name: String, _ value: Tensor, inputs: [Variable], pullback: @escaping (Tensor) -> [Tensor?]
) -> Variable {
  let context = Context.current
  if context.detectsAnomalies { checkFinite(value, name, "forward") }
  guard inputs.contains(where: \.requiresGrad) else { return Variable(value) }
  guard context.isRecording else {
    context.sawGradient = true
    context.regionLeaves?.note(inputs)
    return Variable(value)
  }
  let entry = TapeEntry(
    name: name, inputs: inputs, outputShapes: [value.shape],
    backward: .pullback { gradients in gradients[0].map(pullback) ?? [] }, context: context)
  context.savedTensors?.note(name, [value], inputs: inputs)
  return Variable(value, producer: (entry, 0))
}

/// Records an operation whose value, during a checkpoint replay, is computed only if something
/// reads it (checkpoint optimisation A), and which a region's policy may keep (rule 10); everywhere else it is `recordOperation(_:_:inputs:pullback:)`
/// with `compute()` as the value.
///
/// For an operation whose pullback does not need its own output, such as a convolution: the last
/// convolution of a region, whose output only leaves the region, is then not recomputed in the
/// backward pass. `compute` must be pure (no random draws, no side effects) and capture what it
/// reads by value.
public func recordOperation(
  _ name: String, deferring compute: @escaping () -> Tensor, shape: [Int], dtype: DType, inputs: [Variable],
  pullback: @escaping (Tensor) -> [Tensor?]
) -> Variable {
  let context = Context.current
  context.profiler?.noteKeepableOperation(name)
  var compute = compute
  if let region = context.region, region.policy.savedOperations.contains(name) {
    // Rule 10: the first pass keeps the value; the replay reads it back instead of computing it.
    let kept = region.memo.value("the output of \(name) \(shape)") { [compute()] }[0]
    compute = { kept }
  }
  guard context.replaying != nil, context.isRecording, inputs.contains(where: \.requiresGrad) else {
    return recordOperation(name, compute(), inputs: inputs, pullback: pullback)
  }
  let entry = TapeEntry(
    name: name, inputs: inputs, outputShapes: [shape],
    backward: .pullback { gradients in gradients[0].map(pullback) ?? [] }, context: context)
  return Variable(deferring: compute, shape: shape, dtype: dtype, producer: (entry, 0))
}

/// Records an operation with several outputs and returns them, like
/// ``recordOperation(_:_:inputs:pullback:)``; the pullback receives one gradient per output, `nil`
/// for outputs that received none.
public func recordOperation(
  _ name: String, _ values: [Tensor], inputs: [Variable], pullback: @escaping ([Tensor?]) -> [Tensor?]
) -> [Variable] {
  let context = Context.current
  if context.detectsAnomalies { for value in values { checkFinite(value, name, "forward") } }
  guard inputs.contains(where: \.requiresGrad) else { return values.map { Variable($0) } }
  guard context.isRecording else {
    context.sawGradient = true
    context.regionLeaves?.note(inputs)
    return values.map { Variable($0) }
  }
  let entry = TapeEntry(
    name: name, inputs: inputs, outputShapes: values.map(\.shape), backward: .pullback(pullback), context: context)
  context.savedTensors?.note(name, values, inputs: inputs)
  return values.enumerated().map { Variable($1, producer: (entry, $0)) }
}

/// Stops the program if `t` holds a NaN or an infinity, naming the operation and the pass.
func checkFinite(_ t: Tensor, _ name: String, _ pass: String) {
  let values = t.scalars(as: Double.self)
  guard let bad = values.firstIndex(where: { !$0.isFinite }) else { return }
  let index = multiIndex(bad, t.shape)
  fatalError("anomaly: \(name) produced \(values[bad]) in the \(pass) pass (shape \(t.shape), first at index \(index))")
}
