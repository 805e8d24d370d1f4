import Autograd
import TensorModule

/// One growing buffer of feature maps along channels, the "shared storage" of the memory-efficient
/// DenseNet (Pleiss et al. 2017): a block's input and every layer's new channels are written into
/// one channel-major allocation, and the concatenation of everything so far is a view of its first
/// channels, not a copy. Feature-map memory is then linear in the number of layers.
///
/// Appending is differentiable: its pullback splits the gradient of the view into the part for the
/// earlier channels and the part for the appended ones.
public final class FeatureBuffer {
  private let storage: Tensor
  private var current: Variable?

  /// The number of channels written so far.
  public private(set) var channelCount = 0

  /// A buffer for `capacity` channels of maps shaped like `first` ([N, C, H, W]), which it holds first.
  public init(capacity: Int, first: Variable) {
    let s = first.shape
    require(s.count == 4 && capacity >= s[1], "FeatureBuffer: capacity \(capacity) cannot hold the first maps \(s)")
    storage = Tensor.channelMajor([s[0], capacity, s[2], s[3]], dtype: first.dtype)
    _ = append(first)
  }

  /// The concatenation of every map appended so far.
  public var features: Variable { current! }

  /// Writes `maps` after the existing channels and returns the concatenation of all of them.
  ///
  /// - Precondition: the batch and spatial sizes match and there is room.
  @discardableResult
  public func append(_ maps: Variable) -> Variable {
    let s = maps.shape, k = s.count == 4 ? s[1] : 0, c = channelCount
    require(
      s.count == 4 && s[0] == storage.shape[0] && s[2] == storage.shape[2] && s[3] == storage.shape[3]
        && c + k <= storage.shape[1] && maps.dtype == storage.dtype,
      "FeatureBuffer.append: maps \(s) (\(maps.dtype)) do not fit after \(c) channels of \(storage.shape) (\(storage.dtype))")
    storage.sliced(c..<c + k, alongAxis: 1).overwrite(with: maps.value)
    channelCount = c + k
    let view = storage.sliced(0..<c + k, alongAxis: 1)
    current = recordOperation("concatenate", view, inputs: (current.map { [$0] } ?? []) + [maps]) { grad in
      c == 0 ? [grad] : grad.split(sizes: [c, k], alongAxis: 1)
    }
    return current!
  }
}
