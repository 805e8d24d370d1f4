import TensorModule

/// A tensor that takes part in differentiation: a leaf (an input or a parameter) or the output of a
/// recorded operation.
///
/// Leaves that require gradients receive them in ``grad`` when ``backward(seed:)`` runs; gradients
/// accumulate (`+=`) across backward passes until set to `nil`. An operation's output keeps the
/// tape entry that produced it, and through it the part of the tape it depends on, so a forward
/// pass that is dropped frees itself.
public final class Variable {
  /// The current value. Optimisers assign new values to parameters between steps.
  ///
  /// In a checkpoint replay, the output of an operation recorded with a deferred value is
  /// computed the first time it is read here (checkpoint rule 10).
  public var value: Tensor {
    get {
      if let stored { return stored }
      let computed = deferred!.compute()
      (stored, deferred) = (computed, nil)
      return computed
    }
    set { (stored, deferred) = (newValue, nil) }
  }
  private var stored: Tensor?
  /// The strides of the value where it is computed, without computing a deferred one.
  var storedStrides: [Int]? { stored?.strides }
  private var deferred: (compute: () -> Tensor, shape: [Int], dtype: DType)?
  /// The accumulated gradient of a leaf, or `nil` before any backward pass has reached it.
  public var grad: Tensor?
  /// A name for messages and state files (parameters use dotted PyTorch names).
  public var name: String?
  private var leafRequiresGrad: Bool
  /// The tape entry that computed this value, and which of its outputs it is.
  let producer: (entry: TapeEntry, index: Int)?
  /// For a view of a shared buffer of channels: where consumers may add its gradient in place
  /// (``recordChannelView(_:name:channels:pieces:)``).
  var gradientSink: ChannelViewSink?

  /// A leaf holding `value`.
  ///
  /// - `requiresGrad`: whether backward passes compute and accumulate its gradient.
  public init(_ value: Tensor, requiresGrad: Bool = false, name: String? = nil) {
    self.stored = value
    self.leafRequiresGrad = requiresGrad
    self.name = name
    self.producer = nil
  }

  init(_ value: Tensor, producer: (TapeEntry, Int)) {
    self.stored = value
    self.leafRequiresGrad = false
    self.producer = producer
  }

  /// An output whose value `compute` produces when it is first read.
  init(deferring compute: @escaping () -> Tensor, shape: [Int], dtype: DType, producer: (TapeEntry, Int)) {
    self.deferred = (compute, shape, dtype)
    self.leafRequiresGrad = false
    self.producer = producer
  }

  /// Runs `body` on the value with no other reference to it from this variable, so that an update
  /// may write over its memory when nothing else holds it (``Tensor`` copies share their buffer).
  package func updateValue(_ body: (inout Tensor) -> Void) {
    var v = value
    (stored, deferred) = (nil, nil)
    body(&v)
    stored = v
  }

  /// Gives a deferred value the tensor a checkpoint region kept for it instead of computing it
  /// (contract rule 10); a value already computed stays as it is (the same bits, rule 8).
  func resolveDeferred(with kept: Tensor) {
    guard stored == nil else { return }
    (stored, deferred) = (kept, nil)
  }

  /// True for inputs and parameters, false for the outputs of recorded operations.
  public var isLeaf: Bool { producer == nil }

  /// Whether gradients flow to this value: set by hand for leaves, true for recorded outputs.
  public var requiresGrad: Bool {
    get { producer != nil || leafRequiresGrad }
    set {
      require(isLeaf, "requiresGrad: only a leaf's flag can be set (this is the output of \(producer!.entry.name))")
      leafRequiresGrad = newValue
    }
  }

  /// The shape of ``value``.
  public var shape: [Int] { stored?.shape ?? deferred!.shape }
  /// The element type of ``value``.
  public var dtype: DType { stored?.dtype ?? deferred!.dtype }

  /// A leaf with the same value that no gradient flows through.
  public func detached() -> Variable { Variable(value) }

  /// Backpropagates from this value through the operations recorded since its leaves, accumulating
  /// into the ``grad`` of every leaf that requires gradients.
  ///
  /// Each entry's saved tensors are freed as soon as its pullback has run, so a second backward
  /// pass through the same operations is an error.
  /// - Parameter seed: the gradient of this value; ones for a scalar when `nil`.
  /// - Precondition: the seed has this value's shape; a `nil` seed needs a one-element value.
  public func backward(seed: Tensor? = nil) {
    backward(seed: seed, onGradientReady: nil, betweenOperations: nil)
  }

  /// ``backward(seed:)`` that reports its progress, for code that acts on gradients while the
  /// backward pass goes on (data-parallel training sends each gradient to the other processes as
  /// soon as it is complete).
  ///
  /// - Parameters:
  ///   - seed: the gradient of this value; ones for a scalar when `nil`.
  ///   - onGradientReady: called once for each leaf that requires gradients and receives one in
  ///     this pass, as soon as its last contribution of the pass has been added to its ``grad``.
  ///     It is called between operations and never while a checkpoint region is replayed: a
  ///     region's replay adds to the leaves its body uses, and they are complete only once it has
  ///     finished. A leaf no operation of the pass sends a gradient to is not reported.
  ///   - betweenOperations: called after each operation's backward step, including those of
  ///     checkpoint replays (to make progress on communication, say).
  public func backward(seed: Tensor? = nil, onGradientReady: ((Variable) -> Void)?, betweenOperations: (() -> Void)? = nil) {
    let seed = seed ?? {
      require(value.count == 1, "backward: a seed is needed for a value of shape \(shape); only one-element values default to 1")
      return Tensor(repeating: 1, shape: shape, dtype: dtype)
    }()
    require(seed.shape == shape, "backward: seed has shape \(seed.shape), value has shape \(shape)")
    var roots = [(self, seed)]
    Context.current.with(\.betweenOperations, betweenOperations) {
      runBackward(from: &roots, onGradientReady: onGradientReady)
    }
  }
}

extension Variable: CustomStringConvertible {
  /// The value, and where it came from.
  public var description: String {
    let origin = producer.map { "output of \($0.entry.name)" } ?? (requiresGrad ? "leaf, requires grad" : "leaf")
    return "Variable(\(name.map { "\($0), " } ?? "")\(origin)): \(value)"
  }
}
