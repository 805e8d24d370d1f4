import Autograd

/// Layers applied one after another: a ``Composition``, so a checkpoint plan may make any run of
/// its layers a region (``CheckpointPlan/segments(_:of:)``, Chen et al.'s sqrt(n) segments).
public final class Sequential: Composition {
  /// The layers with their names (PyTorch uses "0", "1", ... when none are given).
  public let layers: [(name: String, layer: any Layer)]

  /// Named layers, in order.
  public init(_ layers: [(name: String, layer: any Layer)]) { self.layers = layers }

  /// Layers named "0", "1", ... in order.
  public init(_ layers: [any Layer]) { self.layers = layers.enumerated().map { ("\($0.offset)", $0.element) } }

  /// The layers.
  public var children: [(name: String, module: any Module)] { layers.map { ($0.name, $0.layer) } }

  /// The layers.
  public var composedLayers: [(name: String, layer: any Layer)] { layers }
}
