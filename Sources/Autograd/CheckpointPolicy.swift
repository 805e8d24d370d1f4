import TensorModule

/// What a checkpoint region keeps from its first pass for its backward pass (contract rule 10), in
/// the spirit of JAX's `checkpoint_policies`: besides its inputs, which every region keeps, the
/// values tagged with ``checkpointName(_:_:)`` under one of ``savedNames`` and the outputs of the
/// operations named in ``savedOperations``. The replay reads a kept value back instead of computing
/// it again. Keeping everything is no region at all.
///
/// Keeping a value saves its recomputation when the operation that produces it computes its value
/// only when read in a replay (convolutions and matrix products: their pullbacks do not need their
/// outputs); the replay still runs what comes before it, since those operations' pullbacks need
/// their own inputs.
public struct CheckpointPolicy: Sendable, Hashable, CustomStringConvertible {
  /// The names, given with ``checkpointName(_:_:)``, of the values the region keeps.
  public var savedNames: Set<String>
  /// The operation names (as recorded: `conv2d`, `matmul`, ...) whose outputs the region keeps.
  public var savedOperations: Set<String>

  /// A policy that keeps the tagged values named `savedNames` and the outputs of the operations
  /// named `savedOperations`.
  public init(savedNames: Set<String> = [], savedOperations: Set<String> = []) {
    (self.savedNames, self.savedOperations) = (savedNames, savedOperations)
  }

  /// Keep nothing but the region's inputs: everything is recomputed (the classic checkpoint).
  public static let nothing = CheckpointPolicy()

  /// Keep the values tagged with these names (JAX's `save_only_these_names`).
  public static func saving(names: Set<String>) -> CheckpointPolicy { CheckpointPolicy(savedNames: names) }

  /// Keep the outputs of these operations.
  public static func saving(operations: Set<String>) -> CheckpointPolicy { CheckpointPolicy(savedOperations: operations) }

  /// Keep the outputs of convolutions and matrix products, recompute the rest (JAX's
  /// `dots_saveable`): the replay then runs only the cheap element-wise operations.
  public static let dotsSaveable = saving(operations: ["conv2d", "mixedConv2d", "batchNormReLUConv2d", "matmul", "linear"])

  /// Whether the region keeps nothing but its inputs.
  public var keepsNothing: Bool { savedNames.isEmpty && savedOperations.isEmpty }

  /// `nothing`, or the saved names and operations (`bottleneck`, `outputs of conv2d, matmul`).
  public var description: String {
    guard !keepsNothing else { return "nothing" }
    let parts = (savedNames.isEmpty ? [] : [savedNames.sorted().joined(separator: ", ")])
      + (savedOperations.isEmpty ? [] : ["outputs of " + savedOperations.sorted().joined(separator: ", ")])
    return parts.joined(separator: "; ")
  }
}

/// Tags `x` with `name` for checkpoint policies and returns it unchanged (JAX's `checkpoint_name`).
///
/// Inside a checkpoint region whose policy saves `name`, the first pass keeps `x`'s value and the
/// replay uses it: if `x` is the output of an operation that computes its value only when read
/// (a convolution), the replay does not compute it again (rule 10). Elsewhere it does nothing.
/// Within a region, tag the same names in the same order in every pass (the body is deterministic).
public func checkpointName(_ x: Variable, _ name: String) -> Variable {
  let context = Context.current
  context.profiler?.noteName(name)
  guard let region = context.region, region.policy.savedNames.contains(name) else { return x }
  let kept = region.memo.value("the value named '\(name)' \(x.shape)") { [x.value] }
  if region.isReplaying { x.resolveDeferred(with: kept[0]) }
  return x
}
