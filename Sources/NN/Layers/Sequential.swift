import Autograd

/// Layers applied one after another.
public final class Sequential: Layer {
  /// The layers with their names (PyTorch uses "0", "1", ... when none are given).
  public let layers: [(name: String, layer: any Layer)]

  /// Named layers, in order.
  public init(_ layers: [(name: String, layer: any Layer)]) { self.layers = layers }

  /// Layers named "0", "1", ... in order.
  public init(_ layers: [any Layer]) { self.layers = layers.enumerated().map { ("\($0.offset)", $0.element) } }

  /// The layers.
  public var children: [(name: String, module: any Module)] { layers.map { ($0.name, $0.layer) } }

  /// The layers applied in order.
  public func callAsFunction(_ input: Variable) -> Variable {
    layers.reduce(input) { x, entry in entry.layer(x) }
  }

  /// The same layers run as checkpoint segments (contract rule 9): each segment keeps only its
  /// input in the forward pass and is replayed in backward; the last segment runs unchecked.
  ///
  /// - Parameter segments: about sqrt(layer count) when `nil`.
  public func checkpointed(segments: Int? = nil) -> CheckpointedSequential {
    CheckpointedSequential(self, segments: segments)
  }
}

/// A ``Sequential`` whose forward pass runs in checkpoint segments. It has the same parameters
/// and names as the sequential it wraps.
public final class CheckpointedSequential: Layer {
  /// The wrapped layers.
  public let sequential: Sequential
  /// The number of segments, or `nil` for about sqrt(layer count).
  public let segments: Int?

  init(_ sequential: Sequential, segments: Int?) { (self.sequential, self.segments) = (sequential, segments) }

  /// The wrapped sequential's layers, under the same names.
  public var children: [(name: String, module: any Module)] { sequential.children }

  /// The layers applied in order, in checkpoint segments.
  public func callAsFunction(_ input: Variable) -> Variable {
    checkpointed(sequential.layers.map { entry in { entry.layer($0) } }, segments: segments, input)
  }
}
