import TensorModule

/// The reverse walk of the tape from `roots`, each with the gradient that seeds it.
///
/// Entries reachable from the roots are collected without recursion and visited from the newest to
/// the oldest; each runs once, sends its gradients to its inputs (accumulating, never overwriting)
/// and is released right after, so memory falls as the walk proceeds. The roots are emptied once
/// their gradients are seeded, so that what only they hold (a checkpoint replay's outputs, whose
/// uncomputed values keep their operands) is freed before the walk.
///
/// With `onGradientReady`, each leaf that needs a gradient is announced once its last contribution
/// of this walk has been added: the walk counts, for each leaf, the entries that send it gradients
/// (a checkpoint region counts once, for its inputs and the leaves its first pass read), and
/// announces a leaf between entries when its count reaches zero. A region's replay is one entry
/// here, so no leaf is announced while a replay runs, even though the replay adds to leaves.
func runBackward(from roots: inout [(Variable, Tensor)], onGradientReady: ((Variable) -> Void)? = nil) {
  let context = Context.current
  var entries: [TapeEntry] = []
  var seen = Set<ObjectIdentifier>()
  var stack: [TapeEntry] = []
  for (root, seed) in roots {
    if let (entry, index) = root.producer {
      require(entry.backward != nil, "backward: \(entry.name) was already backpropagated through; its saved values are freed")
      accumulate(seed, into: &entry.gradients[index], shape: root.shape, like: root.storedStrides, entry.name)
      if seen.insert(ObjectIdentifier(entry)).inserted { stack.append(entry) }
    } else if root.requiresGrad {
      accumulate(seed, into: &root.grad, shape: root.shape, like: root.storedStrides, "backward")
    }
  }
  while let entry = stack.popLast() {
    entries.append(entry)
    for case (.entry(let input, _), _, _, _) in entry.inputs {
      if seen.insert(ObjectIdentifier(input)).inserted { stack.append(input) }
    }
  }
  entries.sort { $0.sequence > $1.sequence }
  var readiness = onGradientReady.map { GradientReadiness(entries, rootLeaves: roots.compactMap { $0.0.isLeaf ? $0.0 : nil }, $0) }
  roots = []
  context.with(\.isRecording, false) {
    for (position, entry) in entries.enumerated() {
      run(entry, context)
      readiness?.ran(position)
      context.betweenOperations?()
    }
  }
}

/// Which leaves still wait for gradients from entries not yet run, during one backward walk.
private struct GradientReadiness {
  private var pending: [ObjectIdentifier: Int] = [:]
  /// The leaves each entry of the walk sends gradients to, by position in the walk.
  private let leaves: [[Variable]]
  private let announce: (Variable) -> Void

  init(_ entries: [TapeEntry], rootLeaves: [Variable], _ announce: @escaping (Variable) -> Void) {
    self.announce = announce
    leaves = entries.map(Self.leaves(of:))
    for leaf in leaves.joined() { pending[ObjectIdentifier(leaf), default: 0] += 1 }
    for leaf in rootLeaves where leaf.requiresGrad && pending[ObjectIdentifier(leaf)] == nil { announce(leaf) }
  }

  /// The distinct leaves an entry sends gradients to: its leaf inputs and, for a region, the
  /// leaves its body captures.
  private static func leaves(of entry: TapeEntry) -> [Variable] {
    var seen = Set<ObjectIdentifier>()
    let inputs = entry.inputs.compactMap { input -> Variable? in if case .leaf(let v) = input.source { v } else { nil } }
    return (inputs + entry.capturedLeaves).filter { seen.insert(ObjectIdentifier($0)).inserted }
  }

  /// Counts the contributions of the entry at `position`, which has run, announcing the leaves
  /// that have all of theirs.
  mutating func ran(_ position: Int) {
    for leaf in leaves[position] {
      let id = ObjectIdentifier(leaf)
      guard let count = pending[id] else { continue }
      if count == 1 {
        pending[id] = nil
        announce(leaf)
      } else {
        pending[id] = count - 1
      }
    }
  }
}

private func run(_ entry: TapeEntry, _ context: Context) {
  defer {
    entry.backward = nil
    entry.gradients = []
  }
  guard entry.gradients.contains(where: { $0 != nil }), let backward = entry.backward else { return }
  switch backward {
  case .pullback(let pullback):
    let gradients = pullback(entry.gradients)
    entry.gradients = []
    require(
      gradients.count == entry.inputs.count,
      "\(entry.name): the pullback returned \(gradients.count) gradients for \(entry.inputs.count) inputs; "
        + "return one per input, nil for an input that needs none")
    for (i, gradient) in gradients.enumerated() {
      guard let gradient else { continue }
      if context.detectsAnomalies { checkFinite(gradient, entry.name, "backward") }
      let (source, shape, dtype, strides) = entry.inputs[i]
      require(
        gradient.dtype == dtype,
        "\(entry.name): the pullback's gradient for input \(i) is \(gradient.dtype), the input is \(dtype) (shape \(shape))")
      require(
        gradient.shape == shape || (gradient.rank >= shape.count && Shape.broadcast(shape, gradient.shape) == gradient.shape),
        "\(entry.name): the pullback's gradient for input \(i) has shape \(gradient.shape), which does not reduce to the input's shape \(shape)")
      switch source {
      case .none: break
      case .leaf(let leaf): accumulate(gradient, into: &leaf.grad, shape: shape, like: strides, entry.name)
      case .entry(let input, let index):
        require(input.backward != nil, "backward: \(input.name) was already backpropagated through; its saved values are freed")
        accumulate(gradient, into: &input.gradients[index], shape: shape, like: strides, entry.name)
      }
    }
  case .region(let replay):
    var accumulated: [Tensor?] = entry.inputs.map { input in
      guard case .entry(let e, let index) = input.source else { return nil }
      require(e.backward != nil, "backward: \(e.name) was already backpropagated through; its saved values are freed")
      defer { e.gradients[index] = nil }
      return e.gradients[index]
    }
    replay(&entry.gradients, &accumulated)
    for (i, input) in entry.inputs.enumerated() {
      guard case .entry(let e, let index) = input.source, let gradient = accumulated[i] else { continue }
      require(gradient.shape == input.shape, "\(entry.name): gradient \(gradient.shape) does not match input \(input.shape)")
      e.gradients[index] = gradient
    }
  }
}

/// Adds `gradient` to an accumulator, first summing a gradient of a broadcast shape down to
/// `shape`. A gradient with repeated elements (a zero stride, as a sum's pullback returns) is added
/// as it is, and written out where it is the first: what the pullbacks receive has no repeats. It is
/// written out in the layout of the value it is the gradient of (`strides`, when known), as the
/// other gradients of that value are: a global pooling's gradient of a channel-major feature map,
/// laid out row-major, would leave every gradient summed into it row-major, and the kernels that
/// read it beside the map (a residual block's backward pass) to their strided paths.
func accumulate(_ gradient: Tensor, into slot: inout Tensor?, shape: [Int], like strides: [Int]?, _ name: String) {
  let g = gradient.shape == shape ? gradient : unbroadcast(gradient, to: shape, name)
  if slot == nil {
    let repeats = zip(g.shape, g.strides).contains { $0 > 1 && $1 == 0 }
    slot = !repeats ? g : strides.map { g.laidOut(like: $0) } ?? g.contiguous()
  } else {
    slot! += g  // in place once the slot owns its buffer
  }
}

/// Sums `gradient` over the dimensions along which a value of `shape` was broadcast: the one place
/// where broadcasting is undone.
func unbroadcast(_ gradient: Tensor, to shape: [Int], _ name: String) -> Tensor {
  let lead = gradient.rank - shape.count
  require(
    lead >= 0 && Shape.broadcast(shape, gradient.shape) == gradient.shape,
    "\(name): gradient of shape \(gradient.shape) does not reduce to input shape \(shape)")
  let axes = (0..<gradient.rank).filter { $0 < lead || (shape[$0 - lead] == 1 && gradient.shape[$0] != 1) }
  return reshape(sum(gradient, alongAxes: axes, keepingDimensions: true), to: shape)
}
