import Autograd
import TensorModule

/// One growing buffer of feature maps along channels, the "shared storage" of the memory-efficient
/// DenseNet (Pleiss et al. 2017): a block's input and every layer's new channels are written into
/// one channel-major allocation, and any window of consecutive channels (the concatenation of
/// everything so far, or a sliding window of it) is a view of it, not a copy. Feature-map memory is
/// then linear in the number of layers.
///
/// The buffer remembers which variable each run of channels came from (a piece: each appended map,
/// and the first maps, optionally cut into equal pieces). A window's gradient is split into views
/// for the pieces it covers, so backward costs each window its own width, never the buffer's.
public final class FeatureBuffer {
  private let storage: Tensor
  private var pieces: [(channels: Range<Int>, variable: Variable)] = []
  /// The batch statistics of the pieces (by index) that ``batchStatistics(_:)`` was asked for.
  private var statistics: [Int: (mean: Tensor, variance: Tensor)] = [:]

  /// The number of channels written so far.
  public private(set) var channelCount = 0

  /// A buffer for `capacity` channels of maps shaped like `first` ([N, C, H, W]), which it holds
  /// first, as pieces of `pieceSize` channels (one piece when nil) so that windows may start inside it.
  ///
  /// - Precondition: `first` fits, and `pieceSize` divides its channels.
  public init(capacity: Int, first: Variable, pieceSize: Int? = nil) {
    let s = first.shape
    require(s.count == 4 && capacity >= s[1], "FeatureBuffer: capacity \(capacity) cannot hold the first maps \(s)")
    let size = pieceSize ?? s[1]
    require(size > 0 && s[1] % size == 0, "FeatureBuffer: pieces of \(size) channels do not divide the first maps \(s)")
    storage = Tensor.channelMajor([s[0], capacity, s[2], s[3]], dtype: first.dtype)
    slice(storage, 0..<s[1], alongAxis: 1).overwrite(with: first.value)
    channelCount = s[1]
    let ranges = stride(from: 0, to: s[1], by: size).map { $0..<$0 + size }
    guard ranges.count > 1 else {
      pieces = [(0..<s[1], first)]
      return
    }
    // Cut into pieces: views of the copy, whose gradients are gathered back into one.
    let views = ranges.map { slice(storage, $0, alongAxis: 1) }
    let outputs = recordOperation("FeatureBuffer.split", views, inputs: [first]) { gradients in
      let gradient = Tensor.channelMajor(s, dtype: first.dtype)
      for (range, g) in zip(ranges, gradients) {
        slice(gradient, range, alongAxis: 1).overwrite(with: g ?? Tensor(zeros: [s[0], size, s[2], s[3]], dtype: first.dtype))
      }
      return [gradient]
    }
    pieces = Array(zip(ranges, outputs))
  }

  /// The concatenation of every map appended so far.
  public var features: Variable { window(0..<channelCount) }

  /// Writes `maps` after the existing channels.
  ///
  /// - Precondition: the batch and spatial sizes and the dtype match and there is room.
  public func append(_ maps: Variable) {
    let s = maps.shape, k = s.count == 4 ? s[1] : 0, c = channelCount
    require(
      s.count == 4 && s[0] == storage.shape[0] && s[2] == storage.shape[2] && s[3] == storage.shape[3]
        && c + k <= storage.shape[1] && maps.dtype == storage.dtype,
      "FeatureBuffer.append: maps \(s) (\(maps.dtype)) do not fit after \(c) channels of \(storage.shape) (\(storage.dtype))")
    slice(storage, c..<c + k, alongAxis: 1).overwrite(with: maps.value)
    pieces.append((c..<c + k, maps))
    channelCount = c + k
  }

  /// The channels `range` of the buffer as one map: a view of the buffer, differentiable with
  /// respect to the pieces it covers. A batch normalisation of it adds its gradient straight into
  /// the pieces' gradients (`recordChannelView(_:name:channels:pieces:)`).
  ///
  /// - Precondition: `range` lies within the written channels and starts and ends at piece boundaries.
  public func window(_ range: Range<Int>) -> Variable {
    let covered = pieces.filter { $0.channels.overlaps(range) }
    checkBoundaries(range, covered.map(\.channels), "window")
    return recordChannelView(slice(storage, range, alongAxis: 1), name: "FeatureBuffer.window", channels: range, pieces: covered)
  }

  /// The batch mean and biased variance per channel of ``window(_:)`` of `range`, as
  /// `batchNormStatistics` computes them, for a training-mode normalisation of that window
  /// (``BatchNorm2d/callAsFunction(_:applyingReLU:ceiling:statistics:)``). A channel's statistics do not
  /// depend on the other channels and the written channels never change, so each piece's are
  /// computed once, however many windows cover it: the normalisations of a dense block go over
  /// each feature map once instead of once per later layer.
  ///
  /// - Precondition: `range` lies within the written channels and starts and ends at piece boundaries.
  public func batchStatistics(_ range: Range<Int>) -> (mean: Tensor, variance: Tensor) {
    let covered = pieces.indices.filter { pieces[$0].channels.overlaps(range) }
    checkBoundaries(range, covered.map { pieces[$0].channels }, "batchStatistics")
    let perPiece = covered.map { i in
      if let known = statistics[i] { return known }
      let computed = batchNormStatistics(slice(storage, pieces[i].channels, alongAxis: 1))
      statistics[i] = computed
      return computed
    }
    guard perPiece.count > 1 else { return perPiece[0] }
    return (concatenate(perPiece.map(\.mean), alongAxis: 0), concatenate(perPiece.map(\.variance), alongAxis: 0))
  }

  private func checkBoundaries(_ range: Range<Int>, _ covered: [Range<Int>], _ operation: String) {
    require(
      range.upperBound <= channelCount && !range.isEmpty && covered.first?.lowerBound == range.lowerBound
        && covered.last?.upperBound == range.upperBound,
      "FeatureBuffer.\(operation): channels \(range) do not start and end at piece boundaries \(pieces.map(\.channels)) of \(channelCount) channels")
  }
}
