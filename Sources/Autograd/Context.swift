#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TensorModule

/// Whether layers behave as in training (batch statistics, dropout) or in inference.
public enum LearningPhase: Sendable {
  /// Training behaviour.
  case training
  /// Inference behaviour.
  case inference

  /// The learning phase of the current thread (`.training` unless a ``withLearningPhase(_:_:)``
  /// scope says otherwise).
  public static var current: LearningPhase { Context.current.learningPhase }
}

/// The per-thread state of differentiation: whether operations are recorded, the learning phase,
/// whether a checkpoint replay is running, anomaly detection, and the tape being written.
final class Context {
  var isRecording = true
  var learningPhase = LearningPhase.training
  /// The checkpoint region being replayed, or `nil` outside any replay.
  var replaying: String?
  var detectsAnomalies = false
  /// Identity of the tape being written; a replay writes a tape of its own.
  var tape = Tape()
  var nextSequence = 0
  /// Set when an unrecorded checkpoint body uses a value that requires gradients.
  var sawGradient = false
  /// Multiply-accumulates counted by convolutions and matrix products, when counting: as the
  /// model defines them, and as performed.
  var multiplyAccumulates: (asDefined: Int, computed: Int)?
  /// The innermost checkpoint region running: its policy and first-pass memo (rule 10,
  /// optimisation B).
  var region: RegionState?
  /// The checkpoint plan in force: which units run as regions (``withCheckpointPlan(_:_:)``).
  var plan: UnitRegions?
  /// Measures units for the checkpoint planner, when profiling.
  var profiler: UnitProfiler?
  /// Notes what recorded operations return, when reporting saved tensors.
  var savedTensors: SavedTensorCollector?
  /// The leaves that need gradients read by the first pass of the checkpoint region being
  /// created, which records nothing: the backward pass learns from it which leaves the region's
  /// replay will send gradients to.
  var regionLeaves: LeafSet?
  /// Called after each operation's backward step, at every level (replays included).
  var betweenOperations: (() -> Void)?

  private static let key: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { Unmanaged<Context>.fromOpaque($0!).release() }
    return key
  }()

  static var current: Context {
    if let p = pthread_getspecific(key) { return Unmanaged<Context>.fromOpaque(p).takeUnretainedValue() }
    let context = Context()
    pthread_setspecific(key, Unmanaged.passRetained(context).toOpaque())
    return context
  }

  /// Everything a checkpoint restores for its replay (contract rule 4).
  struct Ambient {
    var generator: RandomGenerator
    var learningPhase: LearningPhase
  }

  var ambient: Ambient {
    get { Ambient(generator: RandomGenerator.global, learningPhase: learningPhase) }
    set {
      RandomGenerator.global = newValue.generator
      learningPhase = newValue.learningPhase
    }
  }

  /// Runs `body` with `keyPath` set to `value`, restoring the previous value afterwards.
  func with<T, R>(_ keyPath: ReferenceWritableKeyPath<Context, T>, _ value: T, _ body: () throws -> R) rethrows -> R {
    let saved = self[keyPath: keyPath]
    self[keyPath: keyPath] = value
    defer { self[keyPath: keyPath] = saved }
    return try body()
  }
}

/// A set of leaves, in the order first seen.
final class LeafSet {
  private(set) var leaves: [Variable] = []
  private var seen = Set<ObjectIdentifier>()

  func note(_ inputs: [Variable]) {
    for input in inputs where input.isLeaf && input.requiresGrad {
      if seen.insert(ObjectIdentifier(input)).inserted { leaves.append(input) }
    }
  }
}

/// The identity of one tape: the top-level one of a thread, or one checkpoint replay's.
final class Tape {}

/// Runs `body` without recording operations: results are constants, nothing is retained for a
/// backward pass. Use it for evaluation and for updates of parameters.
public func withoutRecording<R>(_ body: () throws -> R) rethrows -> R {
  try Context.current.with(\.isRecording, false, body)
}

/// Runs `body` in the given learning phase, restoring the previous one afterwards.
public func withLearningPhase<R>(_ phase: LearningPhase, _ body: () throws -> R) rethrows -> R {
  try Context.current.with(\.learningPhase, phase, body)
}

/// Runs `body` with anomaly detection: the first operation whose forward value or whose gradient
/// contains a NaN or an infinity stops the program with a message naming the operation, the pass
/// and the first bad element.
public func withAnomalyDetection<R>(_ body: () throws -> R) rethrows -> R {
  try Context.current.with(\.detectsAnomalies, true, body)
}

/// Whether operations are being recorded on this thread now.
public var isRecording: Bool { Context.current.isRecording }

/// Runs `body` unless this is a checkpoint replay, so a side effect (such as updating batch-norm
/// running statistics) happens once per step however often the code around it is replayed
/// (checkpoint contract rule 5).
public func onFirstPass(_ body: () throws -> Void) rethrows {
  let context = Context.current
  // What runs only once keeps nothing for a replay that will not read it (optimisation B).
  if context.replaying == nil { try context.with(\.region, nil, body) }
}

/// Runs `body` and counts the multiply-accumulates of the convolutions and matrix products it
/// performs (the "FLOPs" of model tables, which count one multiply-add as one).
///
/// - Returns: `multiplyAccumulates`, the count of the computation as the model defines it (the
///   papers' and torchvision's convention), and `computedMultiplyAccumulates`, what was performed;
///   they differ where a layer computes the same function with less work
///   (``countingAsDefined(_:_:)``).
public func countingMultiplyAccumulates<R>(
  _ body: () throws -> R
) rethrows -> (result: R, multiplyAccumulates: Int, computedMultiplyAccumulates: Int) {
  let context = Context.current
  let outer = context.multiplyAccumulates
  context.multiplyAccumulates = (0, 0)
  defer {
    let inner = context.multiplyAccumulates ?? (0, 0)
    context.multiplyAccumulates = outer.map { ($0.asDefined + inner.asDefined, $0.computed + inner.computed) }
  }
  let result = try body()
  let counted = context.multiplyAccumulates ?? (0, 0)
  return (result, counted.asDefined, counted.computed)
}

/// Runs `body`, which computes part of a model in another form than the model defines it (the
/// same function with less work, such as a transition that pools before its 1x1 convolution), and
/// counts `definedMultiplyAccumulates` for it as defined while counting its own work as computed.
public func countingAsDefined<R>(_ definedMultiplyAccumulates: @autoclosure () -> Int, _ body: () throws -> R) rethrows -> R {
  let context = Context.current
  guard let outer = context.multiplyAccumulates else { return try body() }
  let (result, _, computed) = try countingMultiplyAccumulates(body)
  context.multiplyAccumulates = (outer.asDefined + definedMultiplyAccumulates(), outer.computed + computed)
  return result
}

/// Adds to the multiply-accumulate count when counting is on.
func countMultiplyAccumulates(_ count: @autoclosure () -> Int) {
  let context = Context.current
  guard let counted = context.multiplyAccumulates else { return }
  let n = count()
  context.multiplyAccumulates = (counted.asDefined + n, counted.computed + n)
}
